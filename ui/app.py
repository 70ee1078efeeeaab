"""The CardioVLM browser app: a study panel with a slice viewer, and a grounded chat.

Each browser session holds its own :class:`cardiovlm.assistant.session.Session` in a ``gr.State``; its study,
history and files belong to it alone and are deleted when the session ends or times out. A session
belongs to the login that opened it: another login naming its session hash is refused. Every
answer is tied to the study load it was asked on: a study switch drops a running question, and an
answer is never exported against another study. Uploaded files (with the patient's details) are
deleted as soon as they are ingested. Text quoted from stored reports is shown inert (no HTML,
images or links). Errors are shown as readable chat messages, never as stack traces.

Long work (a study load, a question) runs in a worker thread while a status line names the stage
and the seconds elapsed (:mod:`cardiovlm.ui.progress`). "Clear" makes the assistant forget the conversation
(the study stays loaded); a reloaded page is a new session and says so. Nothing the app shows is
kept in the browser's run history.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from cardiovlm.tools.core.settings import NO_TELEMETRY, get_settings, set_library_environment

set_library_environment(NO_TELEMETRY)
# Gradio's run history would keep every answer (CT slices with masks, findings) in the browser's storage,
# where the next user of that browser can replay it; launch() reads this when it is not told otherwise.
set_library_environment({"GRADIO_RUN_HISTORY": "False"}, override=True)

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from cardiovlm.ui import progress  # noqa: E402
from cardiovlm.ui.panels import (  # noqa: E402
    answer_tab,
    no_vessel,
    save_clinical,
    series_preview,
    show_context,
    show_series,
    show_vessel_view,
)
from cardiovlm.ui.redact import hide_server_paths, inert  # noqa: E402
from cardiovlm.ui.reports_panel import EMPTY as NO_REPORTS  # noqa: E402
from cardiovlm.ui.session_state import (  # noqa: E402
    SessionOwnerError,
    UiSession,
    answer_masks,
    close_session,
    current_answer,
    owned,
    session_for,
)

if TYPE_CHECKING:  # the renderer loads with the first view, not with the app
    from cardiovlm.tools.views.render import Plane

log = logging.getLogger("cardiovlm.ui")

EXAMPLES = [
    "Will a 20 mm stent fully cover the proximal LAD lesion?",
    "What is the calcium score?",
    "Segment the most calcified artery",
    "Is this patient with Troponin-I 40 pg/mL likely to have a MACE within 1 year?",
]
DISCLAIMER = ("**Research software, not for clinical use.** The model is trained on synthetic phantoms only; "
              "nothing shown here is clinically validated.")
# The chat scrolls to its end; an answer taller than the chat would then show its method and hide its
# verdict. After each answer the chat is scrolled back to the answer's first line.
SHOW_ANSWER_START = """() => {
  const show = () => {
    const rows = document.querySelectorAll('#chat .message-row');
    const row = rows[rows.length - 1];
    let box = row ? row.parentElement : null;
    while (box && !(box.scrollHeight > box.clientHeight + 1 && /auto|scroll/.test(getComputedStyle(box).overflowY)))
      box = box.parentElement;
    if (!box || row.getBoundingClientRect().height <= box.clientHeight) return;
    box.scrollTop += row.getBoundingClientRect().top - box.getBoundingClientRect().top - 8;
  };
  setTimeout(show, 400);  // after the chat's own scroll to its end, which follows the last render
}"""
SESSION_TTL_S = get_settings().ui_session_ttl_s  # idle time after which a session and its files are deleted


def demo_cases() -> list[str]:
    root = get_settings().demo_cases_dir
    return sorted(p.name for p in root.iterdir() if (p / "case.json").exists()) if root.exists() else []


def _summary_markdown(summary: dict, n_series: int = 0) -> str:
    lines = [f"**Modality** {summary['modality']}" + ("" if summary["hu_calibrated"] else " (not HU-calibrated)"),
             f"**Size** {' x '.join(map(str, summary['shape']))} voxels",
             f"**Spacing** {' x '.join(f'{s:g}' for s in summary['spacing_mm'])} mm"]
    lines = [" · ".join(lines)]  # one line: the viewer below it stays on a 720 px screen
    if n_series > 1:  # the Series panel lists them and why each was picked; one line here keeps the viewer up
        lines.append(f"**Series** {n_series} in this study; the CCTA and calcium series loaded are listed under "
                     "Series below")
    elif summary.get("series_choice"):
        lines.append(f"**Series** {summary['series_choice']}")
    for w in summary.get("warnings", []):
        lines.append(f"⚠️ {w}")
    return "  \n".join(lines)


def _render(state: UiSession | None, plane: Plane, index: int, preset: str, shown: list[str],
            request: gr.Request = None):
    from cardiovlm.tools.core.anatomy import mask_color
    from cardiovlm.tools.views.render import render

    try:
        state = owned(state, request)
    except SessionOwnerError:
        return None
    if state is None or state.session.context is None:
        return None
    state.plane, state.preset = plane, preset  # an answer's mask is then shown where the reader looks
    ctx = state.session.context
    masks = []
    for name in shown or []:
        mask = ctx.extra_masks.get(name)
        if mask is not None:
            masks.append((mask, mask_color(name)))
    return _display(render(ctx.study.hu, plane, int(index), preset, masks))


def _display(rgb: np.ndarray, target: int = 512) -> np.ndarray:
    """Enlarge a slice by an integer factor (nearest neighbour, no smoothing of the data) for the viewer."""
    factor = max(1, target // max(rgb.shape[:2]))
    return rgb.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else rgb


def _viewer_value(state: UiSession | None, shown: list[str], request: gr.Request = None):
    """The interactive viewer's payload: this session's CT and the ``shown`` masks (unchanged when none)."""
    try:
        state = owned(state, request)
    except SessionOwnerError:
        return gr.update()
    if state is None or state.session.context is None:
        return gr.update()
    from cardiovlm.ui.viewer import answer_point

    ctx = state.session.context
    # a landmark answer moves the crosshair to the point it names
    return state.viewer.payload(ctx.study, state.session.load_id, ctx.extra_masks, list(shown or []),
                                point=answer_point(current_answer(state)))


def _slider_for(state: UiSession | None, plane: Plane, request: gr.Request = None):
    from cardiovlm.tools.views.render import plane_size

    try:
        state = owned(state, request)
    except SessionOwnerError:
        return gr.update(maximum=1, value=0)
    if state is None or state.session.context is None:
        return gr.update(maximum=1, value=0)
    n = plane_size(state.session.context.study.shape, plane)
    return gr.update(maximum=n - 1, value=n // 2)


def build_app(max_upload_mb: int = 2048) -> gr.Blocks:
    from cardiovlm.ui.reports_panel import CSS as REPORTS_CSS

    with gr.Blocks(title="CardioVLM", analytics_enabled=False, delete_cache=(3600, SESSION_TTL_S)) as app:
        state = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=close_session)
        # What this browser last did here (no patient details): a reload then says plainly that it is a new session.
        last_seen = gr.BrowserState(None, storage_key="cardiovlm-last-session")
        gr.Markdown("**CardioVLM** — coronary CT assistant. " + DISCLAIMER, elem_id="header")  # one line: 720 px
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=360):
                with gr.Row(equal_height=True):
                    case = gr.Dropdown(demo_cases(), label="Demo case", value=None, scale=3)
                    load_demo = gr.Button("Load demo case", variant="primary", scale=1, min_width=120)
                with gr.Accordion("Upload a study", open=False) as upload_box:
                    upload = gr.File(label="DICOM zip, DICOM files or a NIfTI", file_count="multiple",
                                     elem_id="upload")  # any file: the server says what a wrong one is not
                    load_upload = gr.Button("Load upload")
                pacs = _pacs_panel() if get_settings().pacs_url else None
                summary = gr.Markdown("No study loaded.", elem_id="study-summary")
                from cardiovlm.ui.context_panel import build_context_panel
                from cardiovlm.ui.series_panel import build_series_panel, unfold_for_several
                from cardiovlm.ui.viewer import viewer_panel

                # The vessel view takes the viewer's place when an answer measured a vessel, so the picture,
                # the controls and the answer stay on one 720 px screen.
                with gr.Tabs(selected="viewer", elem_id="image-tabs") as image_tabs:
                    with gr.Tab("Viewer", id="viewer"):
                        volume_view = viewer_panel()
                        overlays = gr.CheckboxGroup([], label="Overlays (masks of this session)")
                    with gr.Tab("Vessel view", id="vessel", elem_id="vessel-tab"):
                        vessel_image = gr.Image(None, type="filepath", show_label=False, interactive=False,
                                                elem_id="vessel-view", height=380, buttons=["download", "fullscreen"])
                        vessel_caption = gr.Markdown("Ask about a stenosis or a stent: its vessel is drawn here.",
                                                     elem_id="vessel-caption")
                series = build_series_panel()
                clinical = build_context_panel()
                with gr.Accordion("Slice pictures (fallback viewer)", open=False):
                    # No share button: a CT picture goes nowhere but this page.
                    viewer = gr.Image(label="Study", type="numpy", interactive=False, elem_id="viewer", height=420,
                                      buttons=["download", "fullscreen"])
                    with gr.Row():
                        plane = gr.Radio(["axial", "coronal", "sagittal"], value="axial", label="Plane")
                        preset = gr.Radio(["cardiac", "calcium", "lung", "bone"], value="cardiac", label="Window")
                    index = gr.Slider(0, 1, value=0, step=1, label="Slice")
            with gr.Column(scale=6, min_width=420):
                # 330 px: the chat's last answer, the question box and the status line fit a 720 px screen.
                chat = gr.Chatbot(label="Chat", height=330, elem_id="chat", buttons=["copy"], feedback_options=None)
                with gr.Row(equal_height=True):
                    question = gr.Textbox(placeholder="Ask about the loaded study…", show_label=False,
                                          elem_id="question", scale=5, container=False)
                    ask = gr.Button("Ask", variant="primary", elem_id="ask", scale=1, min_width=60)
                    clear = gr.Button("Clear", elem_id="clear", scale=1, min_width=60)
                status = gr.Markdown("", elem_id="status")
                with gr.Row():
                    example_buttons = [gr.Button(text, size="sm", elem_classes=["example"]) for text in EXAMPLES]
                with gr.Tabs(selected="findings") as answer_tabs:
                    with gr.Tab("Findings", id="findings"):
                        findings = gr.Dataframe(headers=["finding", "value", "unit", "tool"], show_label=False,
                                                interactive=False)
                    with gr.Tab("Prior reports", id="reports", elem_id="prior-reports-tab"):
                        reports = gr.HTML(NO_REPORTS, elem_id="prior-reports", css_template=REPORTS_CSS,
                                          js_on_load=None, max_height=260)
                downloads = gr.File(label="Downloads (masks, report)", interactive=False, file_count="multiple",
                                    elem_id="downloads")
                with gr.Row():
                    save_dicom = gr.Button("Save as DICOM (SEG + SR)", size="sm", interactive=False)
                    send_pacs = gr.Button("Send to PACS", size="sm", interactive=False, visible=pacs is not None)
                dicom_status = gr.Markdown("")

        view_inputs = [state, plane, index, preset, overlays]
        load_outputs = [state, summary, viewer, index, overlays, chat, status, findings, downloads, reports]

        def load_demo_case(state, name, plane, preset, request: gr.Request):
            yield from _load(state, "demo", name, plane, preset, request, max_upload_mb)

        def load_uploaded(state, files, plane, preset, ccta, calcium, request: gr.Request):
            # The upload box is emptied: its files were deleted once ingested (or refused). The series
            # picked in the preview are loaded (none picked: chosen by kind).
            from cardiovlm.ui.series_panel import load_kwargs

            for out in _load(state, "upload", files, plane, preset, request, max_upload_mb,
                             load_kwargs(ccta, calcium)):
                loaded = str(out[6]).startswith("✓")  # folded once loaded: the viewer moves back up
                yield (*out, None, gr.Accordion(open=False) if loaded else gr.update())

        # The status line is the progress display of loads: Gradio's own overlay would hide it.
        loads = [load_demo.click(load_demo_case, [state, case, plane, preset], load_outputs, api_name="load_demo",
                                 show_progress="hidden"),
                 load_upload.click(load_uploaded, [state, upload, plane, preset, series.ccta, series.calcium],
                                   [*load_outputs, upload, upload_box], api_name="load_upload",
                                   show_progress="hidden")]
        upload.change(series_preview, upload, series.outputs, api_name=False).then(
            unfold_for_several, series.table, series.box, api_name=False)

        def pick(state, plane, preset, ccta, calcium, request: gr.Request):
            yield from _load(state, "pick", None, plane, preset, request, max_upload_mb, {"ccta": ccta,
                                                                                          "calcium": calcium})

        loads.append(series.apply.click(pick, [state, plane, preset, series.ccta, series.calcium], load_outputs,
                                        api_name="pick_series", show_progress="hidden"))
        if pacs is not None:
            def load_pacs_study(state, study_uid, plane, preset, request: gr.Request):
                yield from _load(state, "pacs", study_uid, plane, preset, request, max_upload_mb)

            pacs["search"].click(_pacs_search, pacs["fields"], [pacs["results"], pacs["study"], pacs["message"]],
                                 api_name="pacs_search")
            loads.append(pacs["load"].click(load_pacs_study, [state, pacs["study"], plane, preset], load_outputs,
                                            api_name="load_pacs", show_progress="hidden"))
        overlays.change(_viewer_value, [state, overlays], volume_view, api_name=False)
        plane.change(_slider_for, [state, plane], index, api_name=False).then(_render, view_inputs, viewer,
                                                                              api_name=False)
        for control in (index, preset, overlays):
            control.change(_render, view_inputs, viewer, api_name=False)

        def on_ask(state, text, history, request: gr.Request):
            yield from _answer(state, text, history or [], request)

        ask_outputs = [state, chat, question, findings, downloads, overlays, index, viewer, status, reports]
        answered = [ask.click(on_ask, [state, question, chat], ask_outputs, api_name="ask"),
                    question.submit(on_ask, [state, question, chat], ask_outputs, api_name=False)]
        for button, text in zip(example_buttons, EXAMPLES):
            answered.append(button.click(_example_handler(text), [state, chat], ask_outputs, api_name=False))
        for event in answered:  # the DICOM actions apply to the answer just shown
            event.then(_dicom_buttons, state, [save_dicom, send_pacs, dicom_status], api_name=False)
        for event in [*loads, *answered]:
            event.then(_viewer_value, [state, overlays], volume_view, api_name=False)
            event.then(_remember, state, last_seen, api_name=False)
        for event in answered:  # a stenosis or stent answer draws its vessel and shows it in place of the viewer
            event.then(show_vessel_view, [state, downloads, status],
                       [vessel_image, vessel_caption, image_tabs, downloads, status], api_name=False)
        for event in answered:  # an answer that retrieved reports brings them to the front
            event.then(answer_tab, state, answer_tabs, api_name=False)
            event.then(None, js=SHOW_ANSWER_START)
        for event in loads:  # a new study: its series, its clinical values, no vessel of the previous one
            event.then(show_series, state, series.outputs, api_name=False).then(
                unfold_for_several, series.table, series.box, api_name=False)
            event.then(show_context, state, clinical.outputs, api_name=False)
            event.then(no_vessel, None, [vessel_image, vessel_caption, image_tabs], api_name=False)
        clinical.save.click(save_clinical, [state, *clinical.fields], clinical.outputs, api_name="save_context")
        # Clear stops a running question too: its answer would belong to the conversation just forgotten.
        cleared = [state, chat, question, findings, downloads, status, reports, save_dicom, send_pacs, dicom_status]
        clear.click(_clear, state, cleared, cancels=answered, api_name="clear").then(
            no_vessel, None, [vessel_image, vessel_caption, image_tabs], api_name=False)
        # The chat's own bin icon clears the same way: an emptied screen with a remembering assistant misleads.
        chat.clear(_clear, state, cleared, cancels=answered, api_name=False).then(
            no_vessel, None, [vessel_image, vessel_caption, image_tabs], api_name=False)
        app.load(_greet, last_seen, [summary, last_seen], api_name=False)

        def save(state, shown, request: gr.Request):
            return _export_dicom(state, shown, send=False, request=request)

        def send(state, shown, request: gr.Request):
            return _export_dicom(state, shown, send=True, request=request)

        save_dicom.click(save, [state, downloads], [downloads, dicom_status], api_name="save_dicom")
        send_pacs.click(send, [state, downloads], [downloads, dicom_status], api_name="send_pacs")
    return app


# --- loading a study, with its stages on the status line ---
def _load(state, source: str, what, plane: Plane, preset: str, request, max_upload_mb: int,
          pick: dict | None = None):
    """Load a demo case, an upload, a PACS study or another pick of the series; yields the load outputs.

    ``pick``: keyword arguments of ``Session.load_study`` naming the series to load (upload, "pick").

    The work runs in a worker thread; every second the status line says the stage and the time. On
    success the chat, findings, downloads and reports of the previous study are cleared (they belong
    to it); on failure everything stays as it was and the summary says why.
    """
    from cardiovlm.tools.ingest.pacs import PacsError
    from cardiovlm.tools.ingest.study_errors import StudyError

    keep = (gr.update(),) * 8  # viewer, index, overlays, chat, [status], findings, downloads, reports
    try:
        state = session_for(state, request)
    except SessionOwnerError as err:
        yield (state, f"⚠️ {err}", *keep[:5], "", *keep[5:])
        return
    clock = progress.StageClock(progress.LOADING)

    def retrieving(n: int, total: int | None) -> None:  # called from the worker thread during a PACS load
        clock.enter("retrieving the series from the PACS")
        clock.detail = f"image {n}/{total or '?'}"

    def work():
        if source == "pacs":  # what: the chosen StudyInstanceUID
            return _load_from_pacs(state, what, retrieving)
        if source == "demo":
            if not what:
                raise StudyError("choose a demo case first")
            return state.session.load_study(get_settings().demo_cases_dir / what)
        if source == "pick":  # the loaded study again, with the series picked in the series panel
            from cardiovlm.ui.series_panel import load_kwargs

            if state.session.context is None:
                raise StudyError("no study is loaded: load a study first, then pick its series")
            return state.session.pick_series(**load_kwargs((pick or {}).get("ccta"), (pick or {}).get("calcium")))
        return _load_upload(state, what, max_upload_mb, **(pick or {}))

    yield (state, gr.update(), *keep[:4], clock.line(), *keep[5:])
    try:
        for item in progress.run_with_ticks(work):
            if item is progress.TICK:
                yield (state, gr.update(), *keep[:4], clock.line(), *keep[5:])
            else:
                ctx = item
    except (StudyError, PacsError) as err:
        gr.Warning(str(err))
        # The summary is the only place naming the study: say that the one loaded before is still there.
        kept = " (the study loaded before stays loaded)" if state.session.context is not None else ""
        yield (state, f"⚠️ {err}{kept}", *keep[:4], clock.summary("✗ not loaded"), *keep[5:])
        return
    except Exception as err:  # never a traceback in the browser
        log.exception("study load failed")
        gr.Warning(f"The study could not be loaded ({type(err).__name__}).")
        yield (state, f"⚠️ The study could not be loaded ({type(err).__name__}).", *keep[:4],
               clock.summary("✗ not loaded"), *keep[5:])
        return
    state.answer, state.exported, state.questions = None, None, 0  # answers of the previous study stay with it
    from cardiovlm.tools.views.render import plane_size

    n = plane_size(ctx.study.shape, plane)  # a new study opens in the plane being read
    image = _render(state, plane, n // 2, preset, [], request)
    summary = _summary_markdown(ctx.study.summary(), len(state.session.series or []))
    yield (state, summary, image, gr.update(maximum=n - 1, value=n // 2),
           gr.update(choices=[], value=[]), [], clock.summary("✓ loaded"), [], None, NO_REPORTS)


# --- session hygiene: Clear, and what a reloaded page says ---
def _clear(state: UiSession | None, request: gr.Request = None):
    """Forget the conversation: the assistant's memory, the chat and the answer's panels (the study stays)."""
    try:
        state = owned(state, request)
    except SessionOwnerError as err:
        return (state, gr.update(), gr.update(), gr.update(), gr.update(), f"⚠️ {err}", gr.update(),
                gr.update(), gr.update(), gr.update())
    message = "Conversation cleared: the assistant starts afresh."
    if state is not None:
        state.epoch += 1  # a question still running stops before its answer is shown or remembered
        state.session.history = []  # follow-ups no longer resolve against the cleared questions
        state.answer, state.exported = None, None
        if state.session.context is not None:
            message += " The study stays loaded."
    off = gr.update(interactive=False)
    return state, [], "", [], None, message, NO_REPORTS, off, off, ""


def _remember(state: UiSession | None) -> dict | None:
    """What this browser keeps of the session: the demo case's name (or "a study") and the question count."""
    if state is None or state.session.context is None:
        return None
    ctx = state.session.context
    study = ctx.case.root.name if ctx.case is not None else "a loaded study"
    return {"study": study, "questions": state.questions}


