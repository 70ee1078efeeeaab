"""Assistant question suite on the bundled demo studies: answer correctness and end-to-end latency.

For every demo case (``tools/demo_cases``: lad_calcified, lad_stenosis, rca_stent, healthy) a
clinician's questions in varied wording are asked through a real :class:`cardiovlm.assistant.session.Session`
with the embedded planner (the same LangGraph loop as every backend), including follow-ups in the
same session. The expected answer of each question is derived from the case's phantom ground truth
(``findings.json``, ``clinical.json`` and the label map), never from the tools:

- presence (calcium, stent, significant stenosis) per artery: the yes/no verdict;
- stenosis: the measured percent within 15 points of the ground-truth stenosis, or no lesion of
  25 % or more where the ground truth has none;
- stent coverage: a catalogue length clearly longer than lesion + 2 x 2.5 mm landing zones must
  cover (yes), one shorter than the lesion must not (no); the recommended length must lie within
  -4/+6 mm of lesion + 5 mm;
- calcium: an Agatston score above 0 exactly when the ground truth places coronary calcium;
- segmentation: the mask file holds exactly the ground-truth voxels of the structure;
- MACE / risk: no MACE probability, the MESA score recomputed from the ground-truth clinical
  context, troponin above / below the sex-specific 99th percentile of the stored assay;
- unanswerable and nonsense questions: no tool call, no number, the list of what can be asked.

Every question is asked in two modes, side by side: ``image`` (the anatomy the tools measure on is
found in the CT, as for any uploaded study) and ``case_labels`` (the case's own label map, asked for
by name), so a gap between the columns is the cost of finding the anatomy from the image.

Run: ``python benchmarks/assistant_questions.py [--cases DIR] [--modes image,case_labels] [--json OUT]``;
prints one row per question and per-category accuracy for each mode (and latency).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cardiovlm.assistant.planner import ClinicalPlanner
from cardiovlm.assistant.session import Session
from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE, STRUCTURES_BY_NAME, segments_of_artery
from cardiovlm.tools.core.answer import GroundedAnswer
from cardiovlm.tools.core.settings import get_settings
from cardiovlm.tools.quant.cadrads import MILD_PERCENT, OBSTRUCTIVE_PERCENT, worst_lesion
from cardiovlm.tools.quant.risk import mesa_chd_risk
from cardiovlm.tools.quant.troponin import find_assay

LANDING_MM = 2.5
STENOSIS_TOLERANCE = 15.0  # percentage points between measured and ground-truth stenosis
Check = Callable[[GroundedAnswer], tuple[bool, str]]


@dataclass
class Question:
    text: str
    category: str
    expected: str  # what a clinician expects, in words (printed in the table)
    check: Check


@dataclass
class Row:
    case: str
    mode: str  # "image" (anatomy found in the CT) or "case_labels" (the case's own label map)
    category: str
    question: str
    expected: str
    got: str
    ok: bool
    seconds: float
    tools: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------ ground truth
@dataclass
class Truth:
    case: cf.Case
    labels: np.ndarray

    @property
    def findings(self) -> list[cf.Finding]:
        return self.case.findings.findings if self.case.findings else []

    def calcium_arteries(self) -> set[str]:
        return {SEGMENTS_BY_CODE[f.segment].artery for f in self.findings
                if f.has_calcium or f.kind in ("calcified_plaque", "mixed_plaque")}

    def stent_arteries(self) -> set[str]:
        return {SEGMENTS_BY_CODE[f.segment].artery for f in self.findings if f.kind == "stent"}

    def lesions(self, artery: str | None = None, segment: str | None = None) -> list[cf.Finding]:
        return [f for f in self.findings if f.kind != "stent"
                and (artery is None or SEGMENTS_BY_CODE[f.segment].artery == artery)
                and (segment is None or f.segment == segment)]

    def voxels(self, name: str) -> int:
        if name in STRUCTURES_BY_NAME:
            ids = [STRUCTURES_BY_NAME[name].label_id]
        else:
            ids = [s.label_id for s in segments_of_artery(name)]
        return int(np.isin(self.labels, ids).sum())


# --------------------------------------------------------------------------------------- checks
def _finding(answer: GroundedAnswer, name: str):
    return next((f.value for f in answer.findings if f.name == name), None)


def verdict_is(expected: str) -> Check:
    return lambda a: (a.verdict == expected, f"verdict {a.verdict}")


def text_has(*needles: str) -> Check:
    return lambda a: (all(n in a.answer for n in needles), a.answer[:70])


def no_tool_no_number() -> Check:
    def check(a: GroundedAnswer) -> tuple[bool, str]:
        # Example questions quoted in the reply ("Will a 20 mm stent ...") are not statements.
        unquoted = re.sub(r'"[^"]*"', "", a.answer)
        stray = re.findall(r"\b\d+(?:\.\d+)?\s*(?:%|mm|AU)", unquoted)
        return (not a.tool_calls and not stray and "I can answer" in a.answer,
                f"{len(a.tool_calls)} tools, numbers {stray}")
    return check


def stenosis_near(where: str, truth_percent: float | None) -> Check:
    def check(a: GroundedAnswer) -> tuple[bool, str]:
        measured = _finding(a, f"{where} diameter stenosis")
        if truth_percent is None:
            return (measured is None or measured < 25, f"{measured}%")
        return (measured is not None and abs(measured - truth_percent) <= STENOSIS_TOLERANCE, f"{measured}%")
    return check


def worst_vessel(artery: str | None) -> Check:
    def check(a: GroundedAnswer) -> tuple[bool, str]:
        values = [f.value for f in a.findings if f.name.endswith("diameter stenosis") and isinstance(f.value, float)]
        named = re.search(r"most severe narrowing is on the (\w+)", a.answer)
        got = f"{named.group(1) if named else 'none'} (max {max(values, default=0.0)}%)"
        if artery is None:
            return (max(values, default=0.0) < 25, got)
        return (named is not None and named.group(1) == artery, got)
    return check


def agatston_positive(expected: bool) -> Check:
    def check(a: GroundedAnswer) -> tuple[bool, str]:
        value = _finding(a, "Agatston score")
        return (value is not None and (value > 0) == expected, f"Agatston {value}")
    return check


def mask_voxels(name: str, expected: int) -> Check:
    def check(a: GroundedAnswer) -> tuple[bool, str]:
        import nibabel as nib

        files = [m for m in a.masks if m.name == name]
        if not files:
            return False, "no mask"
        got = int((np.asarray(nib.load(files[0].path).dataobj) > 0).sum())
        return got == expected, f"{got} voxels"
    return check


def recommended_length(lesion_mm: float) -> Check:
    def check(a: GroundedAnswer) -> tuple[bool, str]:
        value = _finding(a, "shortest covering catalogue length")
        need = lesion_mm + 2 * LANDING_MM
        return (value is not None and need - 4 <= value <= need + 6, f"{value} mm (needs ~{need:g})")
    return check


def mace_answer(clinical: cf.ClinicalContext, troponin_ng_l: float) -> Check:
    assay = find_assay(clinical.troponin_assay)
    url = assay.female_url_ng_l if clinical.sex == "female" else assay.male_url_ng_l
    above = "is above" if troponin_ng_l > url else "is not above"

    def check(a: GroundedAnswer) -> tuple[bool, str]:
        percents = re.findall(r"(\d+(?:\.\d+)?)%", a.answer)
        mesa = _finding(a, "MESA 10-year hard CHD risk")
        only_mesa = all(mesa is not None and float(p) == mesa for p in percents)
        ok = "No validated model" in a.answer and above in a.answer and only_mesa
        return ok, f"{above if above in a.answer else 'troponin?'}; percents {percents}"
    return check


def mesa_matches(clinical: cf.ClinicalContext) -> Check:
    def check(a: GroundedAnswer) -> tuple[bool, str]:
        agatston, mesa = _finding(a, "Agatston score"), _finding(a, "MESA 10-year hard CHD risk")
        if agatston is None or mesa is None:
            return False, f"MESA {mesa}, Agatston {agatston}"
        expected = mesa_chd_risk(clinical, agatston).ten_year_chd_risk_percent
        return abs(expected - mesa) <= 0.1 and "10-year" in a.answer, f"MESA {mesa}% (expected {expected}%)"
    return check


# ------------------------------------------------------------------------------------ questions
def questions_for(truth: Truth) -> list[Question]:
    """The suite for one case, in asking order (follow-ups refer to the question before)."""
    qs: list[Question] = []
    calcium, stents = truth.calcium_arteries(), truth.stent_arteries()
    yn = lambda b: "yes" if b else "no"  # noqa: E731
    clinical = truth.case.clinical

    qs += [
        Question("Which study is loaded?", "study info", "CT, 1 mm grid",
                 text_has("The loaded study is CT", "voxel spacing")),
        Question("What is the calcium score?", "calcium", f"Agatston > 0: {bool(calcium)}",
                 agatston_positive(bool(calcium))),
        Question("Does this patient have any coronary calcium?", "calcium", yn(calcium), verdict_is(yn(calcium))),
        Question("Is there calcification in the LAD?", "presence", yn("LAD" in calcium),
                 verdict_is(yn("LAD" in calcium))),
        Question("and the RCA?", "follow-up", yn("RCA" in calcium), verdict_is(yn("RCA" in calcium))),
        Question("Is there a stent in the right coronary artery?", "presence", yn("RCA" in stents),
                 verdict_is(yn("RCA" in stents))),
        Question("Any stent in the LAD?", "presence", yn("LAD" in stents), verdict_is(yn("LAD" in stents))),
        Question("what about the circumflex?", "follow-up", yn("LCx" in stents), verdict_is(yn("LCx" in stents))),
        Question("Has this patient been stented?", "presence", yn(stents),
                 verdict_is(yn(stents)) if stents else
                 (lambda a: (a.verdict == "no" and "No stent is present in this study" in a.answer, a.answer[:60]))),
    ]
    stent_findings = [f for f in truth.findings if f.kind == "stent"]
    # The in-stent lumen is not graded from the CT (metal blooming, cardiovlm.tools.quant.stenosis): with a stent, the
    # right answer is "undetermined" with that reason, whatever the ground-truth patency.
    def not_graded(a: GroundedAnswer) -> tuple[bool, str]:
        return a.verdict == "unknown" and "cannot be graded from this CT" in a.answer, f"verdict {a.verdict}"

    if stent_findings:
        qs.append(Question("Any in-stent restenosis?", "stent status", "unknown: in-stent lumen not graded",
                           not_graded))
    else:
        qs.append(Question("Any in-stent restenosis?", "stent status", "no", verdict_is("no")))
    for f in stent_findings[:1]:
        artery = SEGMENTS_BY_CODE[f.segment].artery
        qs.append(Question(f"Is the {artery} stent patent?", "stent status", "unknown: in-stent lumen not graded",
                           not_graded))
    lad_significant = any(f.stenosis_percent >= OBSTRUCTIVE_PERCENT for f in truth.lesions("LAD"))
    qs.append(Question("Is there a significant stenosis in the LAD?", "presence", yn(lad_significant),
                       verdict_is(yn(lad_significant))))
    plad = truth.lesions(segment="pLAD")
    plad_percent = max((f.stenosis_percent for f in plad), default=None)
    plad_truth = plad_percent if plad_percent is not None and plad_percent >= MILD_PERCENT else None
    qs.append(Question("How severe is the narrowing of the proximal LAD?", "stenosis",
                       f"{plad_truth:g}% +/- 15" if plad_truth else "no lesion >= 25%",
                       stenosis_near("pLAD", plad_truth)))
    lad = [f.stenosis_percent for f in truth.lesions("LAD")]
    lad_truth = max(lad) if lad and max(lad) >= MILD_PERCENT else None
    qs.append(Question("How tight is the LAD lesion?", "stenosis",
                       f"{lad_truth:g}% +/- 15" if lad_truth else "no lesion >= 25%", stenosis_near("LAD", lad_truth)))
    stenoses = [f for f in truth.lesions() if f.stenosis_percent >= MILD_PERCENT]  # CAD-RADS 2 or more
    worst = worst_lesion(stenoses)
    worst_artery = SEGMENTS_BY_CODE[worst.segment].artery if worst else None
    qs.append(Question("Which vessel has the tightest stenosis?", "stenosis",
                       worst_artery or "none >= 25%", worst_vessel(worst_artery)))
    category = truth.case.findings.cad_rads if truth.case.findings else None
    if category:
        qs.append(Question("What is the CAD-RADS category?", "stenosis", f"CAD-RADS {category}",
                           text_has(f"Patient-level CAD-RADS {category} ")))

    if plad and plad_percent and plad_percent >= MILD_PERCENT:
        length = max(f.length_mm for f in plad)
        need = length + 2 * LANDING_MM
        long_enough = next(c for c in get_settings().stent_lengths_mm if c >= need + 5)
        too_short = max(4.0, float(int(length - 3)))  # shorter than the lesion itself
        qs += [
            Question(f"Will a {long_enough:g} mm stent fully cover the proximal LAD lesion?", "stent coverage",
                     "yes", verdict_is("yes")),
            Question(f"what about a {too_short:g} mm one?", "follow-up", "no", verdict_is("no")),
            Question("Which stent length do I need for the LAD lesion?", "stent coverage",
                     f"about {need:g} mm", recommended_length(length)),
        ]
    else:
        qs.append(Question("Will a 20 mm stent cover the proximal LAD lesion?", "stent coverage",
                           "nothing to cover", lambda a: (a.verdict == "unknown" and "nothing for a stent to cover"
                                                          in a.answer, a.answer[:60])))

    qs += [
        Question("Segment the LAD", "segmentation", f"{truth.voxels('LAD')} voxels",
                 mask_voxels("LAD", truth.voxels("LAD"))),
        Question("Outline the aorta", "segmentation", f"{truth.voxels('aorta')} voxels",
                 mask_voxels("aorta", truth.voxels("aorta"))),
    ]
    most = None
    if calcium:
        most = max(calcium, key=lambda art: sum(f.calcium_diameter_mm or 0 for f in truth.findings
                                                if SEGMENTS_BY_CODE[f.segment].artery == art))
    qs.append(Question("Show me the most calcified artery", "segmentation", most or "no coronary calcium",
                       text_has(f"most calcified artery is the {most}") if most
                       else text_has("no coronary calcium")))
    if clinical is not None:
        qs += [
            Question("Is this patient with Troponin-I 40 pg/mL likely to have a MACE within 1 year?", "MACE",
                     "no probability; scores and limits", mace_answer(clinical, 40.0)),
            Question("What is the 10-year risk of coronary heart disease?", "MACE", "MESA with CAC",
                     mesa_matches(clinical)),
        ]
        assay = find_assay(clinical.troponin_assay)
        url = assay.female_url_ng_l if clinical.sex == "female" else assay.male_url_ng_l
        qs.append(Question("Is a troponin of 20 ng/L elevated for this patient?", "MACE", yn(20 > url),
                           verdict_is(yn(20 > url))))
    qs += [
        Question("What is the left ventricular ejection fraction?", "unanswerable", "no number, capabilities",
                 no_tool_no_number()),
        Question("Tell me a joke about bananas", "unanswerable", "no number, capabilities", no_tool_no_number()),
    ]
    return qs


# ------------------------------------------------------------------------------------------ run
def run_case(case_dir: Path, anatomy: str = "image") -> list[Row]:
    """Every question on one case; ``anatomy`` is where the tools' anatomy comes from (see load_context)."""
    session = Session(model=ClinicalPlanner())
    session.load_study(case_dir, anatomy=anatomy)
    truth = Truth(case=session.context.case, labels=session.context.reference.labels)
    rows = []
    for q in questions_for(truth):
        start = time.perf_counter()
        answer = session.ask(q.text)
        seconds = time.perf_counter() - start
        try:
            ok, got = q.check(answer)
        except Exception as err:  # noqa: BLE001 - a check that cannot read the answer is a wrong answer
            ok, got = False, f"check failed: {err}"
        rows.append(Row(case_dir.name, anatomy, q.category, q.text, q.expected, got, ok, seconds,
                        [c.name for c in answer.tool_calls]))
    return rows


