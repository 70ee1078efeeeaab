"""The hierarchical curriculum: each stage holds what it should, with targets and provenance."""

import json
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from curriculum_cases import REPORT, write_case, write_tube_labels

from cardiovlm.tools.core.anatomy import SEGMENT_PARENT, SEGMENTS_BY_CODE, STRUCTURES_BY_NAME
from cardiovlm.tools.core.case_format import iter_cases, load_case
from cardiovlm.tools.reports.parser import parse_report
from cardiovlm.training.curriculum.builder import build_case_instructions, build_curriculum, load_phrasings
from cardiovlm.training.curriculum.jsonl import CurriculumFileError, read_curriculum, read_header, write_curriculum
from cardiovlm.training.curriculum.schema import CURRICULUM_VERSION

CALCIUM = STRUCTURES_BY_NAME["calcified_plaque"].label_id
STENT = STRUCTURES_BY_NAME["stent"].label_id


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("cases")
    write_case(root)
    return build_curriculum(iter_cases(root), seed=3)


def test_stage1_is_anatomy_only(records):
    stage1 = [r for r in records if r.stage == 1]
    assert {r.task for r in stage1} == {"segment", "landmark"}
    finding_ids = {STRUCTURES_BY_NAME[n].label_id for n in ("calcified_plaque", "noncalcified_plaque", "stent")}
    assert all(r.target.mask is None or not set(r.target.mask.label_ids) & finding_ids for r in stage1)
    assert all(r.provenance.source == "anatomy" for r in stage1)
    masks = {tuple(r.target.mask.label_ids) for r in stage1 if r.target.mask}
    assert (SEGMENTS_BY_CODE["dLCx"].label_id,) in masks and (SEGMENTS_BY_CODE["L-PDA"].label_id,) not in masks
    assert {r.target.landmark for r in stage1 if r.task == "landmark"} == {"left_coronary_ostium", "crux"}


def test_stage2_relations_follow_the_registry(records):
    origins = [r for r in records if r.intent == "vessel_origin"]
    d1 = next(r for r in origins if "first diagonal" in r.instruction.split("(1)")[0]
              or "D1" in r.instruction.split("(1)")[0])
    assert d1.target.answer == SEGMENTS_BY_CODE[SEGMENT_PARENT["D1"]].name and d1.target.answer in d1.target.choices
    assert len(set(d1.target.choices)) == len(d1.target.choices) == 4
    anterior = next(r for r in records if r.intent == "anterior_chamber")
    assert anterior.target.answer == "right ventricle"
    assert next(r for r in records if r.intent == "dominance").target.answer == "right"
    membership = [r for r in records if r.intent == "segment_membership"]
    assert {r.target.answer for r in membership} == {"yes", "no"}


def test_stage3_findings_targets_and_report_spans(records):
    seg = [r for r in records if r.intent == "segment_finding" and not r.negative]
    plaque = next(r for r in seg if r.target.mask.near_segments == ["pLAD"])
    assert set(plaque.target.mask.label_ids) == {CALCIUM, STRUCTURES_BY_NAME["noncalcified_plaque"].label_id}
    assert plaque.provenance.source == "report"
    span = REPORT[slice(*plaque.provenance.report_span)]
    assert "proximal LAD" in span and "stent" not in span
    stent = next(r for r in seg if r.target.mask.near_segments == ["mRCA"])
    assert stent.target.mask.label_ids == [STENT]
    length = next(r for r in records if r.intent == "lesion_length")
    assert (length.target.value, length.target.unit) == (14.0, "mm")
    cover = [r for r in records if r.intent == "stent_coverage"]
    assert cover and all(r.target.answer in ("yes", "no") for r in cover)
    presence = {(r.instruction, r.target.answer) for r in records if r.intent == "presence"}
    left_calcium = [a for i, a in presence if ("left coronary artery" in i or "LCA" in i) and "calcification" in i]
    assert left_calcium == ["yes"]
    assert ("any stent in LAD?", "no") in presence or any(
        "stent" in i and "left anterior descending" in i and a == "no" for i, a in presence)


def test_negatives_teach_not_present(records):
    negatives = [r for r in records if r.negative and r.task == "segment"]
    assert negatives and all(r.target.answer == "not present" and r.target.mask is None for r in negatives)
    stent_in_lad = [r for r in negatives if "stent" in r.instruction and "LAD" in (r.instruction + r.provenance.text)]
    assert stent_in_lad
    assert not any("stent" in r.instruction and "RCA" in r.provenance.text for r in negatives)


def test_held_out_phrasings_are_marked_and_every_intent_has_training_wordings():
    phrasings = load_phrasings()
    assert all(any(p.held_out for p in v) and any(not p.held_out for v_ in [v] for p in v_) for v in phrasings.values())
    case_dir = write_case(Path(__import__("tempfile").mkdtemp()))
    case = load_case(case_dir)
    many = []
    for seed in range(6):
        many += build_case_instructions(case, parse_report(REPORT), rng=random.Random(seed))
    held = {r.phrasing_id for r in many if r.held_out_phrasing}
    held_ids = {f"{k}.{p.id}" for k, v in phrasings.items() for p in v if p.held_out}
    assert held and held <= held_ids
    assert not {r.phrasing_id for r in many if not r.held_out_phrasing} & held_ids


def test_report_only_case_uses_report_spans(tmp_path):
    write_case(tmp_path, "real_1", findings=False)
    records = build_curriculum(iter_cases(tmp_path))
    stage3 = [r for r in records if r.stage == 3]
    assert stage3 and all(r.provenance.source == "report" for r in stage3)
    assert {r.target.mask.near_segments[0] for r in stage3 if r.target.mask} == {"pLAD", "mRCA"}
    assert any(r.negative and r.target.answer == "no" for r in stage3)


