"""The vessel view that opens with a stenosis or stent answer: a PNG and its caption.

How the app calls it (after each answer, with the session the answer was asked in)::

    from cardiovlm.ui.vessel_panel import vessel_view_for_answer
    from cardiovlm.tools.views.vessel_view import VesselViewError

    try:
        view = vessel_view_for_answer(session, answer)   # session: cardiovlm.assistant.session.Session
    except VesselViewError as err:                         # err.code == "vessel_view.unavailable"
        view, note = None, str(err)                        # a clinician-readable reason, no traceback
    if view is not None:
        image_path, caption = view.path, view.caption      # e.g. gr.Image(value=str(view.path), label=caption)

``session`` may also be a :class:`cardiovlm.tools.quant.context.StudyContext`. ``answer`` is the
:class:`cardiovlm.tools.core.answer.GroundedAnswer` just returned. The result is ``None`` when the answer
holds no successful ``measure_lesion`` or ``stent_coverage`` call (nothing about a vessel to
draw). The PNG is written into the session's output folder (``StudyContext.outputs()``), named
after the case folder (else ``study_<date>``, never an upload's file name) and the vessel or
segment the answer named (``lad_stenosis_LAD_vessel_view.png``,
``lad_stenosis_LAD_stent-20mm_vessel_view.png``); asking again overwrites it. The caption and
``file_name`` hold no server path. It costs about 0.6 s of CPU on a demo case (0.9 s for a stent
answer: the vessel is measured again from the CT) and uses no pyplot state, so sessions may call
it from their own threads.

What is drawn is measured again from the CT with the same tool and arguments as the answer, so
the picture carries the answer's numbers; if they differ (another study was loaded since the
answer), :class:`~cardiovlm.tools.views.vessel_view.VesselViewError` says so instead of drawing another study.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from cardiovlm.tools.core.answer import GroundedAnswer
from cardiovlm.tools.quant.cadrads import shown_percent, worst_lesion
from cardiovlm.tools.quant.context import StudyContext
from cardiovlm.tools.quant.stenosis import (
    LesionMeasurement,
    StenosisError,
    measure_lesion,
    segments_for,
)
from cardiovlm.tools.quant.stent import StentError, StentPlan, stent_coverage
from cardiovlm.tools.views.vessel_view import (
    VesselViewConfig,
    VesselViewError,
    drawing_from_measurement,
    lesion_sections,
    render_vessel_view,
    straighten,
)

VESSEL_TOOLS = ("measure_lesion", "stent_coverage")
STENT_ARGS = ("stent_diameter_mm", "landing_zone_mm")


@dataclass(frozen=True)
class VesselViewImage:
    """The vessel view of one answer."""

    path: Path  # the PNG in the session's output folder (serve it; never show this path in text)
    file_name: str  # what a page may show or offer as the download name
    caption: str  # what the picture shows, with the answer's numbers; no server paths
    vessel: str  # the artery or segment drawn, e.g. "LAD" or "pLAD"
    seconds: float  # time taken to measure and draw


def _context(session_or_ctx) -> StudyContext:
    ctx = session_or_ctx if isinstance(session_or_ctx, StudyContext) else getattr(session_or_ctx, "context", None)
    if not isinstance(ctx, StudyContext):
        raise VesselViewError("no study is loaded, so the vessel cannot be drawn: load the study again")
    return ctx


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "study"


def case_name(ctx: StudyContext) -> str:
    """The study's name for file names: the case folder's name, else "study_<date>".

    An upload's file name is never used: it may hold the patient's name.
    """
    if ctx.case is not None:
        return _safe(ctx.case.root.name)
    date = ctx.study.metadata.get("study_date")
    return f"study_{_safe(str(date))}" if date else "study"


def _findings(answer: GroundedAnswer, name: str, tool: str) -> list:
    return [f.value for f in answer.findings if f.name == name and f.tool == tool]


def _where(vessel: str) -> str:
    """The name an answer's findings use for a vessel argument ('proximal LAD' -> 'pLAD')."""
    try:
        name, segment = segments_for(vessel)
    except StenosisError:
        return vessel
    return segment or name