def _greet(last: dict | None):
    """On page load: a fresh page is a new session, and when this browser had one before, say so plainly."""
    if not last:
        return "No study loaded.", None
    questions = int(last.get("questions") or 0)
    earlier = f"{inert(last.get('study') or 'a study')}, {questions} question{'s' if questions != 1 else ''}"
    return (f"**New session.** This page was reloaded or reopened: the earlier session ({earlier}) does not "
            "carry over, and its files are deleted when it times out. Load a study to start."), None


# --- PACS: load from it, send results to it ---
PACS_COLUMNS = ["patient ID", "date", "accession", "modalities", "images", "description"]


def _pacs_panel() -> dict:
    """The "Load from PACS" accordion (only built when a PACS URL is configured)."""
    with gr.Accordion("Load from PACS", open=False, elem_id="pacs-panel"):
        with gr.Row():
            fields = [gr.Textbox(label="Patient ID"), gr.Textbox(label="Accession number"),
                      gr.Textbox(label="Study date", placeholder="YYYYMMDD or YYYYMMDD-YYYYMMDD"),
                      gr.Textbox(label="Modality", value="CT")]
        search = gr.Button("Search PACS")
        results = gr.Dataframe(headers=PACS_COLUMNS, label="Studies found", interactive=False)
        study = gr.Dropdown([], label="Study to load", value=None)
        load = gr.Button("Load from PACS", variant="primary")
        message = gr.Markdown("")
    return {"fields": fields, "search": search, "results": results, "study": study, "load": load,
            "message": message}


