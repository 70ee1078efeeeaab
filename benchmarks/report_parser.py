"""Benchmark: the embedded report parser against phantom ground truth, per finding type.

For each seed (default 10_000-10_199, never used while developing the parser) the phantom
findings sampler draws ground-truth findings, the phantom report writer turns them into a varied
free-text report, and ``cardiovlm.tools.reports.parser.parse_report`` reads it back. No images
are generated. Compared per SCCT segment, as sets of (study, segment, value):

* stenosis category: CAD-RADS category of the segment's maximal stenosis (``cardiovlm.tools.quant.cadrads``), for
  segments with plaque or occlusion (a stent's segment counts only with in-stent restenosis);
* plaque type: calcified / noncalcified / mixed;
* calcium presence: segments with calcium;
* stent: segments with a stent.

Precision = matched / extracted, recall = matched / ground truth; a finding the report only places
on an artery (no segment) counts as missed. A last row counts wrong negations: passages the parser
read as denying disease on a segment (or a whole artery) that has a ground-truth finding. Throughput is
parse_report alone, reports per second.

Usage::

    python benchmarks/report_parser.py [--seeds 10000:10200] [--show-errors 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE
from cardiovlm.tools.core.case_format import Findings
from cardiovlm.tools.quant.cadrads import stenosis_category
from cardiovlm.tools.reports.findings import ReportFindings
from cardiovlm.tools.reports.parser import parse_report

TYPES = ("stenosis category", "plaque type", "calcium presence", "stent")


def truth_sets(findings: Findings) -> dict[str, set]:
    """Ground truth per finding type, from the per-segment summaries."""
    out: dict[str, set] = {t: set() for t in TYPES}
    for s in findings.segments:
        if not s.present:
            continue
        diseased = s.plaque_type != "none" or s.occluded
        if diseased or (s.stent and s.max_stenosis_percent > 0):
            out["stenosis category"].add((s.segment, stenosis_category(s.max_stenosis_percent)))
        if s.plaque_type != "none":
            out["plaque type"].add((s.segment, s.plaque_type))
        if s.calcium:
            out["calcium presence"].add(s.segment)
        if s.stent:
            out["stent"].add(s.segment)
    return out


def extracted_sets(parsed: ReportFindings) -> dict[str, set]:
    """What the parser extracted, on the same keys (the worst category per segment)."""
    out: dict[str, set] = {t: set() for t in TYPES}
    worst: dict[str, str] = {}
    order = ["0", "1", "2", "3", "4A", "5"]
    for f in parsed.positive():
        if f.segment is None:
            continue
        category = f.stenosis_category
        if f.stent and not f.in_stent_restenosis:
            category = None  # a stent's own numbers are not a stenosis
        if category not in (None, "0"):
            if f.segment not in worst or order.index(category) > order.index(worst[f.segment]):
                worst[f.segment] = category
        if f.plaque_type:
            out["plaque type"].add((f.segment, f.plaque_type))
        if f.calcium:
            out["calcium presence"].add(f.segment)
        if f.stent:
            out["stent"].add(f.segment)
    out["stenosis category"] = set(worst.items())
    return out


def phantom_report(seed: int) -> tuple[Findings, str]:
    """Ground truth and report of one phantom seed, as ``generate_case`` makes them, without voxels."""
    import numpy as np

    try:
        from cardiovlm.training.phantoms.clinical import sample_clinical
        from cardiovlm.training.phantoms.generate import _cadrads_text, _summaries, build
        from cardiovlm.training.phantoms.report import write_report
    except ImportError as err:
        raise SystemExit(f"the phantom generator and report writer are needed ({err})") from err
    anatomy, _, _, _, truth, where, _ = build(seed)
    findings = Findings(findings=truth, segments=_summaries(anatomy, truth), cad_rads=_cadrads_text(truth),
                        extracoronary_calcium=where)
    rng = np.random.default_rng([seed, 1])  # the stream generate_case gives the report writer
    clinical = sample_clinical(rng, findings)
    return findings, write_report(findings, clinical, dominance=anatomy.dominance, rng=rng)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="10000:10200", help="first:last (exclusive) seed")
    parser.add_argument("--show-errors", type=int, default=0, help="print this many disagreements per type")
    args = parser.parse_args(argv)
    first, last = (int(x) for x in args.seeds.split(":"))

    counts = {t: defaultdict(int) for t in TYPES}
    negations = wrong_negations = 0
    errors: dict[str, list[str]] = {t: [] for t in TYPES}
    reports = []
    for seed in range(first, last):
        findings, report = phantom_report(seed)
        reports.append(report)
        parsed = parse_report(report)
        truth, got = truth_sets(findings), extracted_sets(parsed)
        diseased = {f.segment for f in findings.findings}
        diseased_arteries = {SEGMENTS_BY_CODE[s].artery for s in diseased}
        for f in parsed.findings:
            if f.negated:
                negations += 1
                wrong_negations += (f.segment in diseased) if f.segment else (f.artery in diseased_arteries)
        for t in TYPES:
            counts[t]["tp"] += len(truth[t] & got[t])
            counts[t]["extracted"] += len(got[t])
            counts[t]["truth"] += len(truth[t])
            if len(errors[t]) < args.show_errors and truth[t] != got[t]:
                errors[t].append(f"seed {seed}: missed {sorted(truth[t] - got[t])}, "
                                 f"spurious {sorted(got[t] - truth[t])}\n{report}\n")

    start = time.perf_counter()
    for report in reports:
        parse_report(report)
    rate = len(reports) / (time.perf_counter() - start)

    print(f"embedded report parser on {len(reports)} phantom reports (seeds {first}-{last - 1})")
    print(f"{'finding type':<20}{'truth':>7}{'extracted':>11}{'matched':>9}{'precision':>11}{'recall':>8}")
    for t in TYPES:
        c = counts[t]
        precision = c["tp"] / c["extracted"] if c["extracted"] else float("nan")
        recall = c["tp"] / c["truth"] if c["truth"] else float("nan")
        print(f"{t:<20}{c['truth']:>7}{c['extracted']:>11}{c['tp']:>9}{precision:>11.3f}{recall:>8.3f}")
    print(f"negated passages: {negations}, of which on a diseased segment or artery: {wrong_negations}")
    print(f"throughput: {rate:,.0f} reports/s (parse_report only, one core)")
    for t in TYPES:
        for e in errors[t]:
            print(f"--- {t}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
