"""The report store's public face: prior CCTA reports in chromadb, searched by meaning with filters.

The store is split by concern under :mod:`cardiovlm.tools.reports`; this module gathers the names its users
import, so ``from cardiovlm.tools.reports.api import ReportStore`` keeps working. Importing it registers the
store's chromadb embedding function.

- :mod:`cardiovlm.tools.reports.records`: the records ingested, the search filter and the hits returned;
- :mod:`cardiovlm.tools.reports.ingest`: PHI scrubbing, the duplicate key and the metadata stored;
- :mod:`cardiovlm.tools.reports.terms`: the anatomy and findings read from report and query text;
- :mod:`cardiovlm.tools.reports.embedding`: the offline chromadb embedding function;
- :mod:`cardiovlm.tools.reports.snippets`: the quoted sentences of a hit;
- :mod:`cardiovlm.tools.reports.files`: reading report files and case folders;
- :mod:`cardiovlm.tools.reports.store`: :class:`ReportStore` (chromadb storage, ingest, hybrid search);
- :mod:`cardiovlm.tools.reports.retrieve_tool`: the ``retrieve_reports`` LangChain tool.
"""

from __future__ import annotations

from cardiovlm.tools.reports.embedding import ReportEmbeddingFunction
from cardiovlm.tools.reports.files import read_reports
from cardiovlm.tools.reports.ingest import content_hash
from cardiovlm.tools.reports.records import IngestResult, ReportFilter, ReportHit, ReportRecord, ReportStoreError
from cardiovlm.tools.reports.retrieve_tool import (
    PATIENT_CONFIG_KEY,
    STORE_CONFIG_KEY,
    RetrieveReportsInput,
    _default_store,
    retrieve_reports,
    retrieve_reports_tool,
)
from cardiovlm.tools.reports.snippets import best_snippet
from cardiovlm.tools.reports.store import ReportStore
from cardiovlm.tools.reports.terms import (
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