def _pacs_search(patient_id: str, accession: str, date: str, modality: str):
    from cardiovlm.tools.ingest.pacs import PacsClient, PacsError

    try:
        hits = PacsClient.from_settings().search_studies(
            patient_id=patient_id.strip() or None, accession_number=accession.strip() or None,
            study_date=date.strip() or None, modality=modality.strip() or None)
    except (PacsError, ValueError) as err:
        return [], gr.update(choices=[], value=None), f"⚠️ {err}"
    rows = [[h.patient_id, h.study_date, h.accession_number, h.modalities, h.n_instances or "", h.description]
            for h in hits]
    choices = [(f"{h.patient_id} · {h.study_date} · {h.accession_number or '-'} · {h.description}", h.study_uid)
               for h in hits]
    return (rows, gr.update(choices=choices, value=choices[0][1] if choices else None),
            f"{len(hits)} stud{'y' if len(hits) == 1 else 'ies'} found")


def _load_from_pacs(state: UiSession, study_uid: str | None, progress):
    """Retrieve the study's CT series into the session, CCTA and calcium series picked by kind
    (nothing changes when it fails). ``progress(n, total)`` is called as images arrive.
    """
    from cardiovlm.tools.ingest.pacs import PacsClient
    from cardiovlm.tools.ingest.study_errors import StudyError

    if not study_uid:
        raise StudyError("search the PACS and choose a study first")
    return state.session.load_from_pacs(PacsClient.from_settings(), study_uid, progress=progress)


