"""Phantom CCTA report writer: every finding reported, nothing absent asserted, variety, determinism."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from cardiovlm.tools.core.anatomy import CORONARY_SEGMENTS, SEGMENTS_BY_CODE, SYNONYM_INDEX, find_anatomy
from cardiovlm.tools.core.case_format import ClinicalContext, Finding, Findings, SegmentSummary
from cardiovlm.tools.quant.cadrads import cad_rads, stenosis_band
from cardiovlm.training.phantoms.report import write_report
from cardiovlm.training.phantoms.report_phrasing import artery_phrasings, grade_of, segment_phrasings
from cardiovlm.training.phantoms.report_template import load_grammar, parse_template
from cardiovlm.training.phantoms.report_variety import distinct_shapes, report_sentences, sentence_shape

KINDS = ("calcified_plaque", "noncalcified_plaque", "mixed_plaque", "occlusion", "stent")
PLAQUE_TYPE = {"calcified_plaque": "calcified", "noncalcified_plaque": "noncalcified", "mixed_plaque": "mixed"}
ABSENT = {"right": {"L-PDA", "L-PLB"}, "left": {"R-PDA", "R-PLB"}, "codominant": {"L-PLB"}}
BANDS = {"minimal": (1, 24), "mild": (25, 49), "moderate": (50, 69), "severe": (70, 99)}


def random_findings(rng: np.random.Generator, dominance: str = "right") -> Findings:
    """Plausible random ground truth: 0-4 findings on distinct present segments, consistent summaries."""
    absent = ABSENT[dominance] | ({"RI"} if rng.random() < 0.5 else set())
    present = [s.code for s in CORONARY_SEGMENTS if s.code not in absent]
    chosen = rng.choice(present, size=int(rng.choice([0, 1, 1, 2, 2, 3, 4])), replace=False)
    findings = []
    for i, seg in enumerate(chosen):
        kind = str(rng.choice(KINDS, p=[0.3, 0.2, 0.25, 0.1, 0.15]))
        if kind == "occlusion":
            pct = 100.0
        elif kind == "stent":
            pct = float(rng.choice([0, 0, 0, 30, 60, 80, 100]))
        else:
            pct = float(rng.choice([0, rng.integers(1, 100)]))
        calcium = kind in ("calcified_plaque", "mixed_plaque") or (kind != "noncalcified_plaque" and rng.random() < 0.3)
        findings.append(Finding(
            id=f"f{i + 1}", segment=str(seg), kind=kind, stenosis_percent=pct,
            length_mm=float(rng.integers(8, 38) if kind == "stent" else rng.integers(3, 30)), start_mm=1.0,
            calcium_peak_hu=float(rng.integers(300, 1200)) if calcium else None,
            stent_diameter_mm=float(rng.choice([2.5, 3.0, 3.5])) if kind == "stent" and rng.random() < 0.8 else None,
            in_stent_restenosis=kind == "stent" and pct > 0))
    summaries = []
    for s in CORONARY_SEGMENTS:
        mine = [f for f in findings if f.segment == s.code]
        types = {PLAQUE_TYPE[f.kind] for f in mine if f.kind in PLAQUE_TYPE}
        if not types and any(f.kind == "occlusion" for f in mine) and rng.random() < 0.5:
            types = {str(rng.choice(["calcified", "noncalcified", "mixed"]))}
        plaque = next(iter(types)) if len(types) == 1 else ("mixed" if types else "none")
        summaries.append(SegmentSummary(
            segment=s.code, present=s.code not in absent,
            max_stenosis_percent=max((f.stenosis_percent for f in mine), default=0.0), plaque_type=plaque,
            calcium=any(f.has_calcium for f in mine) or plaque in ("calcified", "mixed"),
            stent=any(f.kind == "stent" for f in mine), occluded=any(f.stenosis_percent >= 100 for f in mine)))
    worst: dict[str, float] = {}
    for f in findings:
        worst[f.segment] = max(worst.get(f.segment, 0.0), f.stenosis_percent)
    category = cad_rads(worst, stent=any(f.kind == "stent" for f in findings)).text
    return Findings(findings=findings, segments=summaries, cad_rads=category,
                    extracoronary_calcium=["aortic valve"] if rng.random() < 0.2 else [])


def patient(**overrides) -> ClinicalContext:
    values = dict(age=64, sex="female", race="hispanic", systolic_bp_mmhg=138, total_cholesterol_mg_dl=210,
                  hdl_cholesterol_mg_dl=48, smoker=True, diabetes=False, hypertension_treatment=True,
                  lipid_lowering=False, family_history_mi=True, troponin_value=0.052, troponin_unit="ng/mL",
                  troponin_assay="Abbott ARCHITECT STAT hs-cTnI")
    values.update(overrides)
    return ClinicalContext(**values)


def sample(seed: int) -> tuple[Findings, str, str]:
    rng = np.random.default_rng(seed)
    dominance = str(rng.choice(["right", "right", "left", "codominant"]))
    findings = random_findings(rng, dominance)
    return findings, dominance, write_report(findings, patient(), dominance=dominance, rng=rng)


# --- an independent reading of the reports, by sentence ---------------------------------------------

def findings_part(report: str) -> str:
    """The report up to the impression heading (the impression only restates)."""
    heads = load_grammar()["headings"]["impression"]
    cut = min((report.find("\n" + h) for h in heads if "\n" + h in report), default=len(report))
    return report[:cut]


def segments_named(sentence: str) -> set[str]:
    return {key for kind, key, _ in find_anatomy(sentence) if kind == "segment"}


def arteries_named(sentence: str) -> set[str]:
    out = set()
    for kind, key, _ in find_anatomy(sentence):
        out.add(key if kind == "artery" else SEGMENTS_BY_CODE[key].artery)
    return out


def plaque_family(sentence: str) -> str | None:
    s = sentence.lower()
    if re.search(r"\bmixed\b|partially calcified|partly calcified", s):
        return "mixed_plaque"
    if re.search(r"non-calcified|noncalcified|uncalcified|\bsoft\b|low-attenuation", s):
        return "noncalcified_plaque"
    if re.search(r"\bcalcifi(ed|c)\b", s) and "plaque" in s:
        return "calcified_plaque"
    return None


def stenosis_consistent(sentence: str, percent: float) -> bool:
    """Grading words and numbers of the sentence agree with the truth's CAD-RADS band."""
    s = sentence.lower()
    grades = [g for g in BANDS if re.search(rf"\b{g}\b", s)]
    if percent <= 0:
        return grades == ["minimal"] and "%" not in s
    band = stenosis_band(percent).grade  # the one CAD-RADS table is the oracle
    lo, hi = BANDS[band]
    ranges = re.findall(r"(\d+)(?:-| to )(\d+)%", s)
    singles = [int(x) for x in re.findall(r"(?<![\d-])(\d+)%", re.sub(r"\d+(?:-| to )\d+%", "", s))]
    return (bool(grades or ranges or singles) and all(g == band for g in grades)
            and all((int(a), int(b)) == (lo, hi) for a, b in ranges) and all(lo <= x <= hi for x in singles))


