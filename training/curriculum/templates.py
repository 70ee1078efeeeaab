"""Report-understanding templates (data in ``templates.yaml``) and the answers they ask for.

A template is an initial instruction to a language model about one report, asking for one kind of fact. This
module loads the templates, renders them into chat messages (the same messages for every backend),
names the pydantic answer model of each form, and answers a template deterministically from
:class:`ReportFindings` (what the embedded backend does).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field

from cardiovlm.tools.core.anatomy import ARTERIES, ARTERY_NAMES, SEGMENTS_BY_CODE, resolve_structure_or_segment
from cardiovlm.tools.reports.findings import ReportFindings, SegmentFinding

TEMPLATES_FILE = Path(__file__).with_name("templates.yaml")

Form = Literal["extraction", "multiple_choice", "presence", "measurement", "cad_rads"]


class Template(BaseModel):
    id: str
    form: Form
    instruction: str
    params: list[str] = Field(default_factory=list)
    quantity: Literal["stenosis", "lesion_length", "stent_length"] | None = None


class ChoiceAnswer(BaseModel):
    """Answer to a multiple-choice template."""

    choice: int | None = Field(description="1-based number of the right option; null if the report does not say")
    evidence: str | None = Field(None, description="the report passage supporting the answer")


class PresenceAnswer(BaseModel):
    """Answer to a presence (yes/no) template."""

    answer: Literal["yes", "no", "uncertain", "not mentioned"]
    evidence: str | None = Field(None, description="the report passage supporting the answer")


class MeasurementAnswer(BaseModel):
    """Answer to a measurement template; a range fills low and high."""

    value: float | None = Field(None, description="the single value, if the report gives one")
    low: float | None = Field(None, description="lower bound of a reported range")
    high: float | None = Field(None, description="upper bound of a reported range")
    unit: Literal["%", "mm"] | None = None
    evidence: str | None = None


class CadRadsAnswer(BaseModel):
    """Answer to the CAD-RADS template."""

    category: Literal["0", "1", "2", "3", "4A", "4B", "5", "N"] | None = Field(
        description="stenosis category; null if the report states none")
    modifiers: list[str] = Field(default_factory=list, description="e.g. ['P2', 'S']")


ANSWER_MODELS: dict[str, type[BaseModel]] = {
    "extraction": ReportFindings, "multiple_choice": ChoiceAnswer, "presence": PresenceAnswer,
    "measurement": MeasurementAnswer, "cad_rads": CadRadsAnswer,
}


class TemplateSet(BaseModel):
    version: int
    system: str
    user: str
    templates: dict[str, Template]


@lru_cache(maxsize=4)
def load_templates(path: Path = TEMPLATES_FILE) -> TemplateSet:
    """The templates of ``templates.yaml`` (or another file of the same layout)."""
    data = yaml.safe_load(Path(path).read_text())
    templates = {t["id"]: Template(**t) for t in data["templates"]}
    return TemplateSet(version=data["version"], system=data["system"], user=data["user"], templates=templates)


def get_template(template_id: str) -> Template:
    templates = load_templates().templates
    if template_id not in templates:
        raise ValueError(f"unknown template {template_id!r}; known: {', '.join(templates)}")
    return templates[template_id]


def format_choices(choices: list[str]) -> str:
    """"(1) left diagonal (2) left circumflex ..." as the patent writes them."""
    return " ".join(f"({i}) {c}" for i, c in enumerate(choices, 1))


def render_messages(template_id: str, report: str, **params) -> list[tuple[str, str]]:
    """(role, text) chat messages asking ``template_id`` about ``report``.

    Raises:
        ValueError: unknown template or a missing parameter.
    """
    template = get_template(template_id)
    missing = [p for p in template.params if p not in params]
    if missing:
        raise ValueError(f"template {template_id!r} needs parameters {missing}")
    shown = {k: (format_choices(v) if k == "choices" else v) for k, v in params.items()}
    schema = json.dumps(ANSWER_MODELS[template.form].model_json_schema())
    ts = load_templates()
    return [
        ("system", ts.system.format(schema=schema)),
        ("human", ts.user.format(template_id=template_id, params=json.dumps(params),
                                 instruction=template.instruction.format(**shown), report=report)),
    ]


def _matches(finding: SegmentFinding, anatomy: str) -> bool:
    kind, key = resolve_structure_or_segment(anatomy)
    if kind == "segment":
        # "LM" is both; an artery-level mention of the segment's artery counts only for the LM.
        return finding.segment == key or (finding.segment is None and key == "LM" and finding.artery == "LM")
    if kind == "artery":
        return finding.artery == key
    raise ValueError(f"{anatomy!r} is not a coronary segment or artery")


def _present(finding: SegmentFinding, template_id: str) -> bool | None:
    if template_id == "calcium_presence":
        return finding.calcium
    if template_id == "stent_presence":
        return finding.stent
    if finding.negated:
        return False
    return bool(finding.plaque_type or finding.occluded or finding.stenosis_grade not in (None, "none"))


def answer_from_findings(template_id: str, findings: ReportFindings, **params) -> BaseModel:
    """Answer a template from already extracted findings (deterministic; the embedded backend)."""
    template = get_template(template_id)
    if template.form == "extraction":
        return findings
    if template.form == "cad_rads":
        if not findings.cad_rads:
            return CadRadsAnswer(category=None)
        category, *modifiers = findings.cad_rads.split("/")
        return CadRadsAnswer(category=category, modifiers=modifiers)
    if template.form == "multiple_choice":
        return _answer_choice(template_id, findings, params["choices"])
    relevant = [f for f in findings.findings if _matches(f, params["anatomy"])]
    if template.form == "presence":
        said = [(f, _present(f, template_id)) for f in relevant]
        said = [(f, p) for f, p in said if p is not None]
        if not said:
            return PresenceAnswer(answer="not mentioned")
        yes = [f for f, p in said if p]
        if yes:
            return PresenceAnswer(answer="uncertain" if all(f.uncertain for f in yes) else "yes", evidence=yes[0].text)
        return PresenceAnswer(answer="no", evidence=said[0][0].text)
    return _answer_measure(template.quantity, [f for f in relevant if not f.negated])


def _answer_measure(quantity: str | None, relevant: list[SegmentFinding]) -> MeasurementAnswer:
    for f in relevant:
        if quantity == "stenosis" and f.stenosis_low is not None:
            return MeasurementAnswer(low=f.stenosis_low, high=f.stenosis_high, unit="%", evidence=f.text)
        if quantity == "stenosis" and f.stenosis_percent is not None:
            return MeasurementAnswer(value=f.stenosis_percent, unit="%", evidence=f.text)
        if quantity == "lesion_length" and f.lesion_length_mm is not None:
            return MeasurementAnswer(value=f.lesion_length_mm, unit="mm", evidence=f.text)
        if quantity == "stent_length" and f.stent_length_mm is not None:
            return MeasurementAnswer(value=f.stent_length_mm, unit="mm", evidence=f.text)
    return MeasurementAnswer()


_SEVERITY = {"none": 0, "minimal": 1, "mild": 2, "moderate": 3, "severe": 4, "occluded": 5}


def _answer_choice(template_id: str, findings: ReportFindings, choices: list[str]) -> ChoiceAnswer:
    scores: list[tuple[float, str | None]] = []
    for choice in choices:
        relevant = [f for f in findings.positive() if _matches(f, choice)]
        if template_id == "calcified_artery_choice":
            hits = [f for f in relevant if f.calcium]
            scores.append((1.0 if hits else 0.0, hits[0].text if hits else None))
        else:
            best = max(relevant, key=lambda f: _SEVERITY.get(f.stenosis_grade or "none", 0), default=None)
            scores.append((_SEVERITY.get(best.stenosis_grade or "none", 0) if best else 0, best.text if best else None))
    top = max(s for s, _ in scores)
    winners = [i for i, (s, _) in enumerate(scores) if s == top]
    if top == 0 or len(winners) != 1:
        return ChoiceAnswer(choice=None)
    return ChoiceAnswer(choice=winners[0] + 1, evidence=scores[winners[0]][1])


def anatomy_display(key: str) -> str:
    """How a template names a segment or artery in its question."""
    if key in SEGMENTS_BY_CODE:
        return SEGMENTS_BY_CODE[key].name
    if key in ARTERIES:
        return ARTERY_NAMES[key]
    return key