def _dicom_buttons(state: UiSession | None, request: gr.Request = None):
    """Save is offered for answers with masks or findings; Send to PACS for answers with masks."""
    try:
        state = owned(state, request)
    except SessionOwnerError:
        return gr.update(interactive=False), gr.update(interactive=False), ""
    answer = current_answer(state)
    findings = bool(answer is not None and answer.findings)
    masks = bool(answer_masks(state))
    return gr.update(interactive=masks or findings), gr.update(interactive=masks), ""


def _export_dicom(state: UiSession | None, downloads, *, send: bool, request=None):
    """Write the last answer as DICOM SEG + SR (downloads); with ``send`` also store them on the PACS.

    The answer is exported only against the study it was made on, with that load's DICOM headers.
    """
    from cardiovlm.tools.dicom.dicom_export import DicomExportError, export_answer
    from cardiovlm.tools.ingest.pacs import PacsClient, PacsError
    from cardiovlm.ui.downloads import answer_stem

    try:
        state = owned(state, request)
    except SessionOwnerError as err:
        return gr.update(), f"⚠️ {err}"
    if state is None or state.answer is None or state.session.context is None:
        return gr.update(), "⚠️ ask a question first"
    answer = current_answer(state)
    if answer is None:
        return gr.update(), "⚠️ that answer was about the previous study: ask again about the study now loaded"
    try:
        if state.exported is None or state.exported[0] is not answer:
            # Once per answer: what is downloaded and what the PACS receives are the same objects (UIDs).
            ctx = state.session.context
            state.exported = (answer, export_answer(
                answer, ctx.study, answer_masks(state), ctx.outputs() / "dicom",
                stem=answer_stem(ctx, state.questions, answer), reference=state.session.reference))
        export = state.exported[1]
        written = [str(p) for p in (export.seg, export.sr) if p is not None]
        message = f"Saved {', '.join(Path(p).name for p in written)}."
        if send:
            stored = PacsClient.from_settings().send_files(export.files_to_send())
            message = f"Sent to the PACS: {stored} object(s) stored ({export.note})."
    except (DicomExportError, PacsError) as err:
        return gr.update(), f"⚠️ {err}"
    previous = [f if isinstance(f, str) else getattr(f, "path", str(f)) for f in (downloads or [])]
    return [*previous, *(p for p in written if p not in previous)], message


