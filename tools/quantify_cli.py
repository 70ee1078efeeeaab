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
    """``measure`` and ``stent`` (stenosis and stent coverage) are registered here by their owner."""
