"""What a clinician notices in the app's answers, found by using it as one (app level, no browser).

Each test drives the app's own question handler as the browser does, with one session per module.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

USER = SimpleNamespace(username=None)  # the app served without logins, as on a workstation


@pytest.fixture(scope="module")
def state():
    from cardiovlm.ui.session_state import UiSession

    s = UiSession(owner=None)
    yield s
    s.close()


def _ask(state, question: str):
    """The last update of one question: (state, chat, box, findings, downloads, ..., status, reports)."""
    from cardiovlm.ui.app import _answer

    *_, final = _answer(state, question, [], USER)
    return final


def _text(message) -> str:
    return message.content if isinstance(message.content, str) else ""


def test_a_question_before_any_study_is_answered_plainly(state):
    # A reader who types before loading a study gets the reason, not "could not be answered (AttributeError)".
    final = _ask(state, "What is the calcium score?")
    chat, downloads, status = final[1], final[4], final[8]
    said = " ".join(_text(m) for m in chat)
    assert "no study is loaded" in said, said
    assert "could not be answered" not in said and "Error" not in said, said
    assert status.startswith("✓ answered"), status
    assert downloads == []  # nothing to download about no study


def test_a_failing_question_never_shows_a_server_folder(state, monkeypatch):
    # A tool's ValueError is shown to the reader as it is worded, but the session's folder is not.
    secret = state.folder / "outputs" / "load-1" / "RCA.nii.gz"

    def failing(question):
        raise ValueError(f"could not read {secret}")
        yield  # a generator, as the session's own

    monkeypatch.setattr(state.session, "ask_stream", failing)
    final = _ask(state, "Show me the RCA")
    said = " ".join(_text(m) for m in final[1])
    assert "could not read RCA" in said and str(state.folder) not in said, said
    assert final[8].startswith("✗ not answered")
