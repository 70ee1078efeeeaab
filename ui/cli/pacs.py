"""``cardiovlm pacs search|load|send``: the PACS (DICOMweb) from the terminal.

The server and credentials come from the settings (``CARDIOVLM_PACS_URL``, ``_AUTH``, ``_USERNAME``,
``_PASSWORD``, ``_TOKEN``, ...); ``--url`` overrides the URL only, so secrets never appear on a
command line or in the shell history.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pacs", help="search, load and send studies over DICOMweb (PACS)",
        description="Search the PACS (QIDO-RS), load a series (WADO-RS) and send results (STOW-RS). "
        "Configure the server with CARDIOVLM_PACS_* settings.")
    parser.add_argument("--url", default=None, help="DICOMweb root (default: CARDIOVLM_PACS_URL)")
    commands = parser.add_subparsers(dest="pacs_command", required=True, metavar="ACTION")

    search = commands.add_parser("search", help="find studies (or the series of one study)")
    search.add_argument("--patient-id")
    search.add_argument("--patient-name", help="DICOM wildcards allowed, e.g. 'DOE*'")
    search.add_argument("--accession")
    search.add_argument("--date", help="YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
    search.add_argument("--modality", help="e.g. CT")
    search.add_argument("--study", help="list the series of this StudyInstanceUID instead")
    search.add_argument("--json", action="store_true", help="print JSON")
    search.set_defaults(func=_search)

    load = commands.add_parser("load", help="retrieve a series and load it like a DICOM folder")
    load.add_argument("study", help="StudyInstanceUID")
    load.add_argument("series", nargs="?", help="SeriesInstanceUID (default: the largest CT series)")
    load.add_argument("--out", help="keep the DICOM files in this folder (default: a temporary folder, removed)")
    load.add_argument("--json", action="store_true", help="print the study summary as JSON")
    load.set_defaults(func=_load)

    send = commands.add_parser(
        "send", help="store DICOM files, or an answer's masks and findings as SEG + SR",
        description="Send DICOM files or folders, or with --answer build a DICOM SEG of the answer's masks "
        "and an SR of its findings (from `cardiovlm ask --json --out DIR`) and send them.")
    send.add_argument("paths", nargs="*", help="DICOM files or folders to send")
    send.add_argument("--answer", help="answer JSON written from `cardiovlm ask --json`")
    send.add_argument("--study", help="the study the answer is about (with --answer)")
    send.add_argument("--out", help="folder for the SEG and SR files (with --answer; default: beside the answer)")
    send.set_defaults(func=_send)


def _client(args: argparse.Namespace):
    from cardiovlm.tools.core.settings import get_settings
    from cardiovlm.tools.ingest.pacs import PacsClient
    from cardiovlm.ui.cli.logs import configure_cli_logging

    configure_cli_logging()  # each exchange with the PACS on stderr, for the hospital's IT

    settings = get_settings()
    if args.url:
        settings = settings.model_copy(update={"pacs_url": args.url})
    return PacsClient.from_settings(settings)


def _search(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    client = _client(args)
    if args.study:
        hits = client.search_series(args.study, modality=args.modality)
        columns: tuple[str, ...] = ("series_uid", "modality", "series_number", "n_instances", "description")
    else:
        hits = client.search_studies(patient_id=args.patient_id, patient_name=args.patient_name,
                                     accession_number=args.accession, study_date=args.date, modality=args.modality)
        columns = ("study_uid", "patient_id", "study_date", "accession_number", "modalities", "n_instances",
                   "description")
    if args.json:
        print(json.dumps([asdict(h) for h in hits], indent=1))
        return 0
    print("\t".join(columns))
    for hit in hits:
        print("\t".join("" if getattr(hit, c) is None else str(getattr(hit, c)) for c in columns))
    if not hits:
        print("(nothing found)")
    return 0


def _load(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from cardiovlm.tools.ingest.pacs import PacsNotFoundError

    client = _client(args)
    series = args.series
    if series is None:
        candidates = client.search_series(args.study, modality="CT")
        if not candidates:
            raise PacsNotFoundError(f"study {args.study} holds no CT series on the PACS")
        series = candidates[0].series_uid
    with tempfile.TemporaryDirectory(prefix="cardiovlm-pacs-") as tmp:
        study = client.load_series(args.study, series, Path(args.out) if args.out else Path(tmp), show_bar=True)
        summary = study.summary()
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        for key, value in summary.items():
            print(f"{key}: {' x '.join(map(str, value)) if isinstance(value, list) else value}")
    return 0


def _send(args: argparse.Namespace) -> int:
    from pathlib import Path

    client = _client(args)
    paths = [Path(p) for p in args.paths]
    if args.answer:
        from cardiovlm.tools.core.answer import GroundedAnswer
        from cardiovlm.tools.dicom.dicom_export import export_answer, masks_of_answer
        from cardiovlm.tools.ingest.study import load_study

        if not args.study:
            raise ValueError("--answer needs --study, the study the answer is about")
        answer = GroundedAnswer.model_validate_json(Path(args.answer).read_text())
        study = load_study(args.study)
        out = Path(args.out) if args.out else Path(args.answer).parent
        export = export_answer(answer, study, masks_of_answer(answer, study), out, stem=Path(args.answer).stem)
        print(f"wrote {', '.join(str(p) for p in (export.seg, export.sr) if p)} ({export.note})")
        paths += export.files_to_send()
    stored = client.send_files(paths)
    print(f"the PACS stored {stored} object(s)")
    return 0