def describes(sentence: str, f: Finding) -> bool:
    if f.segment not in segments_named(sentence):
        return False
    s = sentence.lower()
    if f.kind == "stent":
        if "stent" not in s:
            return False
        if f.stenosis_percent >= 100:
            return "occluded" in s and "restenosis" in s
        if f.in_stent_restenosis or f.stenosis_percent > 0:
            return ("in-stent restenosis" in s and "patent" not in s
                    and stenosis_consistent(sentence, f.stenosis_percent))
        return "patent" in s
    if f.kind == "occlusion":
        return "occlu" in s
    return plaque_family(sentence) == f.kind and stenosis_consistent(sentence, f.stenosis_percent)


def clean_segment(findings: Findings, code: str) -> bool:
    return not any(f.segment == code for f in findings.findings)


NEGATION = re.compile(r"\bfree of\b|\bno (plaque|evidence of (?!in-stent)|atherosclerotic)|without plaque|"
                      r"\bunremarkable\b|\bnormal\b(?! (origins|in size|in calibre|left ventricular))", re.I)


# --- tests ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(40))
def test_every_finding_is_described_with_its_segment_kind_and_severity(seed):
    findings, _, report = sample(seed)
    sentences = report_sentences(findings_part(report))
    for f in findings.findings:
        assert any(describes(s, f) for s in sentences), f"{f} not described in:\n{report}"


