"""``cardiovlm reports``: ingest prior reports into the report store and search it.

    cardiovlm reports ingest DIR [--json]
    cardiovlm reports reindex [--json]
    cardiovlm reports search "query" [--patient HASH] [--k 5] [--modality CT] [--since DATE]
                                     [--until DATE] [--json]

The store is the one the settings describe (``CARDIOVLM_REPORTS_DIR``, or a Chroma server with
``CARDIOVLM_CHROMA_HOST`` / ``CARDIOVLM_CHROMA_PORT``).
"""

from __future__ import annotations

import argparse
import json
from datetime import date


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("reports", help="ingest and search prior CCTA reports")
    actions = parser.add_subparsers(dest="reports_command", required=True, metavar="ACTION")

    ingest = actions.add_parser("ingest", help="scrub PHI and store every report under a folder")
    ingest.add_argument("directory", metavar="DIR", help="folder of .txt / .json reports or case folders")
    ingest.add_argument("--json", action="store_true", help="print one JSON object")
    ingest.set_defaults(func=_ingest)

    reindex = actions.add_parser("reindex", help="read and embed every stored report again (after an upgrade)")
    reindex.add_argument("--json", action="store_true", help="print one JSON object")
    reindex.set_defaults(func=_reindex)

    search = actions.add_parser("search", help="find reports similar in meaning to a query")
    search.add_argument("query", help="what to look for, e.g. 'severe proximal LAD stenosis'")
    search.add_argument("--patient", metavar="HASH", help="only this patient's reports")
    search.add_argument("--k", type=int, default=5, help="number of reports (default 5)")
    search.add_argument("--modality", help="only studies of this modality, e.g. CT")
    search.add_argument("--since", type=date.fromisoformat, metavar="YYYY-MM-DD", help="study date from")
    search.add_argument("--until", type=date.fromisoformat, metavar="YYYY-MM-DD", help="study date to")
    search.add_argument("--json", action="store_true", help="print a JSON list")
    search.set_defaults(func=_search)


def _ingest(args: argparse.Namespace) -> int:
    from cardiovlm.tools.reports.store import ReportStore

    store = ReportStore.open()
    result = store.ingest_dir(args.directory)
    if args.json:
        print(json.dumps(result.model_dump(mode="json") | {"total": store.count()}))
        return 0
    print(f"added {result.added}, skipped {result.skipped_duplicates} duplicate(s); "
          f"{store.count()} report(s) in the store")
    if result.redactions:
        print("PHI replaced: " + ", ".join(f"{n} {tag}" for tag, n in sorted(result.redactions.items())))
    return 0


def _reindex(args: argparse.Namespace) -> int:
    from cardiovlm.tools.reports.store import ReportStore

    n = ReportStore.open().reindex()
    print(json.dumps({"reindexed": n}) if args.json else f"read and embedded {n} stored report(s) again")
    return 0


def _search(args: argparse.Namespace) -> int:
    from cardiovlm.tools.reports.records import ReportFilter
    from cardiovlm.tools.reports.store import ReportStore

    filters = ReportFilter(patient_hash=args.patient, modality=args.modality,
                           date_from=args.since, date_to=args.until)
    hits = ReportStore.open().search(args.query, k=args.k, filters=filters)
    if args.json:
        print(json.dumps([hit.model_dump(mode="json") for hit in hits]))
        return 0
    if not hits:
        print("no matching reports")
    for rank, hit in enumerate(hits, 1):
        when = hit.study_date.isoformat() if hit.study_date else "date unknown"
        patient = hit.metadata.get("patient_hash", "unknown patient")
        print(f"{rank}. {hit.report_id}  {when}  score {hit.score:.3f}  patient {patient}")
        print(f"   {hit.snippet}")
    return 0
