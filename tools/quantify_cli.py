"""Quantification subcommands: ``cardiovlm calcium PATH [--json]`` (and ``measure`` / ``stent`` below).

Thin: parse, load the study context, call the library, print. Heavy imports stay inside handlers.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_calcium(subparsers)
    _register_lesion_commands(subparsers)


# --------------------------------------------------------------------------------------------- calcium
def _register_calcium(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calcium", help="coronary calcium: Agatston, volume and mass per artery, CAC-DRS",
        description="Score coronary calcium of a case folder or study. With a non-contrast calcium-scoring "
        "series: Agatston, volume and mass scores per artery (LM, LAD, LCx, RCA) and CAC-DRS. On a contrast "
        "CCTA alone: calcium volume only (not an Agatston score). Needs coronary labels (a case folder's "
        "label map). Exit code 2 with a one-line message when it cannot score.")
    parser.add_argument("path", help="case folder (or study with its labels)")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.set_defaults(func=_run_calcium)


def _run_calcium(args: argparse.Namespace) -> int:
    from tools.calcium import score_context
    from tools.context import load_context

    result = score_context(load_context(args.path))
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
    return 0


# ------------------------------------------------------------------------------ lesion and stent
def _register_lesion_commands(subparsers: argparse._SubParsersAction) -> None:
    """``measure`` (stenosis along a vessel) and ``stent`` (stent coverage of its worst lesion)."""
    parser = subparsers.add_parser(
        "measure", help="lesion and stenosis along a coronary artery or segment, CAD-RADS 2.0",
        description="Measure the most severe lesion of a coronary artery or segment of a case folder: percent "
        "diameter stenosis, lesion start, end and length (mm), minimal lumen and reference diameters, CAD-RADS "
        "2.0 category. Needs coronary labels (a case folder's label map). Exit code 2 with a one-line message "
        "when it cannot measure.")
    parser.add_argument("path", help="case folder (or study with its labels)")
    parser.add_argument("--segment", required=True, help="artery ('LAD') or segment ('pLAD', 'proximal RCA')")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.set_defaults(func=_run_measure)

    parser = subparsers.add_parser(
        "stent", help="will a stent of a given length cover the lesion of a segment?",
        description="Check whether a stent covers the lesion of a segment (or an artery's worst lesion) from "
        "normal vessel to normal vessel with a healthy landing zone at each end (default from settings, a "
        "convention, not a guideline); margins, shortest catalogue length, suggested diameter, ostium and "
        "bifurcation flags.")
    parser.add_argument("path", help="case folder (or study with its labels)")
    parser.add_argument("--segment", required=True, help="segment with the lesion ('pLAD') or artery ('LAD')")
    parser.add_argument("--length", type=float, required=True, help="stent length in mm")
    parser.add_argument("--diameter", type=float, default=None, help="stent diameter in mm (optional)")
    parser.add_argument("--landing-zone", type=float, default=None, help="healthy margin per end in mm")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.set_defaults(func=_run_stent)


def _run_measure(args: argparse.Namespace) -> int:
    from tools.context import load_context
    from tools.stenosis import measure_lesion

    result = measure_lesion(load_context(args.path), args.segment)
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
    return 0


def _run_stent(args: argparse.Namespace) -> int:
    from tools.context import load_context
    from tools.stent import stent_coverage

    plan = stent_coverage(load_context(args.path), args.segment, args.length, stent_diameter_mm=args.diameter,
                          landing_zone_mm=args.landing_zone)
    if args.json:
        print(plan.model_dump_json(indent=1))
        return 0
    print(plan.message)
    for reason in plan.reasons:
        print(f"reason: {reason}")
    return 0
