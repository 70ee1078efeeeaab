"""Quantification subcommands: ``cardiovlm calcium PATH [--json]`` (and ``measure`` / ``stent`` below).

Thin: parse, load the study context, call the library, print. Heavy imports stay inside handlers.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_calcium(subparsers)
    _register_lesion_commands(subparsers)


def _add_anatomy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--anatomy", choices=("image", "case_labels"), default="image",
                        help="where the coronary anatomy comes from: found in the CT (default), or a case folder's "
                             "own label map, used on purpose")
    parser.add_argument("--reference", action="store_true",
                        help="also show a case folder's ground truth beside the measured value, with the error and "
                             "the Dice of the masks used (grading only; never changes the measured value)")


def _load(args: argparse.Namespace):
    from cardiovlm.tools.quant.context import load_context

    return load_context(args.path, anatomy=args.anatomy)


def _print_reference(args: argparse.Namespace, ctx, measure) -> None:
    """The same measurement on the case's own label map, and the Dice of the masks, beside the result."""
    import numpy as np

    from cardiovlm.tools.core.anatomy import CORONARY_LABELS
    from cardiovlm.tools.quant.context import load_context

    if ctx.reference is None or ctx.reference.labels is None:
        print("reference: none (not a case folder with a label map)")
        return
    truth_ctx = load_context(args.path, anatomy="case_labels")
    try:
        print(f"reference ({ctx.reference.source}): {measure(truth_ctx)}")
    except Exception as err:  # noqa: BLE001 - the reference path is reported, whatever stops it
        print(f"reference ({ctx.reference.source}): could not be computed ({err})")
    if ctx.labels is not None:
        ids = list(CORONARY_LABELS)
        found, true = np.isin(ctx.labels, ids), np.isin(ctx.reference.labels, ids)
        dice = 2 * (found & true).sum() / max(found.sum() + true.sum(), 1)
        print(f"coronary masks used vs reference: Dice {dice:.3f} ({ctx.labels_source.split(' (')[0]})")


# --------------------------------------------------------------------------------------------- calcium
def _register_calcium(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calcium", help="coronary calcium: Agatston, volume and mass per artery, CAC-DRS",
        description="Score coronary calcium of a case folder or study. With a non-contrast calcium-scoring "
        "series: Agatston, volume and mass scores per artery (LM, LAD, LCx, RCA) and CAC-DRS. On a contrast "
        "CCTA alone: calcium volume only (not an Agatston score). The total needs no labels; the split per "
        "artery uses the coronary tree found in the image. Exit code 2 with a one-line message when it cannot "
        "score.")
    parser.add_argument("path", help="case folder or study")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    _add_anatomy_options(parser)
    parser.set_defaults(func=_run_calcium)


def _run_calcium(args: argparse.Namespace) -> int:
    from cardiovlm.tools.quant.calcium import score_context

    ctx = _load(args)
    result = score_context(ctx)
    if args.json:
        print(result.model_dump_json(indent=1))
        return 0
    print(result.label)
    if result.agatston is not None:
        print(f"Agatston {result.agatston:.1f}   volume {result.volume_mm3:.1f} mm^3   mass {result.mass_mg:.1f} mg   "
              f"CAC-DRS {result.cac_drs}   plaque burden {result.plaque_burden or '-'}")
    else:
        print(f"calcium volume {result.volume_mm3:.1f} mm^3")
    print(f"{'artery':<7}{'Agatston':>10}{'volume mm^3':>13}{'lesions':>9}")
    for artery, art in result.per_artery.items():
        score = "-" if art.agatston is None else f"{art.agatston:.1f}"
        print(f"{artery:<7}{score:>10}{art.volume_mm3:>13.1f}{art.lesions:>9}")
    for lesion in result.excluded:
        print(f"excluded: lesion at {lesion.centroid_mm} mm, {lesion.volume_mm3:.1f} mm^3: {lesion.excluded_reason}")
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(f"method: {result.method}")
    if args.reference:
        _print_reference(args, ctx, lambda c: _calcium_line(score_context(c)))
    return 0


def _calcium_line(result) -> str:
    if result.agatston is None:
        return f"calcium volume {result.volume_mm3:.1f} mm^3"
    arteries = ", ".join(f"{a} {v.agatston:.1f}" for a, v in result.per_artery.items() if v.agatston)
    return f"Agatston {result.agatston:.1f}, CAC-DRS {result.cac_drs} ({arteries or 'no artery'})"