def summarise(rows: list[Row]) -> str:
    lines = [f"{'case':<14}{'mode':<12}{'category':<16}{'question':<50}{'expected':<24}{'got':<32}{'ok':<4}{'s':>6}"]
    for r in rows:
        lines.append(f"{r.case:<14}{r.mode:<12}{r.category:<16}{r.question[:48]:<50}{r.expected[:22]:<24}"
                     f"{r.got[:30]:<32}{'ok' if r.ok else 'NO':<4}{r.seconds:>6.2f}")
    lines.append("")
    modes = sorted({r.mode for r in rows}, key=lambda m: m != "image")
    lines.append(f"{'category':<18}" + "".join(f"{m:>16}" for m in modes))
    for category in [*sorted({r.category for r in rows}), None]:
        cells = []
        for mode in modes:
            sub = [r for r in rows if r.mode == mode and (category is None or r.category == category)]
            ok = sum(r.ok for r in sub)
            cells.append(f"{ok}/{len(sub)} {100 * ok / max(len(sub), 1):5.1f}%" if sub else "-")
        lines.append(f"{category or 'all':<18}" + "".join(f"{c:>16}" for c in cells))
    for mode in modes:
        times = sorted(r.seconds for r in rows if r.mode == mode)
        p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
        lines.append(f"latency per question, {mode} (CPU): mean {statistics.mean(times):.2f} s, "
                     f"p50 {statistics.median(times):.2f} s, p95 {p95:.2f} s, max {times[-1]:.2f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=get_settings().demo_cases_dir,
                        help="folder of case folders (default: the bundled demo cases)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    parser.add_argument("--modes", default="image,case_labels",
                        help="comma-separated anatomy sources: image (found in the CT, what users get) and/or "
                             "case_labels (the case's own label map, to tell tool errors from anatomy errors)")
    args = parser.parse_args(argv)
    case_dirs = [p for p in sorted(args.cases.iterdir()) if cf.is_case_dir(p)]
    if not case_dirs:
        print(f"no case folders under {args.cases}", file=sys.stderr)
        return 2
    rows = [row for mode in args.modes.split(",") for case_dir in case_dirs for row in run_case(case_dir, mode)]
    print(summarise(rows))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
