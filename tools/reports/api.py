"""The report store's public face: prior CCTA reports in chromadb, searched by meaning with filters.

The store is split by concern under :mod:`tools.reports`; this module gathers the names its users
import, so ``from tools.reports.api import ReportStore`` keeps working. Importing it registers the
store's chromadb embedding function.

- :mod:`tools.reports.records`: the records ingested, the search filter and the hits returned;
- :mod:`tools.reports.ingest`: PHI scrubbing, the duplicate key and the metadata stored;
- :mod:`tools.reports.terms`: the anatomy and findings read from report and query text;
- :mod:`tools.reports.embedding`: the offline chromadb embedding function;
- :mod:`tools.reports.snippets`: the quoted sentences of a hit;
- :mod:`tools.reports.files`: reading report files and case folders;
- :mod:`tools.reports.store`: :class:`ReportStore` (chromadb storage, ingest, hybrid search);
- :mod:`tools.reports.retrieve_tool`: the ``retrieve_reports`` LangChain tool.
"""

from __future__ import annotations

from tools.reports.embedding import ReportEmbeddingFunction
from tools.reports.files import read_reports
from tools.reports.ingest import content_hash
from tools.reports.records import IngestResult, ReportFilter, ReportHit, ReportRecord, ReportStoreError
from tools.reports.retrieve_tool import (
    PATIENT_CONFIG_KEY,
    STORE_CONFIG_KEY,
    RetrieveReportsInput,
    _default_store,
    retrieve_reports,
    retrieve_reports_tool,
)
from tools.reports.snippets import best_snippet
from tools.reports.store import ReportStore
from tools.reports.terms import (
    NORMAL_TERM,
    anatomy_keys,
    canonical_anatomy,
    canonical_severity,
    embedding_text,
    finding_agreement,
    finding_terms,
    query_finding_terms,
)

__all__ = [
    "IngestResult", "NORMAL_TERM", "PATIENT_CONFIG_KEY", "ReportEmbeddingFunction", "ReportFilter", "ReportHit",
    "ReportRecord", "ReportStore", "ReportStoreError", "RetrieveReportsInput", "STORE_CONFIG_KEY",
    "_default_store", "anatomy_keys", "best_snippet", "canonical_anatomy", "canonical_severity", "content_hash",
    "embedding_text", "finding_agreement", "finding_terms", "query_finding_terms", "read_reports",
    "retrieve_reports", "retrieve_reports_tool",
]
