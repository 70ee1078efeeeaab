"""A failed tool call as a typed value, with a stable code to route on (never the message's words).

When a tool raises, the graph turns the exception into a :class:`ToolFailure` (message, code,
class) and hands it on as the ``artifact`` of the error ``ToolMessage``; the model sees the text of
:meth:`ToolFailure.text`: the clinician-readable message followed by a tag ``[code: CODE; class:
CLASS]``. ``CODE`` is the exception's ``code`` (every :class:`cardiovlm.tools.core.errors.CardioVLMError` carries
one) or, failing that, its class name. The planner and the answer read the ``ToolFailure``; the tag
is read back only for a message that lost its artifact (a conversation restored from a file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cardiovlm.assistant.tools.segment_anatomy import NoSegmentationAvailable
from cardiovlm.tools.core.errors import error_code

_TAG = re.compile(r"\s*\[code: (?P<code>[\w.\-]+); class: (?P<cls>\w+)\]\s*$")

# The session has no label map to take anatomy from: the trained VLM is the next resort. Decided on
# the code alone, so a renamed or subclassed error routes the same way.
NO_LABEL_MAP_CODES = frozenset({NoSegmentationAvailable.code})


@dataclass(frozen=True)
class ToolFailure:
    """Why one tool call gave no result: the message a clinician reads and the code code routes on."""

    message: str
    code: str | None
    error_class: str | None

    @classmethod
    def of(cls, err: BaseException) -> ToolFailure:
        if isinstance(err, ValueError):  # the project's errors: the text is written for a clinician
            message = str(err)
        else:
            message = f"the tool failed unexpectedly ({type(err).__name__}: {err})"
        return cls(message, error_code(err), type(err).__name__)

    @property
    def no_label_map(self) -> bool:
        return self.code in NO_LABEL_MAP_CODES

    def text(self) -> str:
        """The ToolMessage text the model reads: message, then the routing tag (none when nothing is known)."""
        if self.code is None:
            return f"error: {self.message}"
        return f"error: {self.message} [code: {self.code}; class: {self.error_class or 'none'}]"


def tool_error_text(err: BaseException) -> str:
    """The ToolMessage text of a failed tool call: message, then the routing tag."""
    return ToolFailure.of(err).text()


def read_tool_error(text: str | None) -> ToolFailure:
    """The failure written in a tool error text (untagged text: code and class None)."""
    text = (text or "").removeprefix("error: ")
    m = _TAG.search(text)
    if m is None:
        return ToolFailure(text, None, None)
    return ToolFailure(text[:m.start()], m.group("code"), m.group("cls"))
