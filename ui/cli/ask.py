"""``cardiovlm ask STUDY "question"``: a grounded answer in the terminal, or as JSON."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser("ask", help="ask a clinical question about a study")
    parser.add_argument("study", help="CardioVLM case folder, DICOM folder, DICOM zip or NIfTI file")
    parser.add_argument("question", help='e.g. "Will a 20 mm stent fully cover the proximal LAD lesion?"')
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--llm", default=None, help="default | openai:MODEL@URL (default: settings)")
    parser.add_argument("--session", default=None, help="file keeping the conversation for follow-ups")
    parser.add_argument("--out", default=None, help="folder for mask files (default: a temporary folder)")
    parser.add_argument("--dicom-seg", action="store_true",
                        help="also write the answer's masks as DICOM SEG referencing the study's CT series")
    parser.add_argument("--anatomy", choices=("image", "case_labels"), default="image",
                        help="where the coronary anatomy comes from: found in the CT (default), or a case folder's "
                             "own label map, used on purpose")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cardiovlm.assistant.backends import chat_model
    from cardiovlm.assistant.registry import unavailable_tools
    from cardiovlm.assistant.session import Session

    session = Session(model=chat_model(args.llm), backend=args.llm or "default",
                      output_dir=Path(args.out) if args.out else None, dicom_seg=args.dicom_seg)
    if args.session:
        session.restore(args.session, anatomy=args.anatomy)
    if session.study_path != str(args.study):
        session.load_study(args.study, anatomy=args.anatomy)
    answer = session.ask(args.question)
    if args.session:
        session.save(args.session)
    if args.json:
        print(json.dumps(answer.model_dump(), indent=1))
        return 0
    print(answer.answer)
    for f in answer.findings:
        print(f"  - {f.name}: {f.value} {f.unit}  [{f.tool}]")
    for c in answer.citations:
        print(f"  cited report {c.report_id} ({c.date or 'no date'}): {c.snippet}")
    for m in answer.masks:
        print(f"  mask {m.name}: {m.path}" + (f" ({m.format}; {m.note})" if m.note else ""))
    if answer.overlay_png:
        print(f"  overlay: {answer.overlay_png}")
    for name, reason in unavailable_tools().items():
        print(f"  not available: {name}: {reason}")
    print("  trace: " + " -> ".join(f"{t.name}({json.dumps(t.args)}){'' if t.ok else f' FAILED [{t.code}]'}"
                                    for t in answer.tool_calls) if answer.tool_calls else "  trace: no tool used")
    print(f"  ({answer.disclaimer})")
    return 0
