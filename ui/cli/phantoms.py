"""``cardiovlm phantoms``: generate a folder of synthetic CCTA cases with ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("phantoms", help="generate synthetic coronary CT angiography cases")
    parser.add_argument("--n", type=int, default=1, help="number of cases (default 1)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the case folders into")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed; case i gets a seed derived from it")
    parser.add_argument("--size", choices=("small", "demo", "chest"), default="small",
                        help="small: 1 mm voxels, seconds per case; demo: 0.65 mm in-plane, clinical resolution; "
                             "chest: 1.5 mm over the whole thorax (needs --realistic)")
    parser.add_argument("--realistic", action="store_true",
                        help="generator 2.0 thorax and imaging physics (kernel noise, mixing, streaks, blooming, motion)")  # noqa: E501
    parser.add_argument("--preview", action="store_true", help="also render axial, coronal and MIP PNGs")
    parser.add_argument("--no-dicom", action="store_true", help="write NIfTI only (no DICOM series)")
    parser.add_argument("--no-cac", action="store_true", help="skip the non-contrast calcium-scoring series")
    parser.add_argument("--noise-hu", type=float, default=None, metavar="SD",
                        help="image noise SD in HU for every case (default: drawn per case, 15-30; with "
                             "--realistic from the real reference, slice thickness, body size and a dose draw)")
    parser.add_argument("--blood-hu", type=float, default=None, metavar="HU",
                        help="left-heart blood pool HU, i.e. contrast timing (default: drawn per case, 280-520)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from cardiovlm.training.phantoms.generate import generate_dataset

    paths = generate_dataset(args.out, n=args.n, seed=args.seed, size=args.size, progress=True,
                             preview=args.preview, with_dicom=not args.no_dicom, with_cac=not args.no_cac,
                             noise_sd_hu=args.noise_hu, blood_hu=args.blood_hu, realistic=args.realistic)
    print(f"wrote {len(paths)} case(s) to {args.out}")
    return 0
