"""``cardiovlm curriculum``: build the instruction curriculum of a folder of cases.

    cardiovlm curriculum --data DIR --out FILE [--llm default|openai:MODEL@URL] [--seed S] [--no-measure]
    cardiovlm curriculum --manifest studies.jsonl --data DIR --out FILE [--pseudo-labels]

With ``--manifest`` the real studies it lists are first imported as case folders into DIR
(``cardiovlm.training.curriculum.real_data`` defines the manifest format).
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("curriculum", help="turn case reports into a hierarchical instruction curriculum")
    parser.add_argument("--data", required=True, metavar="DIR", help="folder of case folders (phantoms or imported)")
    parser.add_argument("--out", required=True, metavar="FILE", help="curriculum JSONL to write")
    parser.add_argument("--llm", default=None, metavar="SPEC",
                        help="report reader: 'default' (embedded parser, offline) or 'openai:MODEL@URL' "
                        "(default: settings 'llm', CARDIOVLM_LLM)")
    parser.add_argument("--seed", type=int, default=0, help="seed for phrasings and distractors (default 0)")
    parser.add_argument("--manifest", metavar="JSONL", help="import the real studies of this manifest into DIR first")
    parser.add_argument("--pseudo-labels", action="store_true",
                        help="with --manifest: label unlabelled studies with TotalSegmentator")
    parser.add_argument("--no-measure", action="store_true",
                        help="take lesion lengths from findings.json instead of measuring label maps (faster)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from cardiovlm.tools.core.case_format import iter_cases
    from cardiovlm.tools.core.settings import get_settings
    from cardiovlm.training.curriculum.builder import build_curriculum
    from cardiovlm.training.curriculum.jsonl import write_curriculum

    if args.manifest:
        from cardiovlm.training.curriculum.real_data import import_manifest

        import_manifest(args.manifest, args.data, pseudo_labels=args.pseudo_labels)
    elif args.pseudo_labels:
        raise ValueError("--pseudo-labels needs --manifest")
    llm = args.llm or get_settings().llm
    cases = iter_cases(args.data)
    if not cases:
        raise ValueError(f"no case folders under {args.data}")
    records = build_curriculum(cases, llm=llm, seed=args.seed, measure=not args.no_measure,
                               progress=not args.no_progress)
    header = write_curriculum(records, args.out, llm=llm, seed=args.seed)
    print(format_summary(header.model_dump()))
    print(f"wrote {args.out}")
    return 0


def format_summary(header: dict) -> str:
    """The summary table: records per stage and task, then totals."""
    rows = [("stage/task", "instructions")] + [(k, str(v)) for k, v in header["counts"].items()]
    rows += [("total", str(header["records"])), ("studies", str(header["studies"])),
             ("distinct phrasings", str(header["distinct_phrasings"])),
             ("held-out phrasing records", str(header["held_out_records"]))]
    width = max(len(r[0]) for r in rows)
    lines = [f"{a:<{width}}  {b:>12}" for a, b in rows]
    lines.insert(1, "-" * (width + 14))
    return "\n".join(lines)
