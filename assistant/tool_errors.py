"""Tool errors as the model sees them, with a stable code to route on (never the message's words).

A tool error reaches the planner as the text of a ``ToolMessage``: the clinician-readable message
followed by a tag ``[code: CODE; class: CLASS]``. ``CODE`` is the exception's ``code`` attribute
(the project's typed errors carry one) or, failing that, its class name. The planner decides on the
tag only; the answer shows the message without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tools.segmentation import NoSegmentationAvailable

_TAG = re.compile(r"\s*\[code: (?P<code>[\w.\-]+); class: (?P<cls>\w+)\]\s*$")

# The session has no label map to take anatomy from: the trained VLM is the next resort. Decided on
# the code alone, so a renamed or subclassed error routes the same way.
NO_LABEL_MAP_CODES = frozenset({NoSegmentationAvailable.code})


@dataclass(frozen=True)
class ToolErrorInfo:
    message: str
    code: str | None
    error_class: str | None

    @property
    def no_label_map(self) -> bool:
        return self.code in NO_LABEL_MAP_CODES


def error_code(err: BaseException) -> str:
    code = getattr(err, "code", None)
    return code if isinstance(code, str) and code else type(err).__name__


def tool_error_text(err: BaseException) -> str:
    """The ToolMessage text of a failed tool call: message, then the routing tag."""
    if isinstance(err, ValueError):  # our library errors: the text is written for a clinician
        message = str(err)
    else:
        message = f"the tool failed unexpectedly ({type(err).__name__}: {err})"
    return f"error: {message} [code: {error_code(err)}; class: {type(err).__name__}]"


def read_tool_error(text: str | None) -> ToolErrorInfo:
    """Message, code and class of a tool error text (untagged text: code and class None)."""
    text = (text or "").removeprefix("error: ")
    m = _TAG.search(text)
    if m is None:
        return ToolErrorInfo(text, None, None)
    return ToolErrorInfo(text[:m.start()], m.group("code"), m.group("cls"))