@pytest.mark.parametrize("seed", range(40))
def test_absent_findings_are_never_asserted(seed):
    findings, dominance, report = sample(seed)
    stented = {f.segment for f in findings.findings if f.kind == "stent"}
    diseased_arteries = {SEGMENTS_BY_CODE[f.segment].artery for f in findings.findings}
    if not stented:
        assert not re.search(r"\bstent|\bPCI\b", report), report
    for sentence in report_sentences(report):
        named = segments_named(sentence)
        if "stent" in sentence.lower().replace("in-stent", "") and named:
            assert named & stented, sentence
        if NEGATION.search(sentence):
            # Negated statements only for segments and vessels without any finding.
            for code in named:
                assert clean_segment(findings, code), f"negated a diseased segment: {sentence}\n{report}"
            for kind, key, _ in find_anatomy(sentence):
                if kind == "artery":
                    assert key not in diseased_arteries, f"negated a diseased artery: {sentence}"
        family = plaque_family(sentence)
        if family and named and "coronary calcification" not in sentence.lower():
            assert any(f.segment in named and (f.kind == family or f.kind == "occlusion")
                       for f in findings.findings), sentence
        if re.search(r"occlu", sentence, re.I) and named:
            assert any(f.segment in named and f.stenosis_percent >= 100 for f in findings.findings), sentence
    assert dominance in report.lower().replace("co-dominant", "codominant").replace("-dominant", " dominant")


def test_impression_gives_the_cad_rads_category_and_management():
    for seed in range(20):
        findings, _, report = sample(seed)
        impression = report[len(findings_part(report)):]
        assert f"CAD-RADS {findings.cad_rads}" in impression or f"CAD-RADS: {findings.cad_rads}" in impression \
            or f"CAD-RADS 2.0: {findings.cad_rads}" in impression, impression
        management = load_grammar()["management"][findings.cad_rads.split("/")[0]]
        assert any(m.split("<")[0][:20] in impression for m in management), impression


@pytest.mark.parametrize("percent, word", [(24.5, "minimal"), (25.0, "mild"), (49.5, "mild"), (69.5, "moderate"),
                                           (70.0, "severe"), (99.5, "severe")])
def test_a_stenosis_at_a_band_edge_is_written_in_the_cadrads_band(percent, word):
    # The writer once kept its own copy of the bands; it now reads cardiovlm.tools.quant.cadrads, so a measured 69.5 %
    # is "moderate" with a number of at most 69 % in the report too, never "70%".
    assert grade_of(percent)[0] == word == stenosis_band(percent).grade
    f = Finding(id="f1", segment="pLAD", kind="mixed_plaque", stenosis_percent=percent, length_mm=10, start_mm=1,
                calcium_peak_hu=700)
    findings = Findings(findings=[f], cad_rads=cad_rads({"pLAD": percent}).text)
    low, high = BANDS[word]
    for seed in range(12):
        report = write_report(findings, patient(), dominance="right", rng=np.random.default_rng(seed))
        described = [s for s in report_sentences(findings_part(report)) if describes(s, f)]
        assert described, report
        numbers = [int(x) for s in described for x in re.findall(r"(\d+)%", s)]
        assert all(low <= x <= high for x in numbers), described
    with pytest.raises(ValueError, match="occlusions"):
        grade_of(100.0)


@pytest.mark.parametrize("percent", [49.5, 50.0, 69.5, 70.0])
def test_the_impression_and_hedges_follow_the_cadrads_obstructive_and_severe_edges(percent):
    # The writer once wrote 50 and 70 itself; the one CAD-RADS table is the oracle here, so the two
    # cannot drift apart: only an obstructive stenosis is named in the impression, and only a moderate
    # one gets the "significance uncertain" hedge.
    band = stenosis_band(percent)
    obstructive, moderate = band.category not in ("1", "2"), band.grade == "moderate"
    f = Finding(id="f1", segment="pLAD", kind="noncalcified_plaque", stenosis_percent=percent, length_mm=10,
                start_mm=1)
    findings = Findings(findings=[f], cad_rads=cad_rads({"pLAD": percent}).text)
    hedges = load_grammar()["moderate_hedge"]
    named, hedged = set(), set()
    for seed in range(30):
        report = write_report(findings, patient(), dominance="right", rng=np.random.default_rng(seed))
        impression = report[len(findings_part(report)):]
        named.add("pLAD" in segments_named(impression))
        hedged.add(any(h in report for h in hedges))
    assert named == {obstructive}, (percent, named)
    assert hedged == ({True, False} if moderate else {False}), (percent, hedged)


