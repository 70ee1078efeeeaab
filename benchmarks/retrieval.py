"""Report retrieval benchmark: recall@5 on paraphrased clinician queries, query latency, ingest rate.

Builds a corpus of phantom-style CCTA reports (several studies per patient, findings that progress
between studies, varied wording and boilerplate), ingests it into a fresh embedded report store, and
asks, for a sample of reports, a question that paraphrases that report's key findings the way a
clinician asks about a prior ("prior CT with a severe proximal LAD narrowing and a patent RCA stent").
The question names the anatomy with a *different* synonym and the severity with *different* words
than the report, so a hit needs meaning, not copied strings.

Two settings are measured:

- ``patient priors``: the ``retrieve_reports`` default: filter to the patient's own reports, the
  realistic way the assistant asks about a prior (target recall@5 >= 0.9);
- ``all patients``: no filter; the target is one report among all of them, most of which describe
  similar disease, so this is a stress figure rather than a target.

Report text comes from a generator in this file, using names from ``tools.anatomy`` and categories
from ``tools.cadrads``; the phantom report writer (``training.phantoms.report``) can replace it once
it exists on main.

Run::

    python benchmarks/retrieval.py [--reports 1200] [--queries 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from tools.anatomy import CORONARY_SEGMENTS, SEGMENTS_BY_CODE  # noqa: E402
from tools.cadrads import cad_rads, plaque_burden_from_cac  # noqa: E402
from tools.report_store import ReportFilter, ReportRecord, ReportStore  # noqa: E402

# Segments where disease is usually reported, weighted towards the proximal vessels.
_LESION_SEGMENTS = ("LM", "pLAD", "pLAD", "mLAD", "mLAD", "dLAD", "D1", "pCx", "dLCx", "OM1",
                    "pRCA", "pRCA", "mRCA", "mRCA", "dRCA", "R-PDA")
_PLAQUE_WORDS = {
    "calcified": ("calcified plaque", "calcific plaque", "densely calcified plaque"),
    "noncalcified": ("non-calcified plaque", "soft plaque", "low-attenuation plaque"),
    "mixed": ("mixed plaque", "partially calcified plaque", "mixed calcified and non-calcified plaque"),
}
# (lower %, upper %, words a report uses, words a clinician uses when asking)
_GRADES = (
    (1, 24, ("minimal", "1-24%"), ("minimal", "trivial")),
    (25, 49, ("mild", "25-49%"), ("mild", "non-obstructive")),
    (50, 69, ("moderate", "50-69%"), ("moderate", "intermediate")),
    (70, 99, ("severe", "70-99%"), ("severe", "high-grade", "tight", "critical")),
)
_STENOSIS_NOUNS_REPORT = ("stenosis", "luminal narrowing", "diameter stenosis")
_STENOSIS_NOUNS_QUERY = ("narrowing", "lesion", "stenosis", "blockage")


@dataclass
class Lesion:
    segment: str
    percent: float  # 100 means occlusion
    plaque: str


@dataclass
class Study:
    report_id: str
    patient: str
    day: date
    lesions: list[Lesion]
    stents: list[str]  # stented segments
    restenosis: set[str] = field(default_factory=set)
    agatston: float = 0.0


def _segment_name(code: str, rng: random.Random, *, avoid: str | None = None) -> str:
    seg = SEGMENTS_BY_CODE[code]
    options = [seg.name, seg.code] + [s for s in seg.synonyms if not s.startswith("segment")]
    options = [o for o in options if o.lower() != (avoid or "").lower()] or options
    return rng.choice(options)


def _grade(percent: float) -> tuple[tuple[str, ...], tuple[str, ...]]:
    for lo, hi, report_words, query_words in _GRADES:
        if lo <= percent <= hi:
            return report_words, query_words
    raise ValueError(f"no grade for {percent}%")


def simulate_patients(n_reports: int, rng: random.Random) -> list[Study]:
    """Patients with 1-5 studies each; lesions progress, severe ones get stented, until n_reports."""
    studies: list[Study] = []
    patient_no = 0
    while len(studies) < n_reports:
        patient_no += 1
        patient = f"pt{patient_no:05d}"
        day = date(2014, 1, 1) + timedelta(days=rng.randrange(0, 2500))
        lesions = [Lesion(rng.choice(_LESION_SEGMENTS), rng.choice((10, 20, 30, 40, 55, 65, 75, 85, 95)),
                          rng.choice(tuple(_PLAQUE_WORDS))) for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 4)))]
        stents: list[str] = []
        agatston = 0.0 if not lesions else round(rng.lognormvariate(4.5, 1.2), 0)
        for visit in range(rng.choice((1, 2, 2, 3, 3, 4, 5))):
            merged: dict[str, Lesion] = {}
            for lesion in lesions:  # one lesion per segment, the worst
                if lesion.segment not in merged or lesion.percent > merged[lesion.segment].percent:
                    merged[lesion.segment] = lesion
            restenosis = {s for s in stents if rng.random() < 0.1}
            studies.append(Study(f"{patient}-{visit}", patient, day, list(merged.values()), list(stents),
                                 restenosis, agatston))
            # Between studies: severe lesions are stented, others progress, new ones appear.
            next_lesions = []
            for lesion in merged.values():
                if lesion.percent >= 70 and lesion.percent < 100 and rng.random() < 0.6:
                    stents.append(lesion.segment)
                    continue
                grown = min(100.0, lesion.percent + rng.choice((0, 0, 10, 20, 30)))
                next_lesions.append(Lesion(lesion.segment, 95.0 if 95 < grown < 100 else grown, lesion.plaque))
            if rng.random() < 0.4:
                next_lesions.append(Lesion(rng.choice(_LESION_SEGMENTS), rng.choice((20, 40, 60, 80)),
                                           rng.choice(tuple(_PLAQUE_WORDS))))
            lesions = next_lesions
            agatston = round(agatston * rng.uniform(1.0, 1.4) + (rng.uniform(0, 60) if lesions else 0), 0)
            day += timedelta(days=rng.randrange(200, 1200))
    return studies[:n_reports]


def write_report(study: Study, rng: random.Random) -> str:
    """A free-text CCTA report with varied wording and boilerplate."""
    stenoses = {l.segment: l.percent for l in study.lesions}
    stenoses.update({s: 60.0 for s in study.restenosis})
    category = cad_rads(stenoses, stent=bool(study.stents),
                        plaque_burden=plaque_burden_from_cac(study.agatston)).text
    hr = rng.randrange(52, 72)
    lines = [
        rng.choice(("CORONARY CT ANGIOGRAPHY", "CCTA REPORT", "CT CORONARY ANGIOGRAM")),
        f"Study date: {study.day.isoformat()}",
        "Modality: CT",
        rng.choice(("Indication: atypical chest pain.", "Indication: exertional dyspnoea.",
                    "Indication: follow-up of known coronary artery disease.", "Indication: abnormal stress test.")),
        f"Technique: prospectively ECG-gated acquisition, heart rate {hr} bpm, "
        f"{rng.choice((60, 70, 80))} mL iodinated contrast, {rng.choice(('no', '0.4 mg', '0.8 mg'))} "
        "sublingual nitroglycerin. Image quality " + rng.choice(("good.", "diagnostic.", "excellent.")),
        f"Coronary calcium: Agatston score {study.agatston:g}.",
        f"Dominance: {rng.choice(('right', 'right', 'right', 'left', 'co-dominant'))}.",
    ]
    findings = []
    for lesion in study.lesions:
        name = _segment_name(lesion.segment, rng)
        if lesion.percent >= 100:
            findings.append(rng.choice((f"Total occlusion of the {name}.", f"The {name} is occluded.",
                                        f"Chronic total occlusion of the {name} with distal collateral filling.")))
            continue
        words, _ = _grade(lesion.percent)
        plaque = rng.choice(_PLAQUE_WORDS[lesion.plaque])
        noun = rng.choice(_STENOSIS_NOUNS_REPORT)
        findings.append(rng.choice((
            f"{plaque.capitalize()} in the {name} causing {rng.choice(words)} {noun}.",
            f"The {name} shows {plaque} with {rng.choice(words)} {noun}.",
            f"{rng.choice(words).capitalize()} {noun} of the {name} due to {plaque}.",
        )))
    for seg in study.stents:
        name = _segment_name(seg, rng)
        if seg in study.restenosis:
            findings.append(f"Stent in the {name} with moderate in-stent restenosis.")
        else:
            findings.append(rng.choice((f"Patent stent in the {name}.", f"The {name} stent is patent, "
                                        "without in-stent restenosis.", f"Widely patent {name} stent.")))
    if not findings:
        findings.append(rng.choice(("No coronary plaque or stenosis.", "Normal coronary arteries without plaque.",
                                    "No atherosclerotic plaque in the coronary arteries.")))
    rng.shuffle(findings)
    lines.append("Findings: " + " ".join(findings))
    lines.append(rng.choice(("Left ventricular size and wall thickness normal.", "Normal cardiac chambers.",
                             "Mild left atrial enlargement.")))
    lines.append(rng.choice(("Extracardiac: no significant findings.", "Extracardiac: small hiatus hernia.",
                             "Extracardiac: 4 mm right lower lobe nodule, no follow-up needed.")))
    lines.append(f"Impression: CAD-RADS {category}.")
    return "\n".join(lines)


def _bucket(percent: float) -> int:
    return 5 if percent >= 100 else next(i for i, g in enumerate(_GRADES, 1) if g[0] <= percent <= g[1])


def paraphrase_query(study: Study, rng: random.Random) -> tuple[str, frozenset]:
    """A clinician's question about this prior (its worst lesion and a stent, in other words), and the
    facts it states: any report with all of them answers the question as well as the target does."""
    parts, facts = [], set()
    worst = max(study.lesions, key=lambda l: l.percent, default=None)
    if worst is not None:
        facts.add(("lesion", worst.segment, _bucket(worst.percent)))
        name = _segment_name(worst.segment, rng)
        if worst.percent >= 100:
            parts.append(f"an occluded {name}" if rng.random() < 0.5 else f"a chronic total occlusion of the {name}")
        else:
            _, words = _grade(worst.percent)
            parts.append(f"a {rng.choice(words)} {name} {rng.choice(_STENOSIS_NOUNS_QUERY)}")
    if study.stents:
        seg = rng.choice(study.stents)
        state = "restenosed" if seg in study.restenosis else rng.choice(("patent", "open"))
        facts.add(("stent", seg, seg in study.restenosis))
        parts.append(f"a {state} {_segment_name(seg, rng)} stent")
    if not parts:
        parts.append(rng.choice(("normal coronaries", "no coronary disease", "clean coronary arteries")))
        facts.add(("normal",))
    opener = rng.choice(("prior CT with", "previous CCTA showing", "the earlier scan that had",
                         "old coronary CT reporting", "study where we saw"))
    return f"{opener} {' and '.join(parts)}", frozenset(facts)


def study_facts(study: Study) -> set:
    facts: set = {("lesion", l.segment, _bucket(l.percent)) for l in study.lesions}
    facts |= {("stent", s, s in study.restenosis) for s in study.stents}
    return facts if facts else {("normal",)}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run(n_reports: int, n_queries: int, seed: int) -> dict:
    rng = random.Random(seed)
    studies = simulate_patients(n_reports, rng)
    records = [ReportRecord(text=write_report(s, rng), report_id=s.report_id, patient_hash=s.patient,
                            study_date=s.day, modality="CT") for s in studies]
    with tempfile.TemporaryDirectory(prefix="cardiovlm-retrieval-") as folder:
        store = ReportStore.open(path=folder)
        t0 = time.perf_counter()
        result = store.ingest(records)
        ingest_s = time.perf_counter() - t0
        store.search("warm up the query path", k=1)

        sample = rng.sample(studies, min(n_queries, len(studies)))
        by_id = {s.report_id: s for s in studies}
        figures: dict = {"reports": len(records), "patients": len({s.patient for s in studies}),
                         "added": result.added, "skipped": result.skipped_duplicates,
                         "ingest_s": ingest_s, "queries": len(sample), "settings": {}}
        examples = []
        for setting in ("patient priors", "all patients"):
            ranks, latencies, top1_relevant, any5_relevant = [], [], 0, 0
            for study in sample:
                query, facts = paraphrase_query(study, rng)
                filters = ReportFilter(patient_hash=study.patient) if setting == "patient priors" else None
                t = time.perf_counter()
                hits = store.search(query, k=5, filters=filters)
                latencies.append((time.perf_counter() - t) * 1000)
                ids = [h.report_id for h in hits]
                ranks.append(ids.index(study.report_id) + 1 if study.report_id in ids else None)
                relevant = [facts <= study_facts(by_id[i]) for i in ids]
                top1_relevant += bool(relevant and relevant[0])
                any5_relevant += any(relevant)
                if setting == "patient priors" and len(examples) < 3:
                    examples.append((query, study.report_id, ids[:3], hits[0].snippet if hits else ""))
            figures["settings"][setting] = {
                "recall@1": sum(r == 1 for r in ranks) / len(ranks),
                "recall@5": sum(r is not None for r in ranks) / len(ranks),
                "top1_relevant": top1_relevant / len(ranks), "top5_any_relevant": any5_relevant / len(ranks),
                "p50_ms": statistics.median(latencies), "p95_ms": _percentile(latencies, 0.95),
            }
        figures["examples"] = examples
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=1200, help="corpus size (>= 1000 for the target)")
    parser.add_argument("--queries", type=int, default=300, help="paraphrased queries per setting")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    f = run(args.reports, args.queries, args.seed)
    print(f"corpus: {f['reports']} reports of {f['patients']} patients; ingested {f['added']} "
          f"(skipped {f['skipped']}) in {f['ingest_s']:.1f} s = {f['added'] / f['ingest_s']:.0f} reports/s")
    print(f"{'setting':<16} {'queries':>7} {'recall@1':>9} {'recall@5':>9} {'top1 rel':>9} {'top5 rel':>9} "
          f"{'p50 ms':>8} {'p95 ms':>8}")
    for name, s in f["settings"].items():
        print(f"{name:<16} {f['queries']:>7} {s['recall@1']:>9.3f} {s['recall@5']:>9.3f} "
              f"{s['top1_relevant']:>9.3f} {s['top5_any_relevant']:>9.3f} {s['p50_ms']:>8.1f} {s['p95_ms']:>8.1f}")
    print("recall@k: the target report in the top k. top1 rel / top5 rel: the first hit / any of the top 5\n"
          "has every finding the question states (another report can answer it as well as the target).")
    print("targets: recall@5 >= 0.9 (patient priors), p95 < 50 ms")
    for query, target, top, snippet in f["examples"]:  # noqa: B007
        print(f"  q: {query!r} -> target {target}, top {top}\n     snippet: {snippet!r}")


if __name__ == "__main__":
    main()
