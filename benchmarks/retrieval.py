"""Report retrieval benchmark: recall@5 on paraphrased queries over phantom reports, and query latency.

Corpus: phantom CCTA reports written by the project's report writer (``cardiovlm.training.phantoms.report``,
``report_grammar.yaml``) from phantom ground truth (``cardiovlm.training.phantoms.generate.build``: anatomy and
findings, no voxels), grouped into patients with 1-4 studies each. A patient keeps one anatomy; between
studies plaques progress, some severe ones are stented, stents may restenose and new plaques appear.

Queries: for a sample of reports, a clinician's question that states *all* of that report's findings
in other words than the writer's (segment synonyms not used in the report, clinician severity and
plaque words such as "tight", "intermediate", "soft", "partially calcified"), e.g. "prior CT with a
tight soft plaque in the proximal LAD and an open OM1 stent".

Relevance (printed with the table):

- ``strict``: only the report the query was written from;
- ``finding-equivalent``: that report, or any report whose structured findings are identical: the same
  set of (segment, kind, grade) with kind calcified / non-calcified / mixed plaque, occlusion or stent,
  and grade the CAD-RADS word of the stenosis (a stent's: patent or its in-stent restenosis grade). The
  query states exactly these findings, so such a report answers it equally well (there are hundreds
  of normal reports, for instance). Judged on ground truth, never on what the store extracted.

Settings: ``patient priors`` (the ``retrieve_reports`` default: the patient's own reports) and ``all
patients`` (no filter), and as an ablation ``all, embedding only``: the nearest five by the embedding
alone, without the finding terms and re-ranking of ``ReportStore.search``. Latency is measured per ``ReportStore.search`` call (k=5, snippets included),
first with the machine as it is ("idle": only what else runs on it) and then with ``--load`` busy
processes beside it ("loaded"), same queries, one run; ``os.getloadavg`` is printed with each.

Run::

    python benchmarks/retrieval.py [--reports 1200] [--queries 300] [--load 2] [--seed 0]
"""  # noqa: E501

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE
from cardiovlm.tools.core.case_format import Finding, Findings
from cardiovlm.tools.reports.records import ReportFilter, ReportRecord
from cardiovlm.tools.reports.store import ReportStore
from cardiovlm.training.phantoms.clinical import sample_clinical
from cardiovlm.training.phantoms.generate import _cadrads_text, _summaries, build, case_seed
from cardiovlm.training.phantoms.geometry import sample_anatomy
from cardiovlm.training.phantoms.lesions import FindingRequest, sample_requests
from cardiovlm.training.phantoms.report import write_report
from cardiovlm.training.phantoms.report_phrasing import grade_of

PLAQUES = ("calcified_plaque", "noncalcified_plaque", "mixed_plaque")
# Clinician words for the query, by CAD-RADS grade and plaque kind (the writer's own words differ).
QUERY_GRADES = {"minimal": ("minimal", "trivial", "trace"), "mild": ("mild",),
                "moderate": ("moderate", "intermediate"), "severe": ("severe", "tight", "high-grade", "critical")}
QUERY_PLAQUES = {"calcified_plaque": ("calcified", "calcific", "heavily calcified"),
                 "noncalcified_plaque": ("soft", "non-calcified", "fibrofatty", "lipid-rich"),
                 "mixed_plaque": ("mixed", "partially calcified", "partly calcified")}
OPENERS = ("prior CT with", "previous CCTA showing", "the earlier scan that had", "old coronary CT reporting",
           "study where we saw")


@dataclass
class Study:
    report_id: str
    patient: str
    day: date
    findings: Findings
    text: str


# --------------------------------------------------------------------------- corpus


