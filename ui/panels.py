"""The app's handlers for the panels built by other modules: series picker, clinical context, vessel view.

Each handler checks that the request's login owns the session, then calls the panel module
(:mod:`cardiovlm.ui.series_panel`, :mod:`cardiovlm.ui.context_panel`, :mod:`cardiovlm.ui.vessel_panel`) as its docstring
describes, and returns the panel's updates; a failure is a readable message, never a traceback.
"""

from __future__ import annotations

import logging

import gradio as gr

from cardiovlm.ui.redact import inert
from cardiovlm.ui.session_state import SessionOwnerError, UiSession, current_answer, owned

log = logging.getLogger("cardiovlm.ui")


def series_preview(files):
    from cardiovlm.ui.series_panel import preview_upload

    return preview_upload(files)


def show_series(state: UiSession | None, request: gr.Request = None):
    from cardiovlm.ui.series_panel import series_view

    try:
        state = owned(state, request)
    except SessionOwnerError as err:
        return gr.update(), gr.update(), gr.update(), f"⚠️ {err}"
    return series_view(state.session if state is not None else None)


def show_context(state: UiSession | None, request: gr.Request = None):
    from cardiovlm.ui.context_panel import FIELDS, context_view

    try:
        state = owned(state, request)
    except SessionOwnerError as err:
        return (*(gr.update() for _ in FIELDS), f"⚠️ {err}")
    return context_view(state.session if state is not None else None)


def save_clinical(request: gr.Request, state: UiSession | None, *values):  # request first: any number of values
    from cardiovlm.ui.context_panel import FIELDS, save_context

    try:
        state = owned(state, request)
    except SessionOwnerError as err:
        return (*(gr.update() for _ in FIELDS), f"⚠️ {err}")
    return save_context(state.session if state is not None else None, *values)


def answer_tab(state: UiSession | None, request: gr.Request = None):
    """The Prior reports tab for an answer that cites reports, else the Findings tab."""
    try:
        answer = current_answer(owned(state, request))
    except SessionOwnerError:
        return gr.update()
    if answer is None:
        return gr.update()
    return gr.Tabs(selected="reports" if answer.citations else "findings")


def no_vessel():
    """A new study or a cleared chat: no vessel of an earlier answer stays on screen."""
    return None, "Ask about a stenosis or a stent: its vessel is drawn here.", gr.Tabs(selected="viewer")


def show_vessel_view(state: UiSession | None, downloads, status: str, request: gr.Request = None):
    """After an answer: a stenosis or stent answer draws its vessel, which takes the viewer's place.

    The picture is also offered as a download. An answer that measured no vessel changes nothing
    here (an answer with a mask brings the viewer back to the front, where the mask is drawn).
    """
    from cardiovlm.tools.views.vessel_view import VesselViewError
    from cardiovlm.ui.vessel_panel import VESSEL_TOOLS, vessel_view_for_answer

    unchanged = (gr.update(),) * 5
    try:
        state = owned(state, request)
    except SessionOwnerError:
        yield unchanged
        return
    answer = current_answer(state)
    if state is None or answer is None:  # no session yet has no answer either
        yield unchanged
        return
    if not any(c.ok and c.name in VESSEL_TOOLS for c in answer.tool_calls):
        yield gr.update(), gr.update(), gr.Tabs(selected="viewer") if answer.masks else gr.update(), gr.update(), \
            gr.update()
        return
    status = status or ""
    yield gr.update(), gr.update(), gr.update(), gr.update(), f"{status} · working: drawing the vessel view"
    try:
        view = vessel_view_for_answer(state.session, answer)
    except VesselViewError as err:
        yield (gr.update(), f"⚠️ The vessel view could not be drawn: {inert(str(err))}", gr.update(), gr.update(),
               status)
        return
    except Exception as err:  # the answer stands; the reader sees why its picture is missing
        log.exception("vessel view failed")
        yield (gr.update(), f"⚠️ The vessel view could not be drawn ({type(err).__name__}).", gr.update(),
               gr.update(), status)
        return
    if view is None or current_answer(state) is not answer:  # nothing to draw, or another answer came meanwhile
        yield unchanged[:4] + (status,)
        return
    files = [f if isinstance(f, str) else getattr(f, "path", str(f)) for f in (downloads or [])]
    yield (str(view.path), inert(view.caption), gr.Tabs(selected="vessel"), [*files, str(view.path)],
           f"{status} · vessel view drawn in {view.seconds:.0f} s")