def test_jsonl_round_trip_with_versioned_header(records, tmp_path):
    path = tmp_path / "c.jsonl"
    header = write_curriculum(records, path, llm="default", seed=3)
    first = json.loads(path.read_text().splitlines()[0])["header"]
    assert first["curriculum_version"] == CURRICULUM_VERSION and first["records"] == len(records)
    assert sum(header.counts.values()) == len(records) and header.distinct_phrasings > 20
    assert read_curriculum(path) == records and read_header(path) == header
    training = read_curriculum(path, include_held_out=False)
    assert not any(r.held_out_phrasing for r in training) and len(training) < len(records)
    version = f'"curriculum_version": "{CURRICULUM_VERSION}"'
    path.write_text(path.read_text().replace(version, '"curriculum_version": "0"', 1))
    with pytest.raises(CurriculumFileError, match="curriculum version 0"):
        read_curriculum(path)


def test_the_one_reader_refuses_what_training_used_to_skip(records, tmp_path):
    # Training had its own reader that skipped any line without a "task" (a header of another version,
    # a stray object) and never checked the version; the builder's reader needed a header and gave no
    # line numbers. The one reader: header optional, version checked, every other line a record.
    path = tmp_path / "c.jsonl"
    write_curriculum(records[:3], path, llm="default", seed=0)
    lines = path.read_text().splitlines()
    assert len(read_curriculum(path)) == 3
    (tmp_path / "records_only.jsonl").write_text("\n".join(lines[1:]) + "\n")  # hand-written: no header
    assert read_curriculum(tmp_path / "records_only.jsonl") == records[:3]
    assert read_header(tmp_path / "records_only.jsonl") is None
    for name, text, message in [
        ("old_header.jsonl", [json.dumps({"curriculum_version": "1"}), *lines[1:]],
         "line 1 is not a curriculum record"),
        ("stray.jsonl", [*lines[:2], json.dumps({"note": "x"}), *lines[2:]], "line 3 is not a curriculum record"),
        ("broken.jsonl", [*lines[:3], "{not json"], "line 4 is not JSON"),
        ("empty.jsonl", lines[:1], "holds no records"),
    ]:
        (tmp_path / name).write_text("\n".join(text) + "\n")
        with pytest.raises(CurriculumFileError, match=message):
            read_curriculum(tmp_path / name)
    with pytest.raises(CurriculumFileError, match="does not exist"):
        read_curriculum(tmp_path / "missing.jsonl")


def test_builds_are_reproducible(tmp_path):
    write_case(tmp_path)
    cases = iter_cases(tmp_path)
    assert build_curriculum(cases, seed=5) == build_curriculum(cases, seed=5)
    assert build_curriculum(cases, seed=5) != build_curriculum(cases, seed=6)


@pytest.mark.xfail(strict=True, reason="known gap: the calcified ring's stenosis now reads 50 % (truth 50 %), but "
                   "its 8 mm abrupt-edged lesion measures 10.8 mm: the lesion-end rule takes a narrowing's taper as "
                   "symmetric about half depth, so the along-path smoothing's own taper (~1.4 mm per end) is added "
                   "to a step edge")
def test_quantitative_targets_are_measured_by_the_stenosis_tool_on_label_maps(tmp_path):
    write_tube_labels(write_case(tmp_path))
    records = build_curriculum(iter_cases(tmp_path), seed=1)
    length = next(r for r in records if r.intent == "lesion_length")
    degree = next(r for r in records if r.intent == "stenosis_degree")
    assert length.provenance.source == degree.provenance.source == "measurement"
    assert "cardiovlm.tools.quant.stenosis" in length.provenance.text
    # 8 mm of plaque halving a 3.2 mm lumen: the tool's values, not findings.json's 14 mm / 60 %.
    assert abs(length.target.value - 8.0) < 1.0 and 45 <= degree.target.value <= 60
    most = next(r for r in records if r.intent == "segment_most_calcified")
    assert most.provenance.source == "measurement" and "cardiovlm.tools.quant.calcium" in most.provenance.text
    assert most.target.mask.label_ids == [SEGMENTS_BY_CODE[s].label_id for s in ("pLAD", "mLAD", "dLAD", "D1", "D2")]
    unmeasured = build_curriculum(iter_cases(tmp_path), seed=1, measure=False)
    assert next(r for r in unmeasured if r.intent == "lesion_length").provenance.source == "ground_truth"
    # Without measuring, the ground-truth calcium (only on the pLAD) still names the LAD.
    fallback = next(r for r in unmeasured if r.intent == "segment_most_calcified")
    assert fallback.provenance.source == "ground_truth" and fallback.target.mask == most.target.mask


def test_a_tool_reading_far_from_ground_truth_is_not_taught(tmp_path, monkeypatch):
    import cardiovlm.training.curriculum.builder as builder

    write_tube_labels(write_case(tmp_path))
    monkeypatch.setattr(builder, "MAX_MEASUREMENT_DISAGREEMENT_PERCENT", 1.0)  # tool ~50 % vs truth 60 %
    (measured,) = builder.measure_findings(load_case(tmp_path / "case_0001")).values()
    assert measured.provenance.source == "ground_truth" and "ground truth kept" in measured.provenance.text
    assert (measured.length_mm, measured.stenosis_percent) == (14.0, 60.0)