def _progress(requests: list[FindingRequest], anatomy, rng: np.random.Generator) -> list[FindingRequest]:
    """Findings at the next study: plaques grow, some severe ones are stented, stents may restenose,
    a new plaque may appear on a free large segment."""
    out = []
    for r in requests:
        if r.kind in PLAQUES:
            percent = min(99.0, r.stenosis_percent + float(rng.choice([0, 0, 10, 20])))
            if percent >= 70 and rng.random() < 0.5:
                out.append(replace(r, kind="stent", stenosis_percent=0.0, restenosis_percent=0.0,
                                   length_mm=float(np.clip(r.length_mm + 4, 8, 38)),
                                   calcium_peak_hu=None, calcium_size_mm=None))
                continue
            out.append(replace(r, stenosis_percent=percent))
        elif r.kind == "stent" and r.restenosis_percent == 0 and rng.random() < 0.15:
            out.append(replace(r, restenosis_percent=float(rng.choice([30.0, 60.0, 80.0]))))
        else:
            out.append(r)
    if rng.random() < 0.3:
        used = {r.segment for r in out}
        new = [r for r in sample_requests(rng, anatomy) if r.segment not in used and r.kind in PLAQUES]
        out.extend(new[:1])
    return out


def phantom_corpus(n_reports: int, seed: int) -> list[Study]:
    """``n_reports`` phantom reports of patients with 1-4 studies each (see the module docstring)."""
    studies: list[Study] = []
    patient = 0
    while len(studies) < n_reports:
        s = case_seed(seed, patient)
        rng = np.random.default_rng(s)  # the same draws build(s) makes: anatomy, then its findings
        anatomy = sample_anatomy(rng)
        requests = sample_requests(rng, anatomy)
        evolve = np.random.default_rng([s, 2])
        day = date(2014, 1, 1) + timedelta(days=int(evolve.integers(0, 2500)))
        for visit in range(int(evolve.choice([1, 1, 2, 3, 4]))):
            anatomy, _, _, _, truth, where, _ = build(s, findings=requests)
            findings = Findings(findings=truth, segments=_summaries(anatomy, truth), cad_rads=_cadrads_text(truth),
                                extracoronary_calcium=where)
            writer_rng = np.random.default_rng([s, visit, 1])
            clinical = sample_clinical(writer_rng, findings)
            text = write_report(findings, clinical, dominance=anatomy.dominance, rng=writer_rng)
            studies.append(Study(f"pt{patient:05d}-{visit}", f"pt{patient:05d}", day, findings, text))
            requests = _progress(requests, anatomy, evolve)
            day += timedelta(days=int(evolve.integers(200, 1200)))
        patient += 1
    return studies[:n_reports]


def _grade(f: Finding) -> str:
    if f.kind == "occlusion" or f.stenosis_percent >= 100:
        return "occluded"
    if f.kind == "stent":
        return grade_of(f.stenosis_percent)[0] if f.stenosis_percent > 0 else "patent"
    return grade_of(f.stenosis_percent)[0] if f.stenosis_percent > 0 else "minimal"  # the writer's word for 0 %


def structured_findings(findings: Findings) -> frozenset[tuple[str, str, str]]:
    """The relevance key: (segment, kind, grade) of every finding; two reports are equivalent when equal."""
    return frozenset((f.segment, f.kind, _grade(f)) for f in findings.findings)


# --------------------------------------------------------------------------- queries


def _segment_words(code: str, report: str, rng: random.Random) -> str:
    seg = SEGMENTS_BY_CODE[code]
    options = [seg.name, seg.code, *seg.synonyms]
    unused = [o for o in options if o.lower() not in report.lower()]
    return rng.choice(unused or options)


def _phrase(f: Finding, report: str, rng: random.Random) -> str:
    seg = _segment_words(f.segment, report, rng)
    grade = _grade(f)
    if grade == "occluded":
        if f.kind == "stent":
            return rng.choice((f"an occluded {seg} stent", f"a stent in the {seg} that is occluded"))
        return rng.choice((f"an occluded {seg}", f"a chronic total occlusion of the {seg}", f"a totally blocked {seg}"))
    if f.kind == "stent":
        if grade == "patent":
            return rng.choice((f"a patent stent in the {seg}", f"an open {seg} stent",
                               f"a {seg} stent without restenosis"))
        words = rng.choice(QUERY_GRADES[grade])
        return rng.choice((f"{words} in-stent restenosis of the {seg} stent", f"a {seg} stent with {words} restenosis"))
    words, plaque = rng.choice(QUERY_GRADES[grade]), rng.choice(QUERY_PLAQUES[f.kind])
    return rng.choice((f"{words} {plaque} plaque in the {seg}",
                       f"{plaque} plaque causing {words} narrowing of the {seg}",
                       f"a {words} lesion of the {seg} from {plaque} plaque"))


