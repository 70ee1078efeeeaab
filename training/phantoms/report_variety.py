"""Measuring the variety of phantom reports: each sentence abstracted to its shape.

Two sentences differing only in which segment, number, grade or plaque type they state share a
shape; the number of distinct shapes over many reports is the writer's variety.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from cardiovlm.tools.core.anatomy import ARTERY_NAMES, ARTERY_SYNONYMS, CORONARY_SEGMENTS
from cardiovlm.training.phantoms.report_template import Alt, Opt, load_grammar, parse_template


def _anatomy_pattern() -> re.Pattern:
    phrases = {s.code for s in CORONARY_SEGMENTS} | {s.name for s in CORONARY_SEGMENTS}
    phrases |= {p for s in CORONARY_SEGMENTS for p in s.synonyms}
    phrases |= {p for names in ARTERY_SYNONYMS.values() for p in names} | set(ARTERY_NAMES.values())
    alternation = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{alternation})(?![\w-])", re.I)


def _phrase_pattern(phrases) -> re.Pattern:
    alternation = "|".join(re.escape(p) for p in sorted(set(phrases), key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{alternation})(?![\w-])", re.I)


@lru_cache(maxsize=1)
def _clinical_pattern() -> tuple[re.Pattern, re.Pattern]:
    """Risk-factor and presentation phrases of the grammar (templates expanded to their literal forms)."""
    ind = load_grammar()["indication"]
    risks = [re.sub(r"\{chol\}", "N", p) for words in ind["risk_words"].values() for p in words]
    presentations = [_expansions(p) for group in ind["presentation"].values() for p in group]
    return _phrase_pattern(risks), _phrase_pattern([x for xs in presentations for x in xs])


def _expansions(template: str) -> list[str]:
    """Every text a template without slots can produce (used for short vocabulary entries only)."""
    def walk(nodes: tuple) -> list[str]:
        out = [""]
        for node in nodes:
            if isinstance(node, str):
                options = [node]
            elif isinstance(node, Opt):
                options = ["", *walk(node.body)]
            elif isinstance(node, Alt):
                options = [x for option in node.options for x in walk(option)]
            else:
                raise ValueError(f"vocabulary entry {template!r} holds a slot")
            out = [a + b for a in out for b in options]
        return out
    return [re.sub(r"\s+", " ", x).strip() for x in walk(parse_template(template))]


_ANATOMY = _anatomy_pattern()
_SHAPE_RULES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"\b(?:minimal|mild|moderate|severe)\b", re.I), "GRADE"),
    (re.compile(r"\b(?:densely calcified|partially calcified|partly calcified|mixed calcified and non-calcified|"
                r"non-calcified|noncalcified|uncalcified|low-attenuation|calcified|calcific|mixed|soft)\b", re.I),
     "PLAQUE"),
    (re.compile(r"\b(?:man|woman|male|female)\b", re.I), "SEX"),
    (re.compile(r"\b(?:ng/L|pg/mL|ng/mL)", re.I), "UNIT"),
    (re.compile(r"\d+(?:\.\d+)?"), "N"),
)


def sentence_shape(sentence: str) -> str:
    """The sentence with its slots abstracted: anatomy -> SEG, numbers -> N, grading words -> GRADE,
    plaque words -> PLAQUE, sex -> SEX, troponin units -> UNIT, risk factors -> RISK, presenting
    complaints -> PRESENTATION; "a"/"an" before a slot -> "a"; lists of one slot collapse to one.

    Two sentences differing only in which segment, number or plaque type they state share a shape.
    """
    risks, presentations = _clinical_pattern()
    shape = _ANATOMY.sub("SEG", sentence)
    shape = presentations.sub("PRESENTATION", risks.sub("RISK", shape))
    for pattern, slot in _SHAPE_RULES:
        shape = pattern.sub(slot, shape)
    shape = re.sub(r"\b[Aa]n (?=PLAQUE|N\b)", lambda m: m.group(0)[0] + " ", shape)  # a/an agreement only
    shape = re.sub(r"\b(SEG|N|GRADE|PLAQUE|RISK)(?:(?:,| and| or)\s+(?:the\s+)?\1)+\b", r"\1", shape)
    return re.sub(r"\s+", " ", shape).strip()


def report_sentences(report: str) -> list[str]:
    """The sentences of a report (headings dropped), split at full stops that end a sentence."""
    out: list[str] = []
    for line in report.splitlines():
        line = re.sub(r"^\d+\.\s+", "", line.strip())
        if not line or (line.endswith(":") and len(line.split()) <= 6):
            continue
        out.extend(s.strip() for s in re.split(r"(?<=[a-z%)A-Z0-9])\.(?=\s|$)", line) if s.strip())
    return out


def distinct_shapes(reports: Sequence[str]) -> set[str]:
    """Distinct sentence shapes over ``reports`` (see :func:`sentence_shape`)."""
    return {sentence_shape(s) for r in reports for s in report_sentences(r)}



__all__ = ["distinct_shapes", "report_sentences", "sentence_shape"]
