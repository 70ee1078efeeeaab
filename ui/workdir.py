"""The app's working folder: everything it writes that may hold patient data, and its clean-up.

Uploads (Gradio's upload cache), session outputs, Gradio's file cache and the server's temporary
files (zips extracted during ingest) all live under ``settings.ui_work_dir/<process folder>``. Each
server process holds an exclusive ``flock`` on its own folder while it runs; at start-up every folder
whose lock can be taken belongs to a server that has stopped (or crashed) and is deleted, so nothing
with patient details survives a restart, while servers still running on the same machine keep theirs.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO

from cardiovlm.tools.core.settings import get_settings, set_library_environment

_LOCK_NAME = ".owner.lock"
# this process's folder and its open lock file (kept open: the lock lives with it)
_held: dict[str, tuple[Path, IO[str]]] = {}


def process_dir() -> Path:
    """This process's working folder (created and locked on first use)."""
    root = Path(get_settings().ui_work_dir)
    key = str(root)
    if key not in _held:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))
        lock = open(folder / _LOCK_NAME, "w")  # held open for the life of the process
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _held[key] = (folder, lock)
    return _held[key][0]


def gradio_dir() -> Path:
    """Gradio's upload and file cache for this process (``GRADIO_TEMP_DIR``)."""
    return process_dir() / "gradio"


def sessions_dir() -> Path:
    path = process_dir() / "sessions"
    path.mkdir(exist_ok=True)
    return path


def use_for_gradio() -> Path:
    """Point Gradio's upload and cache folder here; call before any Gradio component is built."""
    folder = gradio_dir()
    folder.mkdir(exist_ok=True)
    set_library_environment({"GRADIO_TEMP_DIR": str(folder)}, override=True)
    return folder


def use_for_temporary_files() -> Path:
    """Make this folder the process's temporary folder, so a zip extracted during ingest (it holds
    the patient's details) is deleted at the next start-up even if the server is killed mid-way."""
    folder = process_dir()  # Gradio hands out files from the temporary folder: the session outputs are here too
    tempfile.tempdir = str(folder)
    return folder


def clean_stale() -> list[Path]:
    """Delete the working folders of servers that no longer run; returns what was deleted."""
    root = Path(get_settings().ui_work_dir)
    if not root.is_dir():
        return []
    mine = {str(folder) for folder, _ in _held.values()}
    removed = []
    for folder in root.iterdir():
        if not folder.is_dir() or str(folder) in mine:
            continue
        lock_path = folder / _LOCK_NAME
        try:
            with open(lock_path, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # taken: its server has stopped
        except BlockingIOError:
            continue  # a running server holds it
        except OSError:
            pass  # no lock file: a folder left half-made; nothing runs in it
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed
