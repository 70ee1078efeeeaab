"""Hierarchical instruction curriculum from cases: anatomy first, then relations, then findings.

Stage 1, anatomy -> descriptors: segment a named structure or artery, locate a landmark.
Stage 2, anatomy -> anatomy: most anterior chamber, which vessel a segment arises from
(``cardiovlm.tools.core.anatomy.SEGMENT_PARENT``), segment membership, dominance.
Stage 3, anatomy -> findings: segment calcifications, plaques, occlusions and stents on named
segments; yes/no presence per artery; multiple choice with distractors; lesion length, stenosis,
stent coverage and CAD-RADS. Negatives ask for what is absent and teach "not present".

The report is read by the chosen language model (:mod:`cardiovlm.training.curriculum.llm`) through the
``extract_findings`` template; a stage-3 instruction cites the report span that states it. Targets
of phantom cases come from their ground truth (``findings.json``). Quantitative targets (lesion
length, stenosis, stent coverage) are measured by ``cardiovlm.tools.quant.stenosis.measure_study`` on the
ground-truth label map when the case has one (provenance "measurement"); without a label map, or
when the tool finds no lesion on the finding's segment, they are the ground-truth values and the
provenance says so. Real cases without ground truth get stage-3 instructions from the report alone.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel

from cardiovlm.tools.core.anatomy import (
    ARTERIES,
    ARTERY_NAMES,
    CORONARY_SEGMENTS,
    HEART_CHAMBERS,
    LANDMARKS,
    SEGMENT_PARENT,
    SEGMENTS_BY_CODE,
    STRUCTURES_BY_NAME,
    segments_of_artery,
)
from cardiovlm.tools.core.case_format import Case, Finding, Findings
from cardiovlm.tools.reports.findings import ReportFindings, SegmentFinding
from cardiovlm.training.curriculum.schema import InstructionRecord, MaskTarget, Provenance, Target
from cardiovlm.training.curriculum.templates import format_choices

PHRASINGS_FILE = Path(__file__).with_name("phrasings.yaml")

# The left coronary artery as a whole: the left main and the arteries it gives off.
LEFT_CORONARY = ("LM", "LAD", "LCx")
LEFT_CORONARY_NAME = "left coronary artery"

# What each finding kind is called in an instruction, and which labels make its mask.
FINDING_WORDS = {
    "calcified_plaque": "calcification", "noncalcified_plaque": "non-calcified plaque",
    "mixed_plaque": "plaque", "occlusion": "occlusion", "stent": "stent",
}
FINDING_MASK_LABELS = {
    "calcified_plaque": ["calcified_plaque"], "noncalcified_plaque": ["noncalcified_plaque"],
    "mixed_plaque": ["calcified_plaque", "noncalcified_plaque"],
    "occlusion": ["calcified_plaque", "noncalcified_plaque"], "stent": ["stent"],
}
PRESENCE_QUESTIONS = ("calcification", "plaque", "stent")
# Anterior-to-posterior order of the chambers (anatomical fact; the RV lies behind the sternum).
CHAMBERS_FRONT_TO_BACK = ("rv_blood", "ra_blood", "lv_blood", "la_blood")
DOMINANCE_CHOICES = ["right", "left", "codominant"]
# Share of instructions worded with a held-out phrasing (kept out of training, used for evaluation).
HELD_OUT_RATE = 0.1


class Phrasing(BaseModel):
    id: str
    text: str
    held_out: bool = False


@lru_cache(maxsize=2)
def load_phrasings(path: Path = PHRASINGS_FILE) -> dict[str, list[Phrasing]]:
    """Intent -> its phrasings; every intent must keep at least one phrasing for training."""
    data = yaml.safe_load(Path(path).read_text())["intents"]
    intents = {k: [Phrasing(**p) for p in v] for k, v in data.items()}
    for intent, phrasings in intents.items():
        if all(p.held_out for p in phrasings):
            raise ValueError(f"intent {intent!r} has only held-out phrasings")
    return intents


def _labels(*names: str) -> list[int]:
    return [STRUCTURES_BY_NAME[n].label_id for n in names]


@dataclass
class _Builder:
    """Collects the records of one case; ``rng`` picks phrasings and distractors."""

    case_id: str
    rng: random.Random
    records: list[InstructionRecord] = field(default_factory=list)

    def add(self, intent: str, stage: int, task: str, target: Target, provenance: Provenance,
            negative: bool = False, **slots) -> None:
        phrasings = load_phrasings()[intent]
        held_out = self.rng.random() < HELD_OUT_RATE and any(p.held_out for p in phrasings)
        phrasing = self.rng.choice([p for p in phrasings if p.held_out == held_out])
        if "choices" in slots:
            slots["choices"] = format_choices(slots["choices"])
        self.records.append(InstructionRecord(
            id=f"{self.case_id}-{len(self.records):04d}", study_id=self.case_id, stage=stage, task=task,
            intent=intent, instruction=phrasing.text.format(**slots), target=target, provenance=provenance,
            phrasing_id=f"{intent}.{phrasing.id}", held_out_phrasing=phrasing.held_out, negative=negative))

    def choice(self, intent: str, stage: int, answer: str, pool: list[str], provenance: Provenance,
               n: int = 4, **slots) -> None:
        """A multiple-choice question: the answer plus up to n-1 distractors, shuffled."""
        distractors = [p for p in dict.fromkeys(pool) if p != answer]
        options = self.rng.sample(distractors, min(n - 1, len(distractors))) + [answer]
        self.rng.shuffle(options)
        self.add(intent, stage, "choice", Target(answer=answer, choices=options), provenance,
                 choices=options, **slots)


_ANATOMY = Provenance(source="anatomy", text="cardiovlm.tools.core.anatomy registry")


def _present_segments(case: Case) -> list[str]:
    if case.findings and case.findings.segments:
        return [s.segment for s in case.findings.segments if s.present]
    if case.has("label_table.json"):
        table = case.label_table()
        return [s.code for s in CORONARY_SEGMENTS if s.label_id in table]
    return [s.code for s in CORONARY_SEGMENTS]


def _stage1(b: _Builder, case: Case, segments: list[str]) -> None:
    structures: tuple[str, ...] = ("aorta", "aortic_root", "pulmonary_artery", "lv_myocardium", *HEART_CHAMBERS)
    if case.has("label_table.json"):
        present = set(case.label_table().values())
        structures = tuple(s for s in structures if s in present)
    for name in structures:
        s = STRUCTURES_BY_NAME[name]
        b.add("segment_structure", 1, "segment", Target(mask=MaskTarget(label_ids=[s.label_id])), _ANATOMY,
              name=s.display, short=min(s.synonyms or (s.display,), key=len))
    for code in segments:
        seg = SEGMENTS_BY_CODE[code]
        b.add("segment_structure", 1, "segment", Target(mask=MaskTarget(label_ids=[seg.label_id])), _ANATOMY,
              name=seg.name, short=seg.code)
    for artery in ARTERIES:
        ids = [s.label_id for s in segments_of_artery(artery) if s.code in segments]
        if ids:
            b.add("segment_artery", 1, "segment", Target(mask=MaskTarget(label_ids=ids)), _ANATOMY,
                  name=ARTERY_NAMES[artery], short=artery)
    landmarks = case.landmarks() if case.has("landmarks.json") else {}
    for key in (k for k in LANDMARKS if k in landmarks):
        b.add("locate_landmark", 1, "landmark", Target(landmark=key), _ANATOMY,
              name=LANDMARKS[key], short=key.replace("_", " "))


def _stage2(b: _Builder, case: Case, segments: list[str], report: ReportFindings) -> None:
    chambers = [STRUCTURES_BY_NAME[c].display for c in CHAMBERS_FRONT_TO_BACK]
    b.choice("anterior_chamber", 2, chambers[0], chambers, _ANATOMY)
    vessel_names = [SEGMENTS_BY_CODE[c].name for c in segments] + [STRUCTURES_BY_NAME["aortic_root"].display]
    for code in segments:
        parent = SEGMENT_PARENT[code]
        seg = SEGMENTS_BY_CODE[code]
        answer = SEGMENTS_BY_CODE[parent].name if parent else STRUCTURES_BY_NAME["aortic_root"].display
        b.choice("vessel_origin", 2, answer, [v for v in vessel_names if v != seg.name], _ANATOMY,
                 name=seg.name, short=code)
        if parent and parent in segments:
            b.add("segment_parent", 2, "segment",
                  Target(mask=MaskTarget(label_ids=[SEGMENTS_BY_CODE[parent].label_id])), _ANATOMY,
                  name=seg.name, short=code)
        # Membership: once with the right artery, once with another one (a "no").
        other = b.rng.choice([a for a in ARTERIES if a != seg.artery])
        for artery in (seg.artery, other):
            b.add("segment_membership", 2, "yes_no", Target(answer="yes" if artery == seg.artery else "no"),
                  _ANATOMY, name=seg.name, short=code, other=ARTERY_NAMES[artery])
    dominance = case.manifest.dominance or report.dominance
    if dominance:
        source = (Provenance(source="ground_truth", text="case.json dominance") if case.manifest.dominance
                  else Provenance(source="report", text=f"dominance: {report.dominance}"))
        b.choice("dominance", 2, dominance, DOMINANCE_CHOICES, source, n=3)


def _report_provenance(report: ReportFindings, segment: str, ground_truth: str) -> Provenance:
    """The report passage stating a finding on ``segment``, else the ground truth."""
    hits = report.for_segment(segment) or report.for_artery(SEGMENTS_BY_CODE[segment].artery)
    if hits:
        return Provenance(source="report", report_span=hits[0].span, text=hits[0].text.strip())
    return Provenance(source="ground_truth", text=ground_truth)


def _finding_kinds_by_artery(findings: list[Finding]) -> dict[str, set[str]]:
    """Artery -> presence words ("calcification", "plaque", "stent") true for it."""
    out: dict[str, set[str]] = {a: set() for a in ARTERIES}
    for f in findings:
        artery = SEGMENTS_BY_CODE[f.segment].artery
        if f.kind == "stent":
            out[artery].add("stent")
        else:
            out[artery].add("plaque")
        if f.has_calcium or f.kind in ("calcified_plaque", "mixed_plaque"):
            out[artery].add("calcification")
    return out


# Largest gap between the stenosis tool and the phantom's ground truth for the tool value to be used.
MAX_MEASUREMENT_DISAGREEMENT_PERCENT = 10.0


@dataclass
class _Measured:
    length_mm: float
    stenosis_percent: float
    provenance: Provenance


def measure_findings(case: Case) -> dict[str, _Measured]:
    """Finding id -> lesion length and stenosis measured on the case's CT along its label map's vessels.

    Findings the stenosis tool cannot match (no lesion on that segment, a stent) are left out;
    a case without a label map or coronary labels gives an empty dict. Where the tool's stenosis is
    more than ``MAX_MEASUREMENT_DISAGREEMENT_PERCENT`` off the ground truth, the ground truth is kept.
    """
    from cardiovlm.tools.core.case_format import CCTA_NIFTI, CENTERLINES_FILE, LABELS_NIFTI, read_labels
    from cardiovlm.tools.ingest.study import load_nifti
    from cardiovlm.tools.quant.stenosis import StenosisError, measure_study

    if case.findings is None or not case.has(LABELS_NIFTI) or not case.has(CCTA_NIFTI):
        return {}
    ccta = load_nifti(case.path(CCTA_NIFTI))
    labels = read_labels(case.root)  # on the image's voxel grid, reoriented as the image is
    centerlines = case.centerlines() if case.has(CENTERLINES_FILE) else None
    try:
        study = measure_study(ccta.hu, ccta.affine, labels=labels, centerlines=centerlines)
    except StenosisError:
        return {}
    lesions = [lesion for vessel in study.vessels for lesion in vessel.lesions if not lesion.in_stent]
    out: dict[str, _Measured] = {}
    for f in case.findings.findings:
        if f.kind == "stent":
            continue
        on_segment = [lesion for lesion in lesions if f.segment in lesion.segments]
        if not on_segment:
            continue
        # The lesion starting nearest the finding's start on that segment.
        lesion = min(on_segment, key=lambda x: abs(x.start_in_segment_mm - f.start_mm))
        if abs(lesion.stenosis_percent - f.stenosis_percent) > MAX_MEASUREMENT_DISAGREEMENT_PERCENT:
            # The phantom's stenosis is exact by construction: a tool reading far off it would teach
            # a wrong target, so the finding keeps its ground truth (and the provenance says why).
            out[f.id] = _Measured(f.length_mm, f.stenosis_percent, Provenance(
                source="ground_truth", text=f"findings.json {f.id}: cardiovlm.tools.quant.stenosis measured "
                f"{lesion.stenosis_percent:.0f}% against {f.stenosis_percent:.0f}% ground truth, ground truth kept"))
            continue
        out[f.id] = _Measured(lesion.length_mm, lesion.stenosis_percent, Provenance(
            source="measurement", text=f"cardiovlm.tools.quant.stenosis.measure_study on {CCTA_NIFTI} along "
                                       f"{LABELS_NIFTI}: "
                                       "lesion "
            f"{lesion.segment} {lesion.length_mm:.1f} mm, {lesion.stenosis_percent:.0f}%"))
    return out


def calcium_by_artery(case: Case, *, measure: bool) -> tuple[dict[str, float], Provenance]:
    """Calcium volume (mm^3) per artery: measured by ``cardiovlm.tools.quant.calcium.contrast_calcium_volume`` on the
    CCTA and its ground-truth label map when ``measure`` and both exist, else a sphere-volume
    estimate from the ground-truth calcium diameters."""
    from cardiovlm.tools.core.case_format import CCTA_NIFTI, LABELS_NIFTI, read_labels

    if measure and case.has(CCTA_NIFTI) and case.has(LABELS_NIFTI):
        from cardiovlm.tools.ingest.study import load_nifti
        from cardiovlm.tools.quant.calcium import CalciumError, contrast_calcium_volume

        image = load_nifti(case.path(CCTA_NIFTI))
        labels = read_labels(case.root)
        try:
            score = contrast_calcium_volume(image.hu, image.spacing, labels, affine=image.affine)
        except CalciumError:
            score = None
        if score is not None:
            volumes = {a: c.volume_mm3 for a, c in score.per_artery.items()}
            text = ", ".join(f"{a} {v:.1f} mm3" for a, v in volumes.items())
            return volumes, Provenance(source="measurement",
                                       text="cardiovlm.tools.quant.calcium.contrast_calcium_volume: "
                                                                  f"{text}")
    volumes = {a: 0.0 for a in ARTERIES}
    for f in case.findings.findings if case.findings else []:
        if f.calcium_diameter_mm:
            volumes[SEGMENTS_BY_CODE[f.segment].artery] += math.pi / 6 * f.calcium_diameter_mm ** 3
    return volumes, Provenance(source="ground_truth", text="findings.json calcium diameters (sphere volumes)")


def _stage3_ground_truth(b: _Builder, truth: Findings, segments: list[str], report: ReportFindings,
                         stent_lengths: tuple[float, ...], landing_zone_mm: float,
                         measured: dict[str, _Measured], calcium: tuple[dict[str, float], Provenance]) -> None:
    findings = truth.findings
    volumes, calcium_provenance = calcium
    ranked = sorted(volumes.items(), key=lambda kv: -kv[1])
    if ranked and ranked[0][1] > 0 and (len(ranked) == 1 or ranked[0][1] > ranked[1][1]):
        # "Segment the most calcified artery": asked only when one artery clearly leads.
        ids = [s.label_id for s in segments_of_artery(ranked[0][0]) if s.code in segments]
        b.add("segment_most_calcified", 3, "segment", Target(mask=MaskTarget(label_ids=ids)), calcium_provenance)
    for f in findings:
        seg = SEGMENTS_BY_CODE[f.segment]
        prov = _report_provenance(report, f.segment, f"findings.json {f.id}")
        mask = MaskTarget(label_ids=_labels(*FINDING_MASK_LABELS[f.kind]), near_segments=[f.segment])
        b.add("segment_finding", 3, "segment", Target(mask=mask), prov,
              finding=FINDING_WORDS[f.kind], name=seg.name, short=seg.code)
        if f.kind != "stent":
            m = measured.get(f.id) or _Measured(f.length_mm, f.stenosis_percent, Provenance(
                source="ground_truth", text=f"findings.json {f.id} (not measured by a tool: no label map "
                "or no lesion found on this segment)"))
            m.provenance.report_span = prov.report_span
            b.add("lesion_length", 3, "measure", Target(value=round(m.length_mm, 1), unit="mm"), m.provenance,
                  name=seg.name, short=seg.code)
            b.add("stenosis_degree", 3, "measure", Target(value=round(m.stenosis_percent), unit="%"), m.provenance,
                  name=seg.name, short=seg.code)
            stent = b.rng.choice(stent_lengths)
            fits = m.length_mm + 2 * landing_zone_mm <= stent
            b.add("stent_coverage", 3, "yes_no", Target(answer="yes" if fits else "no"), Provenance(
                source=m.provenance.source, report_span=prov.report_span,
                text=f"lesion {m.length_mm:.1f} mm + 2 x {landing_zone_mm:g} mm landing zone vs {stent:g} mm stent"),
                name=seg.name, short=seg.code, stent_mm=f"{stent:g}")
    # "Segment the artery with a calcification" and its multiple-choice twin.
    by_kind = {"calcification": sorted({f.segment for f in findings if f.has_calcium
                                        or f.kind in ("calcified_plaque", "mixed_plaque")}),
               "stent": sorted({f.segment for f in findings if f.kind == "stent"})}
    for word, diseased in by_kind.items():
        if diseased:
            b.add("segment_diseased_artery", 3, "segment", Target(mask=MaskTarget(
                label_ids=[SEGMENTS_BY_CODE[s].label_id for s in diseased])),
                Provenance(source="ground_truth", text="findings.json"), finding=word)
            healthy = [SEGMENTS_BY_CODE[s].name for s in segments if s not in diseased]
            if healthy:
                b.choice("finding_choice", 3, SEGMENTS_BY_CODE[b.rng.choice(diseased)].name, healthy,
                         Provenance(source="ground_truth", text="findings.json"),
                         finding="calcified" if word == "calcification" else "stented")
    # Yes/no per artery and the left coronary artery as a whole; "no" answers are negatives.
    present = _finding_kinds_by_artery(findings)
    groups = {ARTERY_NAMES[a]: (a,) for a in ARTERIES} | {LEFT_CORONARY_NAME: LEFT_CORONARY}
    for name, arteries in groups.items():
        for word in PRESENCE_QUESTIONS:
            yes = any(word in present[a] for a in arteries)
            b.add("presence", 3, "yes_no", Target(answer="yes" if yes else "no"),
                  Provenance(source="ground_truth", text="findings.json"), negative=not yes,
                  finding=word, name=name, short="LCA" if len(arteries) > 1 else arteries[0])
    # Negatives: ask to segment what is not there.
    for artery in ARTERIES:
        for word in ("stent", "calcification"):
            if word not in present[artery]:
                b.add("segment_finding", 3, "segment", Target(answer="not present"),
                      Provenance(source="ground_truth", text=f"findings.json: no {word} in the {artery}"),
                      negative=True, finding=word, name=ARTERY_NAMES[artery], short=artery)
    cad = truth.cad_rads.split("/")[0]
    b.choice("cad_rads", 3, cad, ["0", "1", "2", "3", "4A", "4B", "5"],
             Provenance(source="ground_truth", text=f"findings.json cad_rads {truth.cad_rads}"))


def _report_kind(f: SegmentFinding) -> str | None:
    if f.stent:
        return "stent"
    if f.occluded:
        return "occlusion"
    return {"calcified": "calcified_plaque", "noncalcified": "noncalcified_plaque",
            "mixed": "mixed_plaque"}.get(f.plaque_type or "")


def _stage3_report_only(b: _Builder, report: ReportFindings) -> None:
    """Real studies without ground truth: what the report asserts, with its spans."""
    for f in report.positive():
        kind = _report_kind(f)
        if f.segment is None or kind is None or f.uncertain:
            continue  # an artery alone cannot place a mask; hedged findings are not taught
        seg = SEGMENTS_BY_CODE[f.segment]
        prov = Provenance(source="report", report_span=f.span, text=f.text.strip())
        b.add("segment_finding", 3, "segment", Target(mask=MaskTarget(
            label_ids=_labels(*FINDING_MASK_LABELS[kind]), near_segments=[f.segment])), prov,
            finding=FINDING_WORDS[kind], name=seg.name, short=seg.code)
        if f.lesion_length_mm is not None:
            b.add("lesion_length", 3, "measure", Target(value=f.lesion_length_mm, unit="mm"), prov,
                  name=seg.name, short=seg.code)
        if f.stenosis_percent is not None:
            b.add("stenosis_degree", 3, "measure", Target(value=f.stenosis_percent, unit="%"), prov,
                  name=seg.name, short=seg.code)
    for f in report.findings:
        if f.negated and not f.uncertain:
            name = SEGMENTS_BY_CODE[f.segment].name if f.segment else ARTERY_NAMES[f.artery]
            b.add("presence", 3, "yes_no", Target(answer="no"),
                  Provenance(source="report", report_span=f.span, text=f.text.strip()), negative=True,
                  finding="plaque", name=name, short=f.segment or f.artery)


def build_case_instructions(case: Case, report: ReportFindings, *, rng: random.Random,
                            stent_lengths: tuple[float, ...] = (8, 12, 15, 18, 20, 23, 24, 26, 28, 30, 33, 38),
                            landing_zone_mm: float = 2.5, measure: bool = False) -> list[InstructionRecord]:
    """All instructions of one case, stages 1 to 3, given the findings read from its report.

    Args:
        measure: measure lesions on the ground-truth label map with ``cardiovlm.tools.quant.stenosis`` (slower).
    """
    b = _Builder(case.manifest.case_id, rng)
    segments = _present_segments(case)
    _stage1(b, case, segments)
    _stage2(b, case, segments, report)
    if case.findings is not None:
        measured = measure_findings(case) if measure else {}
        _stage3_ground_truth(b, case.findings, segments, report, stent_lengths, landing_zone_mm, measured,
                             calcium_by_artery(case, measure=measure))
    else:
        _stage3_report_only(b, report)
    return b.records


def build_curriculum(cases: list[Case], *, llm: str = "default", seed: int = 0, measure: bool = True,
                     progress: bool = False) -> list[InstructionRecord]:
    """Instructions of every case; each report is read once by the ``llm`` backend.

    Args:
        measure: quantitative targets measured by the stenosis tool on ground-truth label maps.

    Raises:
        ValueError: no cases, or an unknown LLM spec.
    """
    from cardiovlm.tools.core.settings import get_settings
    from cardiovlm.training.curriculum.llm import extract_findings, make_chat_model

    if not cases:
        raise ValueError("no cases to build a curriculum from")
    settings = get_settings()
    model = make_chat_model(llm)
    records: list[InstructionRecord] = []
    iterator = cases
    if progress:
        from tqdm import tqdm
        iterator = tqdm(cases, desc="curriculum", unit="study")
    for case in iterator:
        report = extract_findings(model, case.report) if case.report else ReportFindings()
        rng = random.Random(f"{seed}:{case.manifest.case_id}")  # per case: stable under reordering
        records += build_case_instructions(case, report, rng=rng, stent_lengths=settings.stent_lengths_mm,
                                           landing_zone_mm=settings.stent_landing_zone_mm, measure=measure)
    return records

