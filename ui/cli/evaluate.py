"""``cardiovlm evaluate``: score a VLM checkpoint on phantom cases (thin: parse, call cardiovlm.training.evaluate,
print)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="evaluate a VLM checkpoint on phantom cases",
        description="Dice per structure, referring, yes/no and multiple-choice accuracy, calcification F1 and "
        "landmark error of a VLM checkpoint on folders of phantom cases with ground truth. Records with "
        "held-out phrasings get their own column.")
    parser.add_argument("--checkpoint", default=None, metavar="DIR",
                        help="checkpoint folder (default: the shipped checkpoint, settings 'checkpoint_dir')")
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="folder of case folders (held-out seeds); its curriculum.jsonl is used when present")
    parser.add_argument("--name", default="held-out seeds", metavar="NAME",
                        help="column name of --data (default 'held-out seeds'; e.g. 'shifted generator' when "
                        "--data holds a shifted set scored on its own)")
    parser.add_argument("--shifted", default=None, metavar="DIR",
                        help="a second folder of cases from a shifted generator setting, scored as its own column")
    parser.add_argument("--curriculum", default=None, metavar="FILE",
                        help="curriculum JSONL of --data (default: DIR/curriculum.jsonl, else built now)")
    parser.add_argument("--max-records", type=int, default=None, metavar="N",
                        help="only the first N records of each case (quick runs)")
    parser.add_argument("--controls", nargs="*", default=None, choices=["shuffled", "blank", "noise"],
                        metavar="CONTROL",
                        help="also score the --data records with each case's image replaced: 'shuffled' (another "
                        "case's image, no case keeps its own), 'blank' (all air), 'noise' (Gaussian noise); "
                        "--controls alone runs all three. A model reading the image falls to chance under each")
    parser.add_argument("--control-seed", type=int, default=0, metavar="SEED",
                        help="seed of the shuffle and of the noise volumes (default 0)")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON instead of a table")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import json

    from cardiovlm.tools.core.settings import get_settings
    from cardiovlm.training.evaluate import (
        SHUFFLED_CONTROL_MAX,
        control_gaps,
        evaluate_folder,
        format_table,
        target_gaps,
    )
    from cardiovlm.vlm.validation import CONTROL_SPLITS

    checkpoint = args.checkpoint or get_settings().checkpoint_dir
    controls = () if args.controls is None else tuple(args.controls or CONTROL_SPLITS)
    reports = [evaluate_folder(checkpoint, args.data, curriculum=args.curriculum, name=args.name,
                               max_records_per_case=args.max_records, controls=controls,
                               control_seed=args.control_seed)]
    if args.shifted:
        reports.append(evaluate_folder(checkpoint, args.shifted, name="shifted generator",
                                       max_records_per_case=args.max_records))
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=1))
        return 0
    print(f"checkpoint {checkpoint}; " + "; ".join(f"{r.data}: {r.cases} case(s), {r.seconds:.0f} s" for r in reports))
    print(format_table(reports))
    gaps = target_gaps(reports[0].splits[args.name])
    print(f"gap to the targets ({args.name}; Dice, calcification F1 and yes/no minimums): "
          + (", ".join(f"{k} short by {v:.3f}" for k, v in gaps.items()) if gaps else "all targets met"))
    for control, rows in control_gaps(reports[0], args.name).items():
        print(f"{args.name} minus {control}: "
              + ", ".join(f"{row} {'-' if v is None else f'{v:+.3f}'}" for row, v in rows.items()))
    # Findings questions need the image; anatomy ones ("is the pRCA part of the RCA?") may be answered
    # from the wording alone, so the chance target is checked on the findings kind.
    row = "yes/no balanced accuracy (findings)"
    shuffled = reports[0].splits.get(f"{args.name}, {CONTROL_SPLITS['shuffled']}", {}).get(row)
    if shuffled is not None:
        verdict = ("at chance, as it must be" if shuffled <= SHUFFLED_CONTROL_MAX
                   else "above chance: right without the case's own image, so not read from it")
        print(f"shuffled-image control, {row} {shuffled:.3f} (target <= {SHUFFLED_CONTROL_MAX:.2f}): {verdict}")
    return 0
