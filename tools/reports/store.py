"""The report store: prior CCTA reports in chromadb, searched by meaning with metadata filters.

Search is hybrid: the coronary findings each report states are read at ingest by the embedded report
parser (:func:`~cardiovlm.tools.reports.terms.finding_terms`, e.g. ``pLAD:severe``, ``OM1:stent``) and kept in
its metadata; a query's findings are read the same way, the reports stating all of them are ranked by
embedding similarity, and the stated-findings agreement decides the order before meaning does
(:meth:`ReportStore.search`). Reports stored before the ``findings`` metadata existed are found by
meaning only until :meth:`ReportStore.reindex` (``cardiovlm reports reindex``) reads and embeds them again.

Reports are PHI-scrubbed and deduplicated on ingest (:mod:`cardiovlm.tools.reports.ingest`) and embedded with
the offline sentence-transformers model of :mod:`cardiovlm.tools.core.embeddings`
(:mod:`cardiovlm.tools.reports.embedding`), never with chromadb's downloading default.

Storage: an embedded ``chromadb.PersistentClient`` under ``settings.reports_dir`` (default
``<data_dir>/reports``), or ``chromadb.HttpClient`` to a Chroma server when ``settings.chroma_host`` is
set, so several app instances share one store. Telemetry is off in both. Always open the store through
:meth:`ReportStore.open` (or import this module first): importing it registers the embedding function
chromadb needs to reopen a collection.

Reports are data. Text such as "ignore previous instructions" is stored and returned verbatim as a
string; nothing here interprets report text beyond the regexes that scrub PHI and read header fields.

Usage::

    store = ReportStore.open()  # or ReportStore.open(path=folder)
    store.ingest([ReportRecord(report_id="r1", patient_hash="p1", text="Severe pLAD stenosis.")])
    # -> IngestResult(added=1, skipped_duplicates=0, ...)
    hits = store.search("prior CT with proximal LAD narrowing", filters=ReportFilter(patient_hash="p1"))
    # -> [ReportHit(report_id="r1", score=..., snippet="Severe pLAD stenosis.", ...)]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import chromadb
from chromadb.api import ClientAPI
from chromadb.config import Settings as ChromaSettings

from cardiovlm.tools.core.settings import Settings, get_settings
from cardiovlm.tools.reports.embedding import ReportEmbeddingFunction
from cardiovlm.tools.reports.files import read_reports
from cardiovlm.tools.reports.ingest import read_metadata, scrub_records, stored_set
from cardiovlm.tools.reports.records import IngestResult, ReportFilter, ReportHit, ReportRecord, ReportStoreError
from cardiovlm.tools.reports.snippets import best_snippet
from cardiovlm.tools.reports.terms import anatomy_keys, finding_agreement, query_finding_terms

log = logging.getLogger(__name__)

_CANDIDATES = 40  # reports fetched by embedding similarity before the anatomy re-ranking
_INDEX_CHECK_S = 2.0  # seconds between checks that the in-memory finding index is complete
_FILL_CANDIDATES = 10  # nearest reports by meaning fetched to fill a list the finding match left short
# Bonus for a report naming every segment/artery the query names. A whole-report embedding of a long,
# boilerplate-heavy report weighs the one vessel a question is about only faintly ("stenosis of the
# OM1" and "of the D1" embed almost alike); which vessels a report names, read through the anatomy
# registry, tells them apart. 0.1 is a chosen value, not a tuned one: small next to the cosine gap
# between related and unrelated reports, so it reorders only reports already close in meaning.
_ANATOMY_WEIGHT = 0.1
# Bonus for agreeing on the *findings* stated (see :func:`finding_terms` and :func:`finding_agreement`).
# Larger than the cosine spread between reports written from one template family (about 0.1-0.2),
# so the stated findings decide the order and meaning breaks ties. Chosen, not tuned on the benchmark.
_FINDING_WEIGHT = 0.5


class ReportStore:
    """A chromadb collection of scrubbed reports with our offline embedding function.

    Args:
        client: any chromadb client (persistent, HTTP or in-memory).
        collection: collection name.
    """

    def __init__(self, client: ClientAPI, collection: str = "cardiovlm_reports") -> None:
        self.client = client
        self._embed = ReportEmbeddingFunction()
        self.collection = client.get_or_create_collection(
            collection, embedding_function=self._embed,
            configuration={"hnsw": {"space": "cosine"}})
        # chroma id -> finding terms of every stored report: the lexical half of the search, kept in
        # memory because a chroma metadata filter over the terms costs 7-10 ms a query (on 1,200
        # reports) where testing the sets here costs well under 1 ms. Read from the stored metadata on
        # first use and again when the collection's count differs (another process ingested), checked
        # at most every _INDEX_CHECK_S; this store's own ingest updates it at once.
        self._finding_index: dict[str, frozenset[str]] = {}
        self._index_checked = 0.0

    @classmethod
    def open(cls, settings: Settings | None = None, *, path: str | Path | None = None) -> ReportStore:
        """Open the store the settings describe: a Chroma server when ``chroma_host`` is set, else the
        embedded store at ``path`` (default ``settings.reports_dir`` or ``<data_dir>/reports``)."""
        settings = settings or get_settings()
        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        if settings.chroma_host and path is None:
            try:
                client = chromadb.HttpClient(host=settings.chroma_host, port=settings.chroma_port,
                                             settings=chroma_settings)
            except Exception as err:  # chromadb raises bare exceptions for connection failures
                raise ReportStoreError(f"cannot reach the Chroma server at {settings.chroma_host}:"
                                       f"{settings.chroma_port}: {err}") from err
        else:
            folder = Path(path) if path is not None else (settings.reports_dir or settings.data_dir / "reports")
            folder.mkdir(parents=True, exist_ok=True)
            client = chromadb.PersistentClient(path=str(folder), settings=chroma_settings)
        return cls(client, settings.reports_collection)

    def count(self) -> int:
        return self.collection.count()

    def _findings(self) -> dict[str, frozenset[str]]:
        """The finding terms of every stored report (see ``_finding_index``)."""
        now = time.monotonic()
        if not self._finding_index or now - self._index_checked > _INDEX_CHECK_S:
            self._index_checked = now
            if len(self._finding_index) != self.collection.count():
                stored = self.collection.get(include=["metadatas"])
                self._finding_index = {key: frozenset(stored_set((meta or {}).get("findings")))
                                       for key, meta in zip(stored["ids"], stored["metadatas"] or [])}
        return self._finding_index

    def ingest(self, records: Iterable[ReportRecord], *, batch_size: int = 256) -> IngestResult:
        """Scrub, deduplicate and store ``records``; a duplicate of a stored or earlier record is skipped."""
        result = IngestResult(added=0, skipped_duplicates=0)
        pending = scrub_records(records, result)
        keys = list(pending)
        for start in range(0, len(keys), batch_size):
            batch = keys[start:start + batch_size]
            stored = set(self.collection.get(ids=batch, include=[])["ids"])
            new = [k for k in batch if k not in stored]
            for k in batch:
                if k in stored:
                    result.skipped_duplicates += 1
                    result.skipped_ids.append(str(pending[k][1]["report_id"]))
            if new:
                self.collection.add(ids=new, documents=[pending[k][0] for k in new],
                                    metadatas=[pending[k][1] for k in new])
                if self._finding_index:  # else read in full at the next search
                    self._finding_index.update((k, frozenset(stored_set(pending[k][1]["findings"]))) for k in new)
                result.added += len(new)
                result.added_ids.extend(str(pending[k][1]["report_id"]) for k in new)
            log.debug("report ingest: batch of %d written (%d of %d unique reports done)", len(batch),
                      start + len(batch), len(keys))
        # Counts only: report ids and texts stay out of the log.
        scrubbed = ", ".join(f"{n} {name}" for name, n in sorted(result.redactions.items())) or "none"
        log.info("report ingest into %s: %d stored, %d skipped as duplicates; PHI scrubbed: %s",
                 self.collection.name, result.added, result.skipped_duplicates, scrubbed)
        return result

    def reindex(self, *, batch_size: int = 256) -> int:
        """Read every stored report again (anatomy and findings metadata) and re-embed it; returns the
        number of reports. For a store written by an older version: duplicates are skipped on ingest,
        so re-ingesting would not refresh them. Documents and the other metadata stay as stored."""
        total = self.collection.count()
        for offset in range(0, total, batch_size):
            got = self.collection.get(limit=batch_size, offset=offset,
                                      include=["documents", "metadatas"])
            documents = got["documents"] or []
            metadatas = [dict(meta or {}) | read_metadata(doc) for doc, meta in zip(documents, got["metadatas"] or [])]
            if got["ids"]:  # documents given again: chroma re-embeds them with this store's function
                self.collection.update(ids=got["ids"], documents=documents,
                                       metadatas=metadatas)
        self._finding_index = {}
        log.info("report store %s: %d reports re-read and re-embedded", self.collection.name, total)
        return total

    def ingest_dir(self, directory: str | Path) -> IngestResult:
        """Ingest every report under ``directory`` (see :func:`read_reports`)."""
        return self.ingest(read_reports(directory))

    def search(self, query: str, *, k: int = 5, filters: ReportFilter | None = None) -> list[ReportHit]:
        """The ``k`` reports closest to ``query`` among those matching ``filters``.

        Hybrid ranking: the reports stating every finding the query states (:func:`query_finding_terms`
        against the stored :func:`finding_terms`; when fewer than ``k``, with those stating most of
        them) are fetched by embedding similarity and ordered by similarity plus the finding
        agreement (``_FINDING_WEIGHT``) and the anatomy agreement (``_ANATOMY_WEIGHT``). When that
        leaves fewer than ``k`` (filters), or the query states no finding, the nearest reports by
        meaning fill the list.
        """
        if not query or not query.strip():
            raise ReportStoreError("the search query is empty")
        if not 1 <= k <= 100:
            raise ReportStoreError(f"k must be between 1 and 100, got {k}")
        base = (filters or ReportFilter()).where()
        wanted_findings = query_finding_terms(query)
        wanted_anatomy = anatomy_keys(query)
        vector = self._embed([query])  # once: chroma would embed query_texts again on every call
        found: dict[str, tuple[dict, float]] = {}  # chroma id -> (metadata, distance)

        def nearest(n: int, ids: list[str] | None = None) -> None:
            # Metadata and distances only: documents are fetched for the k hits alone (each included
            # field costs about 0.1 ms per candidate, the vector search itself about 1 ms).
            result = self.collection.query(query_embeddings=vector, n_results=n, where=base, ids=ids,
                                           include=["metadatas", "distances"])
            for key, meta, dist in zip(result["ids"][0], result["metadatas"][0],
                                       result["distances"][0]):
                found.setdefault(key, (dict(meta), float(dist)))

        if wanted_findings:  # first the reports stating every finding asked about
            index = self._findings()
            matching = [key for key, terms in index.items() if wanted_findings <= terms]
            if len(matching) < k:  # too few: with them, the reports stating most of those findings
                partial = sorted((key for key, terms in index.items() if wanted_findings & terms
                                  and not wanted_findings <= terms),
                                 key=lambda key: -finding_agreement(wanted_findings, index[key]))
                matching += partial[:max(k, _FILL_CANDIDATES) - len(matching)]
            if matching:
                nearest(min(len(matching), max(k, _CANDIDATES)), matching)
        if len(found) < k:  # a short list is filled; no match at all: re-rank the wider neighbourhood
            nearest(max(k, _FILL_CANDIDATES if found else _CANDIDATES))
        ranked = []
        for key, (meta, dist) in found.items():
            similarity = 1.0 - dist
            stored = stored_set(meta.get("anatomy"))
            anatomy = len(wanted_anatomy & stored) / len(wanted_anatomy) if wanted_anatomy else 0.0
            findings = finding_agreement(wanted_findings, stored_set(meta.get("findings")))
            ranked.append((similarity + _ANATOMY_WEIGHT * anatomy + _FINDING_WEIGHT * findings, similarity, key, meta))
        ranked.sort(key=lambda item: -item[0])
        top = ranked[:k]
        stored_docs = self.collection.get(ids=[key for _, _, key, _ in top],
                                          include=["documents"])
        documents = dict(zip(stored_docs["ids"], stored_docs["documents"] or []))
        hits = []
        for score, similarity, key, meta in top:
            doc = documents[key]
            day = meta.get("study_date")
            hits.append(ReportHit(
                report_id=str(meta.get("report_id")),
                study_date=date.fromisoformat(str(day)) if day else None,
                score=round(score, 4),
                similarity=round(similarity, 4),
                snippet=best_snippet(doc, query),
                text=doc,
                metadata={name: v for name, v in meta.items()
                          if name not in ("study_date", "study_day", "report_id", "anatomy", "findings")},
            ))
        return hits