def _check_same(answer: GroundedAnswer, measured: LesionMeasurement, plan: StentPlan | None) -> None:
    """The re-measured vessel must carry the answer's numbers, else the study changed meanwhile."""
    where = measured.segment or measured.vessel
    now: str | int  # a stent status or "none found" in words, else the shown whole percent
    if plan is not None:  # one finding per stent length asked about
        said, now = _findings(answer, "stent coverage", "stent_coverage"), plan.status.replace("_", " ")
    elif measured.lesion is None:
        said, now = _findings(answer, f"{where} lesion", "measure_lesion"), "none found"
    else:
        # The answer's finding holds the shown percent, so the re-measurement is compared as shown.
        said = [round(float(v)) for v in _findings(answer, f"{where} diameter stenosis", "measure_lesion")]
        now = shown_percent(measured.lesion.stenosis_percent)
    if said and now not in said:
        raise VesselViewError(f"the {where} measured now ({now}) differs from the answer ({', '.join(map(str, said))}):"
                              " another study was loaded since this answer, so its vessel view is not drawn")


def _most_stenosed_said(answer: GroundedAnswer, vessels: list[str]) -> list[str]:
    """The vessels whose stenosis, as the answer shows it, is the highest: usually one, so only it is
    measured again; several when the shown percents tie (the answer's own rule then decides)."""
    said = {v: [float(x) for x in _findings(answer, f"{_where(v)} diameter stenosis", "measure_lesion")]
            for v in vessels}
    if not any(said.values()):
        return vessels
    top = max(max(p) for p in said.values() if p)
    return [v for v in vessels if said[v] and max(said[v]) == top]


def _holding_worst(measured: list[LesionMeasurement]) -> LesionMeasurement:
    """The measurement holding the most severe lesion by the answer's rule
    (:func:`cardiovlm.tools.quant.cadrads.worst_lesion`:
    highest stenosis, then longer, then more proximal), so the picture shows the lesion the answer names."""
    worst = worst_lesion(m.lesion for m in measured if m.lesion is not None)
    return next((m for m in measured if worst is not None and m.lesion is worst), measured[0])


def _pick(ctx: StudyContext, answer: GroundedAnswer):
    """(measurement, stent plan or None, stent args) of the vessel the answer is about, or None."""
    calls = [c for c in answer.tool_calls if c.ok and c.name in VESSEL_TOOLS and c.args.get("vessel")]
    if not calls:
        return None
    try:
        stent_calls = [c for c in calls if c.name == "stent_coverage"]
        if stent_calls:
            args = stent_calls[-1].args
            measured = measure_lesion(ctx, args["vessel"])
            plan = stent_coverage(ctx, args["vessel"], float(args["stent_length_mm"]),
                                  **{k: args[k] for k in STENT_ARGS if args.get(k) is not None})
            return measured, plan, args
        # Several vessels measured (a CAD-RADS answer): draw the most severe lesion's, picked by the
        # answer's own findings so that only that vessel is measured again.
        vessels = _most_stenosed_said(answer, list(dict.fromkeys(c.args["vessel"] for c in calls)))
        return _holding_worst([measure_lesion(ctx, v) for v in vessels]), None, None
    except (StenosisError, StentError, KeyError, ValueError) as err:
        if isinstance(err, VesselViewError):
            raise
        raise VesselViewError(f"the vessel could not be measured again to draw it: {err}") from err


