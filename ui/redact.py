"""Server paths out of what the browser shows: a file the server wrote is named by its file name only.

Tool results and answers name the files they wrote by absolute path (the assistant needs them);
the reader needs only the name, which is also the name of the download, and a path would show
the server's folder layout.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from tools.settings import get_settings


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
