"""The root of the project's errors: a message written for a clinician and a stable code to route on.

Every typed error of the project derives from :class:`CardioVLMError` and names its own ``code``:
``"area.reason"`` in snake_case words (``"segmentation.unavailable"``, ``"risk.mesa_inputs_missing"``),
its meaning stated by the class docstring, unique across the project and never changed once callers
or saved conversations route on it (``tests/test_error_codes.py`` checks all three of root, own code,
uniqueness). Callers decide on the code or the class, never on the words of the message, so a
message can be reworded without changing behaviour.
It is a ``ValueError`` because each one reports bad or missing input, which is what callers of the
standard library already catch.
"""

from __future__ import annotations

from typing import ClassVar


class CardioVLMError(ValueError):
    """Bad input or a missing resource, stated for a clinician; ``code`` is what code routes on."""

    code: ClassVar[str] = "cardiovlm.error"


def error_code(err: BaseException) -> str:
    """The stable code of ``err``: its ``code`` attribute, or its class name for an error without one."""
    code = getattr(err, "code", None)
    return code if isinstance(code, str) and code else type(err).__name__
