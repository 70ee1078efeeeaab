"""The series picker: the loaded study's series by kind, and which are loaded as the CCTA and the
calcium-scoring series.

How to wire it into ``ui/app.py`` (inside the ``gr.Blocks``; ``state`` is the app's ``UiSession``,
whose ``.session`` is the :class:`cardiovlm.assistant.session.Session`)::

    from cardiovlm.ui.series_panel import build_series_panel, series_view, apply_pick, preview_upload, load_kwargs

    series = build_series_panel()            # an Accordion "Series" with a table, two dropdowns, a button
    outs = series.outputs                    # [table, ccta, calcium, message]

    # 1. after every successful load (demo, upload, PACS): show the listing and the pick
    load_event.then(lambda state: series_view(state.session), state, outs)

    # 2. before an upload is loaded: list its series so the user can pick first (the app deletes
    #    uploads once loaded, so a pick after loading cannot re-read them)
    upload.change(preview_upload, upload, outs)
    #    ...and in the upload load handler pass the pick on:
    #    state.session.load_study(path, **load_kwargs(ccta_value, calcium_value))

    # 3. "Load this pick": reloads the study with the chosen series (a new study load: the chat
    #    starts afresh, so refresh the summary, the viewer and the chat as after a load)
    series.apply.click(lambda state, c, k: apply_pick(state.session, c, k),
                       [state, series.ccta, series.calcium], outs).then(<refresh viewer/summary/chat>)

Every handler returns ``(rows, ccta_update, calcium_update, message)``; errors come back as a
``⚠️`` message (a typed ``StudyError`` underneath), never a traceback. ``apply_pick`` works for a
case or a DICOM folder on the server and for a PACS study (retrieved again); for an upload already
deleted it says to load the study again and pick first. The dropdown values are SeriesInstanceUIDs
(``cardiovlm.tools.ingest.series.NO_SERIES`` = no calcium series).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from cardiovlm.tools.ingest.series import KIND_NAMES, NO_SERIES, SeriesInfo, SeriesPick, list_series, pick_series
from cardiovlm.tools.ingest.study_errors import StudyError

COLUMNS = ["series", "kind", "description", "slices", "thickness (mm)", "kVp", "loaded as"]
NONE_LABEL = "none (no calcium-scoring series)"


@dataclass
class SeriesPanel:
    box: gr.Accordion
    table: gr.Dataframe
    ccta: gr.Dropdown
    calcium: gr.Dropdown
    apply: gr.Button
    message: gr.Markdown

    @property
    def outputs(self) -> list:
        """The components every handler of this module updates, in its return order."""
        return [self.table, self.ccta, self.calcium, self.message]


def build_series_panel(*, open: bool = False) -> SeriesPanel:
    """The panel's components, built where it is called (inside a ``gr.Blocks``)."""
    with gr.Accordion("Series", open=open, elem_id="series-panel") as box:
        table = gr.Dataframe(headers=COLUMNS, value=[], label="Series of this study", interactive=False,
                             elem_id="series-table")
        with gr.Row():
            # A custom value is let through: "Load upload" pressed before the new upload's preview has
            # replaced the choices sends the previous study's pick, which Gradio would otherwise refuse
            # with an error toast instead of loading (the loader drops a pick that is not in the study).
            ccta = gr.Dropdown([], value=None, label="Load as the CCTA", elem_id="series-ccta",
                               allow_custom_value=True)
            calcium = gr.Dropdown([(NONE_LABEL, NO_SERIES)], value=None, label="Calcium-scoring series",
                                  elem_id="series-calcium", allow_custom_value=True)
        apply = gr.Button("Load this pick", size="sm", elem_id="series-apply")
        message = gr.Markdown("", elem_id="series-message")
    return SeriesPanel(box=box, table=table, ccta=ccta, calcium=calcium, apply=apply, message=message)


def unfold_for_several(rows) -> dict:
    """Open the panel when a study has several series (the pick is the user's to check); else leave it."""
    return gr.update(open=True) if rows is not None and len(rows) > 1 else gr.update()


