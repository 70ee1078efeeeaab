"""What the browser shows of text the server did not write itself: no server paths, no markup.

Tool results and answers name the files they wrote by absolute path (the assistant needs them);
the reader needs only the name, which is also the name of the download, and a path would show
the server's folder layout (:func:`hide_server_paths`). Questions, tool results and quoted reports
are shown exactly as written and never act as Markdown (:func:`inert`).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from cardiovlm.tools.core.settings import get_settings

_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation mark


def inert(text: str) -> str:
    """``text`` for the Markdown chat, shown exactly as written and never acting as markup.

    Every ASCII punctuation mark is backslash-escaped (CommonMark renders an escaped mark as the
    mark itself), so stored text cannot make an image, a link, an autolink (``http\\://``,
    ``www\\.``), raw HTML or a formula: the browser fetches nothing a report names.
    """
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", str(text))


def _roots() -> list[str]:
    roots = {str(Path(get_settings().ui_work_dir)), str(Path(get_settings().ui_work_dir).resolve()),
             tempfile.gettempdir(), str(Path(tempfile.gettempdir()).resolve())}
    return sorted((r.rstrip("/") for r in roots if r and r != "/"), key=len, reverse=True)


def hide_server_paths(text: str) -> str:
    """``text`` with each path under the server's working or temporary folder replaced by its file name."""
    pattern = re.compile("(?:" + "|".join(re.escape(r) for r in _roots()) + r")/[^\s\"'`,;:()\[\]{}<>]*")

    def name(match: re.Match) -> str:
        path = match.group(0)
        tail = path[len(path.rstrip(".")):]  # a full stop ending the sentence is not part of the name
        return (Path(path.rstrip(".")).name or "file") + tail

    return pattern.sub(name, str(text))