def paraphrase_query(study: Study, rng: random.Random) -> str:
    """A clinician's question stating every finding of ``study`` in other words than its report."""
    parts = [_phrase(f, study.text, rng) for f in rng.sample(study.findings.findings, len(study.findings.findings))]
    if not parts:
        normal = rng.choice(("normal coronaries", "no coronary plaque or stenosis", "clean coronary arteries"))
        return f"{rng.choice(OPENERS)} {normal}"
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{rng.choice(OPENERS)} {listed}"


# --------------------------------------------------------------------------- measuring


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _busy(stop) -> None:  # one core of competing load
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def _timed(store: ReportStore, queries: list[tuple[str, ReportFilter | None]]) -> tuple[list[float], list[float], list]:
    """Wall-clock and CPU milliseconds of each search (CPU: this thread's own work, whatever the load)."""
    latencies, cpu, results = [], [], []
    for query, filters in queries:
        t, c = time.perf_counter(), time.thread_time()
        results.append(store.search(query, k=5, filters=filters))
        cpu.append((time.thread_time() - c) * 1000)
        latencies.append((time.perf_counter() - t) * 1000)
    return latencies, cpu, results


def _recall(sample: list[Study], ranked: list[list[str]], keys: dict) -> dict[str, float]:
    """Strict and finding-equivalent recall@1 and @5 of ranked report ids, one list per sampled study."""
    strict1 = strict5 = equiv1 = equiv5 = 0
    for study, ids in zip(sample, ranked):
        same = [i == study.report_id or keys[i] == keys[study.report_id] for i in ids[:5]]
        strict1 += bool(ids) and ids[0] == study.report_id
        strict5 += study.report_id in ids[:5]
        equiv1 += bool(same) and same[0]
        equiv5 += any(same)
    n = len(sample)
    return {"strict@1": strict1 / n, "strict@5": strict5 / n, "equiv@1": equiv1 / n, "equiv@5": equiv5 / n}