def series_rows(listing: list[SeriesInfo], pick: SeriesPick | None) -> list[list]:
    """One table row per series: number, kind, description, slices, thickness, kVp, what it is loaded as."""
    def role(s: SeriesInfo) -> str:
        if pick is None:
            return ""
        return "CCTA" if s.uid == pick.ccta else "calcium scoring" if s.uid == pick.calcium else "not loaded"

    return [[s.number, KIND_NAMES[s.kind], s.description, s.n_slices,
             "" if s.slice_thickness_mm is None else f"{s.slice_thickness_mm:g}",
             "" if s.kvp is None else f"{s.kvp:g}", role(s)] for s in listing]


def _view(listing: list[SeriesInfo], pick: SeriesPick | None, message: str):
    volumes = [s for s in listing if s.loadable]
    ccta_choices = [(s.label(), s.uid) for s in volumes]
    calcium_choices = [(NONE_LABEL, NO_SERIES)] + ccta_choices
    ccta_value = pick.ccta if pick else None
    calcium_value = (pick.calcium or NO_SERIES) if pick else None
    return (series_rows(listing, pick), gr.update(choices=ccta_choices, value=ccta_value),
            gr.update(choices=calcium_choices, value=calcium_value), message)


def _error(err: Exception):
    return gr.update(), gr.update(), gr.update(), f"⚠️ {err}"


def series_view(session) -> tuple:
    """The loaded study's series and the pick (``session``: an ``cardiovlm.assistant.session.Session``)."""
    if session is None or session.context is None:
        return [], gr.update(choices=[], value=None), gr.update(choices=[(NONE_LABEL, NO_SERIES)], value=None), \
            "No study is loaded."
    pick = session.series_pick
    if not session.series or pick is None:
        return [], gr.update(choices=[], value=None), gr.update(value=None), "This study is a single volume."
    return _view(session.series, pick, pick.reason)


def apply_pick(session, ccta: str | None, calcium: str | None) -> tuple:
    """Load the study again with the series picked; the previous study stays when the pick fails."""
    if session is None or session.context is None:
        return _error(StudyError("no study is loaded: load a study first, then pick its series"))
    try:
        session.pick_series(**load_kwargs(ccta, calcium))
    except StudyError as err:
        return _error(err)
    return series_view(session)


def load_kwargs(ccta: str | None, calcium: str | None) -> dict:
    """The keyword arguments of ``Session.load_study`` for the dropdowns' values (empty: automatic)."""
    out = {}
    if ccta:
        out["ccta_series"] = ccta
    if calcium:
        out["calcium_series"] = calcium
    return out


def read_alone(path: Path) -> bool:
    """Whether one uploaded file is read as itself rather than as a folder of one DICOM image.

    A zip or NIfTI is a study on its own. So is any file that is not DICOM (a picture, a text): the
    reader then says plainly what it is not, instead of "no 3D image series" about an unseen folder.
    """
    if path.suffix.lower() in (".zip", ".nii", ".gz"):
        return True
    try:
        with open(path, "rb") as f:  # a DICOM file carries "DICM" after its 128-byte preamble
            f.seek(128)
            return f.read(4) != b"DICM"
    except OSError:
        return False


def preview_upload(files) -> tuple:
    """List the series of an upload before it is loaded, with the automatic pick preselected.

    ``files``: the ``gr.File`` value (one path, or a list of paths or file objects). Nothing is
    copied: a list of loose files is listed through links in a temporary folder, removed at once.
    """
    if not files:
        return [], gr.update(choices=[], value=None), gr.update(choices=[(NONE_LABEL, NO_SERIES)], value=None), ""
    paths = [Path(f if isinstance(f, str) else getattr(f, "name", str(f)))
             for f in (files if isinstance(files, list) else [files])]
    try:
        if len(paths) == 1 and (paths[0].is_dir() or read_alone(paths[0])):
            listing = list_series(paths[0])
        else:
            folder = Path(tempfile.mkdtemp(prefix="cardiovlm-preview-"))
            try:
                for i, p in enumerate(paths):
                    (folder / f"{i:05d}_{p.name}").symlink_to(p.resolve())
                listing = list_series(folder)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        pick = pick_series(listing)
    except StudyError as err:
        return [], gr.update(choices=[], value=None), gr.update(value=None), f"⚠️ {err}"
    return _view(listing, pick, f"{len(listing)} series found; {pick.reason}. Change the pick before loading "
                               "if needed.")