def _example_handler(text: str):
    def handler(state, history, request: gr.Request):
        yield from _answer(state, text, history or [], request)

    return handler


def _load_upload(state: UiSession, files, max_upload_mb: int, **series):
    """Load uploaded files into the session, then delete them: the originals hold the patient's details.

    The files are moved out of Gradio's upload cache into the session folder (a single zip or
    NIfTI is loaded as is, several files as one folder) and deleted once ingested or refused; the
    session keeps the de-identified study in memory and, for DICOM, the series headers an export needs.
    """
    from cardiovlm.tools.ingest.study_errors import SeriesNotFoundError, StudyError

    if not files:
        raise StudyError("choose a file to upload first")
    paths = [Path(f if isinstance(f, str) else f.name) for f in files]
    target = state.folder / "upload"
    try:
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise StudyError(f"{missing[0]} is no longer on the server (uploads are deleted once loaded): "
                             "upload it again")
        from cardiovlm.ui.series_panel import read_alone

        single = len(paths) == 1 and read_alone(paths[0])
        total = sum(p.stat().st_size for p in paths)
        if total > max_upload_mb * 1024**2:
            raise StudyError(f"the upload is {total / 1024**2:.0f} MB, over this server's limit of {max_upload_mb} MB")
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for i, p in enumerate(paths):
            shutil.move(p, target / (p.name if len(paths) == 1 else f"{i:05d}_{p.name}"))
        study = target / paths[0].name if single else target
        try:
            return state.session.load_study(study, **series)
        except SeriesNotFoundError:
            if not series:
                raise
            # The series dropdowns list only this upload's series once its preview is shown, so a pick
            # not in it is the previous study's, sent by a Load pressed before the preview: by kind.
            return state.session.load_study(study)
    finally:
        shutil.rmtree(target, ignore_errors=True)
        _forget_uploads(paths)