def run(n_reports: int, n_queries: int, seed: int, load: int) -> dict:
    torch.set_num_threads(1)  # bulk embedding on a shared machine: one core
    rng = random.Random(seed)
    t0 = time.perf_counter()
    studies = phantom_corpus(n_reports, seed)
    corpus_s = time.perf_counter() - t0
    keys = {s.report_id: structured_findings(s.findings) for s in studies}
    records = [ReportRecord(text=s.text, report_id=s.report_id, patient_hash=s.patient, study_date=s.day,
                            modality="CT") for s in studies]
    with tempfile.TemporaryDirectory(prefix="cardiovlm-retrieval-") as folder:
        store = ReportStore.open(path=folder)
        t0 = time.perf_counter()
        result = store.ingest(records)
        ingest_s = time.perf_counter() - t0
        store.search("warm up the query path", k=1)

        sample = rng.sample(studies, min(n_queries, len(studies)))
        queries = [paraphrase_query(s, rng) for s in sample]
        figures: dict = {"reports": len(records), "patients": len({s.patient for s in studies}),
                         "added": result.added, "skipped": result.skipped_duplicates, "corpus_s": corpus_s,
                         "ingest_s": ingest_s, "queries": len(sample), "settings": {}, "latency": {},
                         "equivalents": statistics.mean(sum(keys[o] == keys[s.report_id] for o in keys)
                                                        for s in sample)}
        for setting in ("patient priors", "all patients"):
            asked = [(q, ReportFilter(patient_hash=s.patient) if setting == "patient priors" else None)
                     for q, s in zip(queries, sample)]
            load_before = os.getloadavg()[0]
            latencies, cpu, results = _timed(store, asked)
            figures["latency"][(setting, "idle")] = (latencies, cpu, load_before, os.getloadavg()[0])
            figures["settings"][setting] = _recall(sample, [[h.report_id for h in r] for r in results], keys)
            if setting == "all patients":
                # Ablation: the embedding alone (no finding terms, no re-ranking), same queries.
                nearest = [store.collection.query(query_embeddings=store._embed([q]), n_results=5,
                                                  include=["metadatas"])["metadatas"][0] for q in queries]
                figures["settings"]["all, embedding only"] = _recall(
                    sample, [[str(m["report_id"]) for m in metas] for metas in nearest], keys)
                figures["examples"] = [(q, s.report_id, [h.report_id for h in r[:3]], r[0].snippet if r else "",
                                        [keys[h.report_id] == keys[s.report_id] for h in r[:3]])
                                       for q, s, r in list(zip(queries, sample, results))[:4]]
        if load:
            stop = mp.Event()
            workers = [mp.Process(target=_busy, args=(stop,), daemon=True) for _ in range(load)]
            for w in workers:
                w.start()
            time.sleep(3)  # let the competing load settle in
            try:
                for setting in ("patient priors", "all patients"):
                    asked = [(q, ReportFilter(patient_hash=s.patient) if setting == "patient priors" else None)
                             for q, s in zip(queries, sample)]
                    load_before = os.getloadavg()[0]
                    latencies, cpu, _ = _timed(store, asked)
                    figures["latency"][(setting, f"loaded (+{load} busy)")] = (latencies, cpu, load_before,
                                                                               os.getloadavg()[0])
            finally:
                stop.set()
                for w in workers:
                    w.join(timeout=5)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=1200, help="corpus size (>= 1000 for the target)")
    parser.add_argument("--queries", type=int, default=300, help="paraphrased queries per setting")
    parser.add_argument("--load", type=int, default=2, help="busy processes beside the loaded latency pass (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    f = run(args.reports, args.queries, args.seed, args.load)
    print(f"corpus: {f['reports']} phantom reports (report writer) of {f['patients']} patients, written in "
          f"{f['corpus_s']:.0f} s; ingested {f['added']} (skipped {f['skipped']}) in {f['ingest_s']:.1f} s = "
          f"{f['added'] / f['ingest_s']:.0f} reports/s; {os.cpu_count()} CPUs")
    print(f"{f['queries']} paraphrased queries, each stating all findings of one report; on average "
          f"{f['equivalents']:.1f} corpus reports have the same structured findings as the queried one")
    print("relevance: strict = the source report only; finding-equivalent = the source report or any report\n"
          "whose structured findings (segment, kind, grade) are identical to it.")
    print(f"{'setting':<20} {'strict@1':>9} {'strict@5':>9} {'equiv@1':>9} {'equiv@5':>9}")
    for name, s in f["settings"].items():
        print(f"{name:<20} {s['strict@1']:>9.3f} {s['strict@5']:>9.3f} {s['equiv@1']:>9.3f} {s['equiv@5']:>9.3f}")
    print(f"\n{'latency (ms)':<16} {'machine':<19} {'p50':>6} {'p95':>6} {'max':>6} {'cpu p50':>8} {'cpu p95':>8}"
          "   load avg (1 min) before -> after")
    for (setting, state), (lat, cpu, before, after) in f["latency"].items():
        print(f"{setting:<16} {state:<19} {statistics.median(lat):>6.1f} {_percentile(lat, 0.95):>6.1f} "
              f"{max(lat):>6.1f} {statistics.median(cpu):>8.1f} {_percentile(cpu, 0.95):>8.1f}   "
              f"{before:.2f} -> {after:.2f}")
    print("wall-clock per ReportStore.search (k=5, snippets); cpu: the search thread's own CPU time. 'idle': no\n"
          "load added by this run (other jobs on the machine still count in the load average).")
    print("targets: recall@5 >= 0.9 (finding-equivalent, all patients; and patient priors), p95 < 50 ms")
    for query, target, top, snippet, same in f["examples"]:
        print(f"  q: {query!r} -> source {target}, top 3 {top} (equivalent: {same})\n     snippet: {snippet!r}")


if __name__ == "__main__":
    main()
