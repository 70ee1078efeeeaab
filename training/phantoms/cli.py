"""``cardiovlm phantoms``: generate a folder of synthetic CCTA cases with ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("phantoms", help="generate synthetic coronary CT angiography cases")
    parser.add_argument("--n", type=int, default=1, help="number of cases (default 1)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the case folders into")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed; case i gets a seed derived from it")
    parser.add_argument("--size", choices=("small", "demo"), default="small",
                        help="small: 1 mm voxels, seconds per case; demo: 0.65 mm in-plane, clinical resolution")
    parser.add_argument("--preview", action="store_true", help="also render axial, coronal and MIP PNGs")
    parser.add_argument("--no-dicom", action="store_true", help="write NIfTI only (no DICOM series)")
    parser.add_argument("--no-cac", action="store_true", help="skip the non-contrast calcium-scoring series")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from training.phantoms.generate import generate_dataset

    paths = generate_dataset(args.out, n=args.n, seed=args.seed, size=args.size, progress=True,
                             preview=args.preview, with_dicom=not args.no_dicom, with_cac=not args.no_cac)
    print(f"wrote {len(paths)} case(s) to {args.out}")
    return 0
