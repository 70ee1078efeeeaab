"""Reading report files for the store: plain text, JSON records and CardioVLM case folders."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.reports.records import ReportRecord, ReportStoreError


def read_reports(directory: str | Path) -> list[ReportRecord]:
    """Every report under ``directory``, sorted by path.

    - ``*.txt``: plain text; study date, modality and CAD-RADS are read from header lines
      (``Study date: 2024-03-01``, ``Modality: CT``, ``CAD-RADS: 4A/S``), the report id is the stem;
    - ``*.json``: one :class:`ReportRecord` object or a list of them;
    - a CardioVLM case folder (``case.json``): its ``report.txt``, with the case id as report id.

    Raises:
        ReportStoreError: the folder does not exist, holds no report, or a file is not a valid report
            (nothing is stored then: files are all read before any is ingested).
    """
    root = Path(directory)
    if not root.is_dir():
        raise ReportStoreError(f"{root} is not a folder")
    case_dirs = {p.parent for p in root.rglob(cf.MANIFEST_FILE)}
    records: list[ReportRecord] = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in (".txt", ".json"):
            continue
        case_dir = next((d for d in case_dirs if d == path.parent or d in path.parents), None)
        if case_dir is not None:
            if path == case_dir / cf.REPORT_FILE:
                records.append(_text_record(path.read_text(), report_id=case_dir.name, source=path))
            continue  # the other files of a case folder are ground truth, not reports
        if path.suffix.lower() == ".txt":
            records.append(_text_record(path.read_text(), report_id=path.stem, source=path))
        else:
            records.extend(_json_records(path))
    if not records:
        raise ReportStoreError(f"no reports (.txt, .json or case folders) under {root}")
    return records


_HEADER = {
    "study_date": re.compile(r"(?im)^\s*(?:study|exam(?:ination)?|scan)\s+date\s*:\s*(\d{4}-\d{2}-\d{2})"),
    "modality": re.compile(r"(?im)^\s*modality\s*:\s*([A-Za-z]{2,4})\b"),
    "cad_rads": re.compile(r"(?im)\bCAD-RADS(?:\s*2\.0)?\s*(?:category\s*)?[:]?\s*([0-5N][AB]?(?:/[A-Z0-9/]+)?)"),
}


def _text_record(text: str, *, report_id: str, source: Path) -> ReportRecord:
    fields: dict[str, Any] = {}
    for name, pattern in _HEADER.items():
        m = pattern.search(text)
        if m:
            fields[name] = m.group(1)
    try:
        return ReportRecord(text=text, report_id=report_id, source=source.name, **fields)
    except ValueError as err:
        raise ReportStoreError(f"{source}: {err}") from err


def _json_records(path: Path) -> list[ReportRecord]:
    try:
        data = json.loads(path.read_text())
        items = data if isinstance(data, list) else [data]
        records = [ReportRecord.model_validate(item) for item in items]
    except ValueError as err:
        raise ReportStoreError(f"{path}: not a report JSON (need at least a 'text' field): {err}") from err
    for i, record in enumerate(records):
        record.source = path.name
        if record.report_id is None:
            record.report_id = path.stem if len(records) == 1 else f"{path.stem}-{i}"
    return records