def caption_for(measured: LesionMeasurement, plan: StentPlan | None, source: str) -> str:
    """What the picture shows, in the answer's rounding (stenosis whole %, lengths 0.1 mm)."""
    m, les = measured.measurement, measured.lesion
    where = measured.segment or measured.vessel
    text = f"{measured.vessel} straightened along its {source}, two lengthwise cuts at 90 degrees (W 700 / L 200). "
    if les is None:
        text += f"No lesion found on the {where}; lumen and reference diameter plotted along {m.length_mm:.1f} mm."
    else:
        text += (f"Lesion (orange) in the {les.segment}: {shown_percent(les.stenosis_percent)}% diameter stenosis "
                 f"(CAD-RADS {les.category}), {les.start_mm:.1f}-{les.end_mm:.1f} mm, {les.length_mm:.1f} mm long; "
                 f"minimal lumen diameter (red) {les.minimal_lumen_diameter_mm:.1f} mm at {les.mld_position_mm:.1f} mm, "  # noqa: E501
                 f"reference {les.reference_diameter_mm:.1f} mm.")
    if plan is not None and plan.lesion is not None and plan.margin_proximal_mm is not None:
        zones = "both healthy" if plan.covers else "not both met"
        text += (f" Proposed stent (blue) {plan.stent_length_mm:g} mm placed with margins "
                 f"{plan.margin_proximal_mm:.1f} / {plan.margin_distal_mm:.1f} mm; landing zones of "
                 f"{plan.landing_zone_mm:g} mm {zones} (green healthy, red short).")
    return text + " Distances from the proximal end of the measured path; measured from the CT intensities."


def vessel_view_for_answer(session_or_ctx, answer: GroundedAnswer, *,
                           config: VesselViewConfig | None = None) -> VesselViewImage | None:
    """The vessel view of ``answer`` (see the module docstring for how the app uses it).

    Returns:
        None when the answer measured no vessel; else the PNG and its caption.

    Raises:
        VesselViewError: no study is loaded, the study changed since the answer, or the vessel
            cannot be measured or laid out again (a clinician-readable message).
    """
    started = time.perf_counter()
    if not any(c.ok and c.name in VESSEL_TOOLS for c in answer.tool_calls):
        return None
    ctx = _context(session_or_ctx)
    picked = _pick(ctx, answer)
    if picked is None:
        return None
    measured, plan, stent_args = picked
    _check_same(answer, measured, plan)
    m = measured.measurement
    if m.profile is None:
        raise VesselViewError(f"the {measured.vessel} measurement carries no profile to draw")
    source = ("image-derived centerline" if "image-derived" in m.centerline_source.lower()
              else "measured centerline")
    view = straighten(ctx.study.hu, ctx.study.affine, m.profile.path.points_mm, config)
    lesion = plan.lesion if plan is not None and plan.lesion is not None else measured.lesion
    drawing = drawing_from_measurement(m, lesion, plan)
    where = measured.segment or measured.vessel
    name = f"{case_name(ctx)}_{_safe(where)}"
    if stent_args is not None:
        name += f"_stent-{float(stent_args['stent_length_mm']):g}mm"
    file_name = f"{name}_vessel_view.png"
    title = (f"{where}: " + ("no lesion found" if lesion is None else
                             f"{shown_percent(lesion.stenosis_percent)}% diameter stenosis "
                             f"(CAD-RADS {lesion.category}) "
                             f"in the {lesion.segment}")
             + ("" if plan is None else f"; {plan.stent_length_mm:g} mm stent: {plan.status.replace('_', ' ')}"))
    sections = lesion_sections(ctx.study.hu, ctx.study.affine, view, drawing)
    png = ctx.outputs() / file_name
    render_vessel_view(view, drawing, out_path=png, title=title, sections=sections, config=config)
    caption = caption_for(measured, plan, source)
    if sections:
        caption += (" Right: cross-sections at the MLD" + (" and at the healthiest plane nearby" if len(sections) > 1
                                                            else "") + ", dashed circles the diameters read there.")
    return VesselViewImage(path=png, file_name=file_name, caption=caption,
                           vessel=where, seconds=round(time.perf_counter() - started, 2))
