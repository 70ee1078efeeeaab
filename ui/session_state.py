"""What one browser session of the app owns, and who may use it.

A :class:`UiSession` holds the session's :class:`cardiovlm.assistant.session.Session` (study, conversation),
its private file folder, its viewer files and the login that opened it; a request of another login
naming it is refused (:func:`owned`). The last answer counts only for the study load it was made on
(:func:`current_answer`): it is never shown, drawn or exported against another study.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cardiovlm.tools.core.errors import CardioVLMError

if TYPE_CHECKING:
    from cardiovlm.tools.views.render import Plane

log = logging.getLogger("cardiovlm.ui")


class SessionOwnerError(CardioVLMError, PermissionError):
    """A request of one login named a browser session that another login opened."""

    code = "session.not_owner"


class UiSession:
    """What one browser session owns: its assistant session, its private file folder and its login."""

    def __init__(self, owner: str | None = None) -> None:
        from cardiovlm.assistant.backends import chat_model
        from cardiovlm.assistant.session import Session
        from cardiovlm.ui.workdir import sessions_dir

        self.owner = owner  # the login that opened this session (None when the app runs without users)
        self.folder = Path(tempfile.mkdtemp(prefix="session-", dir=sessions_dir()))
        # study_folders: each study load writes into its own folder, so nothing is overwritten or reused.
        # keep_retrieved off: a PACS series is deleted once loaded (its headers stay in memory for exports).
        self.session = Session(model=chat_model(), output_dir=self.folder / "outputs", study_folders=True,
                               keep_retrieved=False)
        self.answer = None  # the last GroundedAnswer, for "Save as DICOM" / "Send to PACS"
        self.answer_load = -1  # the study load that answer belongs to
        self.exported = None  # (answer, cardiovlm.tools.dicom.dicom_export.AnswerExport) of the last DICOM export
        self.plane: Plane = "axial"  # the viewer's last plane and window, for answer views
        self.preset = "cardiac"
        self.epoch = 0  # bumped by Clear: a question still running from before it stops and is not shown
        self.questions = 0  # questions answered on the study now loaded (names the downloads)
        from cardiovlm.ui.viewer import ViewerFiles

        self.viewer = ViewerFiles()  # the CT and masks the interactive viewer reads

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self.viewer.close()


def close_session(state: UiSession | None) -> None:
    if state is not None:
        state.close()


def login_of(request) -> str | None:
    return getattr(request, "username", None) if request is not None else None


def owned(state: UiSession | None, request) -> UiSession | None:
    """``state`` when the requesting login owns it (or it is new); raises SessionOwnerError otherwise."""
    if state is not None and state.owner != login_of(request):
        log.warning("a request named a session of another login; refused")
        raise SessionOwnerError("this session belongs to another login")
    return state


def session_for(state: UiSession | None, request) -> UiSession:
    return owned(state, request) or UiSession(owner=login_of(request))


def current_answer(state: UiSession | None):
    """The last answer, when it belongs to the study now loaded (else None: it is never exported)."""
    if state is None or state.answer is None or state.session.context is None:
        return None
    return state.answer if state.answer_load == state.session.load_id else None


def answer_masks(state: UiSession | None) -> dict[str, np.ndarray]:
    answer = current_answer(state)
    if answer is None or state is None or state.session.context is None:  # an answer implies both
        return {}
    ctx = state.session.context
    return {m.name: ctx.extra_masks[m.name] for m in answer.masks if m.name in ctx.extra_masks}