# ------------------------------------------------------------------------------ lesion and stent
def _register_lesion_commands(subparsers: argparse._SubParsersAction) -> None:
    """``measure`` (stenosis along a vessel) and ``stent`` (stent coverage of its worst lesion)."""
    parser = subparsers.add_parser(
        "measure", help="lesion and stenosis along a coronary artery or segment, CAD-RADS 2.0",
        description="Measure the most severe lesion of a coronary artery or segment of a case folder: percent "
        "diameter stenosis, lesion start, end and length (mm), minimal lumen and reference diameters, CAD-RADS "
        "2.0 category, measured on the CT intensities. The vessel is located in the coronary tree found in the "
        "image (--anatomy case_labels uses a case folder's own label map). Exit code 2 with a one-line message "
        "when it cannot measure.")
    parser.add_argument("path", help="case folder or study (DICOM folder, zip or NIfTI)")
    parser.add_argument("--segment", required=True, help="artery ('LAD') or segment ('pLAD', 'proximal RCA')")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    _add_anatomy_options(parser)
    parser.set_defaults(func=_run_measure)

    parser = subparsers.add_parser(
        "stent", help="will a stent of a given length cover the lesion of a segment?",
        description="Check whether a stent covers the lesion of a segment (or an artery's worst lesion) from "
        "normal vessel to normal vessel with a healthy landing zone at each end (default from settings, a "
        "convention, not a guideline); margins, shortest catalogue length, suggested diameter, ostium and "
        "bifurcation flags.")
    parser.add_argument("path", help="case folder or study (DICOM folder, zip or NIfTI)")
    parser.add_argument("--segment", required=True, help="segment with the lesion ('pLAD') or artery ('LAD')")
    parser.add_argument("--length", type=float, required=True, help="stent length in mm")
    parser.add_argument("--diameter", type=float, default=None, help="stent diameter in mm (optional)")
    parser.add_argument("--landing-zone", type=float, default=None, help="healthy margin per end in mm")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    _add_anatomy_options(parser)
    parser.set_defaults(func=_run_stent)


def _run_measure(args: argparse.Namespace) -> int:
    from cardiovlm.tools.quant.stenosis import measure_lesion

    ctx = _load(args)
    result = measure_lesion(ctx, args.segment)
    if args.json:
        print(result.model_dump_json(indent=1))
        return 0
    print(result.message)
    les = result.lesion
    if les is not None:
        print(f"lesion {les.start_mm:.1f}-{les.end_mm:.1f} mm along the {result.vessel} centerline "
              f"(segments {', '.join(les.segments)}), MLD at {les.mld_position_mm:.1f} mm, "
              f"minimal lumen area {les.minimal_lumen_area_mm2:.2f} mm^2")
    m = result.measurement
    print(f"centerline: {m.centerline_source}; masks: {result.labels_source}")
    if args.reference:
        _print_reference(args, ctx, lambda c: measure_lesion(c, args.segment).message)
        _print_true_findings(ctx, args.segment)
    return 0


def _print_true_findings(ctx, target: str) -> None:
    """The case's own findings on the asked vessel (phantoms know their lesions exactly)."""
    from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE, resolve_structure_or_segment

    findings = ctx.reference.findings if ctx.reference else None
    if findings is None:
        return
    kind, key = resolve_structure_or_segment(target)
    on = [f for f in findings.findings
          if f.segment == key or (kind == "artery" and SEGMENTS_BY_CODE[f.segment].artery == key)]
    for f in on:
        print(f"reference finding {f.id}: {f.kind} on {f.segment}, {f.stenosis_percent:.0f} %, {f.length_mm:.1f} mm")
    if not on:
        print(f"reference findings: none on {target}")


def _run_stent(args: argparse.Namespace) -> int:
    from cardiovlm.tools.quant.stent import stent_coverage

    ctx = _load(args)

    def plan_on(c):
        return stent_coverage(c, args.segment, args.length, stent_diameter_mm=args.diameter,
                              landing_zone_mm=args.landing_zone)

    plan = plan_on(ctx)
    if args.json:
        print(plan.model_dump_json(indent=1))
        return 0
    print(plan.message)
    for reason in plan.reasons:
        print(f"reason: {reason}")
    if args.reference:
        _print_reference(args, ctx, lambda c: plan_on(c).message)
    return 0
