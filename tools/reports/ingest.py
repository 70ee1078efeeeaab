"""What ingest stores of a report: the PHI-scrubbed text, its duplicate key and its metadata.

Reports are PHI-scrubbed (:mod:`cardiovlm.tools.reports.phi`) before anything is embedded or stored, and deduplicated by
the SHA-256 of the scrubbed, whitespace-normalised, case-folded text qualified by patient hash and
study date (the chromadb id, see :func:`record_key`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from cardiovlm.tools.reports.phi import scrub_phi
from cardiovlm.tools.reports.records import IngestResult, ReportRecord, day_number
from cardiovlm.tools.reports.terms import anatomy_keys, finding_terms

# One report ready to store: (document, metadata), keyed by its chromadb id.
Pending = dict[str, tuple[str, dict]]


def scrub_records(records: Iterable[ReportRecord], result: IngestResult) -> Pending:
    """Scrub and key ``records``; a record repeating an earlier one of the batch is counted as a
    duplicate in ``result`` (as are the PHI replacements made)."""
    pending: Pending = {}  # chroma id -> (document, metadata)
    for record in records:
        scrubbed = scrub_phi(record.text)
        for name, n in scrubbed.redactions.items():
            result.redactions[name] = result.redactions.get(name, 0) + n
        text_hash = content_hash(scrubbed.text)
        key = record_key(text_hash, record)
        report_id = record.report_id or text_hash[:16]
        if key in pending:
            result.skipped_duplicates += 1
            result.skipped_ids.append(report_id)
            continue
        pending[key] = (scrubbed.text, report_metadata(record, scrubbed.text, report_id, text_hash))
    return pending


def content_hash(text: str) -> str:
    """SHA-256 of case-folded, whitespace-collapsed text: the duplicate key and chromadb id."""
    normalised = re.sub(r"\s+", " ", text).strip().casefold()
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


def record_key(text_hash: str, record: ReportRecord) -> str:
    """The chromadb id: the content hash qualified by patient and study date.

    Templated reports ("No coronary stenosis. CAD-RADS 0.") are word-for-word the same for many
    patients and for one patient's repeated normal scans; those are different studies, not
    duplicates. The same text for the same patient and date (a file ingested twice) is a duplicate.
    """
    if not record.patient_hash and not record.study_date:
        return text_hash
    qualifier = f"{record.patient_hash or ''}|{record.study_date or ''}|{text_hash}"
    return hashlib.sha256(qualifier.encode("utf-8")).hexdigest()



def report_metadata(record: ReportRecord, document: str, report_id: str, key: str) -> dict[str, str | int]:
    # chromadb metadata values cannot be None: absent fields are left out.
    meta: dict[str, str | int] = {"report_id": report_id, "content_hash": key}
    if record.patient_hash:
        meta["patient_hash"] = record.patient_hash
    if record.study_date:
        meta["study_date"] = record.study_date.isoformat()
        meta["study_day"] = day_number(record.study_date)
    if record.modality:
        meta["modality"] = record.modality
    if record.cad_rads:
        meta["cad_rads"] = record.cad_rads
    if record.source:
        meta["source"] = record.source
    return meta | read_metadata(document)


def read_metadata(document: str) -> dict[str, str]:
    """What the store reads from a report's text: the anatomy it names and the findings it states
    (chromadb metadata holds scalars, so each set is stored as "|pLAD|LAD|")."""
    meta = {"findings": "|" + "|".join(sorted(finding_terms(document))) + "|"}
    keys = anatomy_keys(document)
    if keys:
        meta["anatomy"] = "|" + "|".join(sorted(keys)) + "|"
    return meta


def stored_set(value: object) -> set[str]:
    return set(str(value or "").strip("|").split("|")) - {""}