def _forget_uploads(paths: list[Path]) -> None:
    """Delete uploaded originals left in Gradio's upload cache, and their emptied hash folders."""
    for p in paths:
        p.unlink(missing_ok=True)
        try:
            p.parent.rmdir()  # Gradio keeps each upload in a folder of its own; removed only when empty
        except OSError:
            pass


_UNCHANGED = (gr.update(),) * 5  # findings, downloads, overlays, slice index, viewer


def _answer(state: UiSession | None, text: str, history: list, request=None):
    """Stream one question: each tool call as a collapsible step, then the answer with its evidence.

    The question belongs to the study load it was asked on: if another study is loaded meanwhile,
    the session stops it and the chat says its answer was dropped. It also belongs to the
    conversation it was asked in: after Clear it stops and shows nothing. The status line names
    the stage (planning, each tool, writing the answer) and the seconds elapsed.
    """
    from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

    from cardiovlm.assistant.session import StudyChangedError
    from cardiovlm.tools.core.answer import GroundedAnswer
    from cardiovlm.ui.reports_panel import report_texts, reports_html

    text = (text or "").strip()
    try:
        state = session_for(state, request)
    except SessionOwnerError as err:
        yield (state, [*history, gr.ChatMessage(role="assistant", content=f"⚠️ {err}")], "", *_UNCHANGED, "",
               gr.update())
        return
    if not text:
        yield state, history, "", *_UNCHANGED, gr.update(), gr.update()
        return
    load_id, epoch = state.session.load_id, state.epoch  # the study load and conversation asked in
    from cardiovlm.assistant.intents import default_matcher

    # Every question is read by the intent model; loading it makes the first question of the process slow.
    first = default_matcher.cache_info().currsize == 0
    clock = progress.StageClock(progress.PLANNING_FIRST if first else progress.PLANNING)
    history = [*history, gr.ChatMessage(role="user", content=inert(text))]
    yield state, history, "", *_UNCHANGED, clock.line(), gr.update()
    steps: dict[str, int] = {}
    pending: list[str] = []  # tools called and not yet answered, in call order (they run one after another)
    turn: list[BaseMessage] = []

    def cleared() -> bool:
        return state.epoch != epoch

    if cleared():
        return
    try:
        for item in progress.run_with_ticks(state.session.ask_stream(text), stop=cleared):
            if cleared():
                return  # Clear emptied the chat: nothing of this question is shown
            if item is progress.TICK:
                yield state, history, "", *_UNCHANGED, clock.line(), gr.update()
                continue
            if isinstance(item, BaseMessage):
                turn.append(item)
            if isinstance(item, AIMessage) and item.tool_calls:
                for call in item.tool_calls:
                    args = inert(", ".join(f"{k}={v}" for k, v in call["args"].items()))
                    history.append(gr.ChatMessage(role="assistant", content=f"{inert(call['name'])}\\({args}\\)",
                                                  metadata={"title": f"🔧 {call['name']}", "status": "pending"}))
                    steps[call["id"]] = len(history) - 1
                    pending.append(call["name"])
                clock.enter(progress.tool_stage(pending[0]))
                yield state, history, "", *_UNCHANGED, clock.line(), gr.update()
            elif isinstance(item, ToolMessage) and item.tool_call_id in steps:
                i = steps[item.tool_call_id]
                ok = item.status != "error"
                body = hide_server_paths(item.content)  # a tool's result may quote stored reports
                history[i] = gr.ChatMessage(role="assistant", content=history[i].content + "\n\n" + inert(
                    body[:600] + ("…" if len(body) > 600 else "")),
                    metadata={"title": f"{'🔧' if ok else '⚠️'} {item.name}", "status": "done"})
                if item.name in pending:
                    pending.remove(item.name)
                clock.enter(progress.tool_stage(pending[0]) if pending else progress.WRITING)
                yield state, history, "", *_UNCHANGED, clock.line(), gr.update()
            elif isinstance(item, GroundedAnswer):
                if state.session.load_id != load_id:  # loaded after the session's last check
                    raise StudyChangedError("another study was loaded while this question ran, so its answer "
                                            "was dropped; ask again about the study now loaded")
                shown = _show_answer(state, history, item, load_id)
                yield (state, *shown, clock.summary("✓ answered"),
                       reports_html(item.question, item.citations, report_texts(turn)))
    except StudyChangedError as err:  # expected when the reader switches study: no traceback in the log
        log.info("a question was dropped by a study switch")
        history.append(gr.ChatMessage(role="assistant", content=f"⚠️ {inert(str(err))}"))
        yield state, history, "", *_UNCHANGED, clock.summary("✗ dropped"), gr.update()
    except Exception as err:  # the session continues; the clinician sees a readable message
        log.exception("question failed")
        message = (hide_server_paths(str(err)) if isinstance(err, ValueError)
                   else f"the question could not be answered ({type(err).__name__})")
        history.append(gr.ChatMessage(role="assistant", content=f"⚠️ {inert(message)}"))
        yield state, history, "", *_UNCHANGED, clock.summary("✗ not answered"), gr.update()


