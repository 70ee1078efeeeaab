"""``cardiovlm ingest PATH [--json]``: load a study and print what was loaded."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ingest", help="load a CT study (DICOM folder, zip, NIfTI or case folder) and print its summary",
        description="Load a CT study and print its modality, shape, voxel spacing, the series chosen and "
        "any warnings. Exit code 2 with a one-line message when the input cannot be loaded.")
    parser.add_argument("path", help="DICOM folder, .zip of DICOM files, .nii/.nii.gz file or case folder")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import json

    from cardiovlm.tools.ingest.study import load_study

    summary = load_study(args.path).summary()
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        if key == "warnings":
            continue
        if isinstance(value, list):
            value = " x ".join(str(v) for v in value)
        print(f"{key:<{width}}  {value if value is not None else '-'}")
    for warning in summary["warnings"]:
        print(f"warning: {warning}")
    return 0