def test_same_seed_same_report_and_seeds_differ():
    assert sample(7)[2] == sample(7)[2]
    assert len({sample(s)[2] for s in range(10)}) == 10


def test_at_least_50_distinct_sentence_shapes_over_100_reports():
    reports = [sample(seed)[2] for seed in range(100)]
    shapes = distinct_shapes(reports)
    assert len(shapes) >= 50, len(shapes)


def test_sentence_shape_abstracts_anatomy_numbers_grades_and_plaque():
    a = sentence_shape("Mixed plaque in the proximal LAD with moderate (50-69%) stenosis")
    b = sentence_shape("Calcified plaque in the mid RCA with severe (70-99%) stenosis")
    assert a == b == "PLAQUE plaque in the SEG with GRADE (N-N%) stenosis"
    assert sentence_shape("The LCx and RCA are free of plaque") == "The SEG are free of plaque"
    assert sentence_shape("An uncalcified plaque in segment 6") == sentence_shape("A mixed plaque in segment 6")
    assert sentence_shape("The LAD is free of plaque") != sentence_shape("No plaque in the LAD")


def test_headings_and_sections_vary():
    reports = [sample(seed)[2] for seed in range(40)]
    first_lines = {r.splitlines()[0] for r in reports}
    assert len(first_lines) >= 5
    assert any("Agatston" not in r for r in reports)


def test_calcium_score_is_reported_when_known():
    rng = np.random.default_rng(3)
    findings = Findings(cad_rads="2/P2", findings=[Finding(
        id="f1", segment="mLAD", kind="calcified_plaque", stenosis_percent=35, length_mm=6, start_mm=4,
        calcium_peak_hu=700)])
    report = write_report(findings, patient(), dominance="left", rng=rng, calcium_score=212)
    assert re.search(r"(Agatston|calcium score)\D{0,30}212", report), report
    assert "A2" in report or "Agatston units" in report


def test_troponin_units_and_no_identifiers_in_indication():
    report = write_report(Findings(cad_rads="0"), patient(troponin_value=41.0, troponin_unit="pg/mL"),
                          dominance="right", rng=np.random.default_rng(1))
    assert "41 pg/mL" in report
    assert "64" in report and re.search(r"\bwoman\b|\bfemale\b", report)
    assert not re.search(r"\b(MRN|DOB|date of birth|patient name|Mr|Mrs|Ms)\b", report)


def test_random_random_is_accepted_and_deterministic():
    findings = random_findings(np.random.default_rng(5))
    one = write_report(findings, patient(), dominance="right", rng=random.Random(11))
    assert one == write_report(findings, patient(), dominance="right", rng=random.Random(11))


def test_segment_and_artery_phrasings_resolve_back_through_the_registry():
    for seg in CORONARY_SEGMENTS:
        for phrase in segment_phrasings(seg.code):
            named = [key for kind, key, _ in find_anatomy(phrase) if kind == "segment"]
            assert named == [seg.code], (seg.code, phrase)
    for artery in ("LM", "LAD", "LCx", "RCA"):
        for phrase in artery_phrasings(artery):
            hit = SYNONYM_INDEX[phrase[4:].lower()]
            assert (hit[1] if hit[0] == "artery" else SEGMENTS_BY_CODE[hit[1]].artery) == artery


def test_every_grammar_template_parses_and_bad_templates_are_refused():
    load_grammar()
    assert parse_template("<a|b> [c] {d}")
    for bad in ("<a|b", "[a", "{a", "a>", "a]"):
        with pytest.raises(ValueError):
            parse_template(bad)


@pytest.mark.parametrize("kwargs, message", [
    (dict(dominance="north"), "dominance"),
    (dict(rng=42), "rng"),
    (dict(calcium_score=-1.0), "calcium score"),
])
def test_bad_arguments_raise_value_error(kwargs, message):
    args = dict(dominance="right", rng=np.random.default_rng(0))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        write_report(Findings(cad_rads="0"), patient(), **args)


def test_findings_of_the_wrong_type_are_refused():
    with pytest.raises(ValueError, match="Findings"):
        write_report({"findings": []}, patient(), dominance="right", rng=np.random.default_rng(0))