def _show_answer(state: UiSession, history: list, answer, load_id: int):
    """The chat, findings, downloads and viewer updates of an answer (the outputs after the question box)."""
    from cardiovlm.ui.downloads import write_answer_files

    # The answer may quote stored reports, and citations are report text: all shown inert.
    content = inert(hide_server_paths(answer.answer))
    if answer.citations:
        content += "\n\n**Prior reports**\n" + "\n".join(
            f"- {inert(c.report_id)} ({inert(c.date or 'undated')}): {inert(c.snippet)}" for c in answer.citations)
    content += f"\n\n_{inert(answer.disclaimer)}_"
    if answer.overlay_png:  # above the text: the chat ends with the answer, visible without scrolling
        from PIL import Image

        overlay = _display(np.asarray(Image.open(answer.overlay_png).convert("RGB")), target=256)
        history.append(gr.ChatMessage(role="assistant", content=gr.Image(overlay, buttons=["fullscreen"])))
    history.append(gr.ChatMessage(role="assistant", content=content))
    state.answer, state.answer_load = answer, load_id
    state.questions += 1
    rows = [[f.name, f.value, f.unit, f.tool] for f in answer.findings]
    ctx = state.session.context
    # Named after the case and the answer, in this study load's own folder (a switch never overwrites them).
    # A question asked before any study is loaded is answered (the tool says why it cannot), with no files.
    files = write_answer_files(answer, ctx, state.questions) if ctx is not None else []
    names = sorted(ctx.extra_masks) if ctx else []
    shown = [m.name for m in answer.masks if m.name in names]
    index, viewer = gr.update(), gr.update()
    if shown and ctx is not None:
        from cardiovlm.tools.core.anatomy import mask_color
        from cardiovlm.tools.views.render import best_slice, plane_size, render

        # Show the slice that holds most of the answer's mask, in the plane and window being read.
        best = best_slice(ctx.extra_masks[shown[0]], state.plane)
        index = gr.update(maximum=plane_size(ctx.study.shape, state.plane) - 1, value=best)
        viewer = _display(render(ctx.study.hu, state.plane, best, state.preset,
                                 [(ctx.extra_masks[n], mask_color(n)) for n in shown]))
    return history, "", rows, files, gr.update(choices=names, value=shown), index, viewer

