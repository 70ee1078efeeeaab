"""``cardiovlm phantoms``: generate a folder of synthetic CCTA cases with ground truth.

The acquisition knobs (``--sex``, ``--body-size``, ``--heart-rate``, ``--kernel``, ``--blood-hu``,
``--noise-hu``, ``--dominance``, ``--healthy``) make shifted evaluation sets: each replaces the seed's
draw for every case and leaves the rest of each case as the seed drew it. Their drawn ranges and
sources are in ``cardiovlm.training.phantoms.acquisition``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# the names of cardiovlm.training.phantoms.acquisition.KERNELS, not imported here so that --help stays fast
KERNEL_NAMES = ("soft", "standard", "sharp")


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
    knobs = parser.add_argument_group("acquisition knobs (shifted evaluation sets; default: drawn per case)")
    knobs.add_argument("--noise-hu", type=float, default=None, metavar="SD",
                       help="image noise SD in HU for every case (default: drawn per case, 15-30; with "
                            "--realistic from the real reference, slice thickness, body size and a dose draw)")
    knobs.add_argument("--blood-hu", type=float, default=None, metavar="HU",
                       help="left-heart blood pool HU, i.e. contrast timing (default: drawn per case, 280-520; "
                            "with --realistic an arterial phase of 375 +/- 55 HU within 250-552)")
    knobs.add_argument("--dominance", choices=("right", "left"), default=None,
                       help="coronary dominance (default: drawn, about 88 %% right)")
    knobs.add_argument("--healthy", action="store_true", help="no coronary findings (default: 0-3 drawn per case)")
    knobs.add_argument("--sex", choices=("male", "female"), default=None,
                       help="patient sex: heart, aortic root, wall and body follow it (needs --realistic)")
    knobs.add_argument("--body-size", type=float, default=None, metavar="SD",
                       help="body habitus in population SDs, -2.5 to 2.5: heart and body size, hence noise "
                            "(needs --realistic)")
    knobs.add_argument("--heart-rate", type=float, default=None, metavar="BPM",
                       help="heart rate, 40-120 bpm (default: drawn, 50-80); mid-RCA motion blur grows with it "
                            "(needs --realistic)")
    knobs.add_argument("--kernel", choices=KERNEL_NAMES, default=None,
                       help="reconstruction kernel: its noise texture (default: standard; needs --realistic)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from cardiovlm.training.phantoms.acquisition import Acquisition
    from cardiovlm.training.phantoms.generate import generate_dataset

    acquisition = Acquisition(sex=args.sex, body_size_sd=args.body_size, heart_rate_bpm=args.heart_rate,
                              kernel=args.kernel)
    paths = generate_dataset(args.out, n=args.n, seed=args.seed, size=args.size, progress=True,
                             preview=args.preview, with_dicom=not args.no_dicom, with_cac=not args.no_cac,
                             noise_sd_hu=args.noise_hu, blood_hu=args.blood_hu, realistic=args.realistic,
                             dominance=args.dominance, findings=[] if args.healthy else None,
                             acquisition=acquisition)
    print(f"wrote {len(paths)} case(s) to {args.out}")
    return 0
