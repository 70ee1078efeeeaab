"""Free-text CCTA reports for the synthetic phantoms, written from their ground truth by a grammar.

:func:`write_report` turns a :class:`~tools.case_format.Findings` and a
:class:`~tools.case_format.ClinicalContext` into a report in varied radiologist style. The wording is
data (``report_grammar.yaml`` beside this module); this module only chooses, fills and orders it.
Every finding is described in one sentence that names its segment; vessels and segments are negated
only when nothing was placed on them; hedges appear only where they cannot contradict the truth
(blooming, strut artefact, collaterals, functional significance). The report holds no patient
identifiers: age and sex only.

Grammar mini-language (in the YAML): ``<a|b>`` one alternative, ``[x]`` optional, ``{slot}`` a
value from the writer; ``{Slot}`` is the same value with its first letter capitalised (left alone
when the first word is an abbreviation such as "pLAD").

Vocabulary, for the report parser's coverage (``tools/reports/parser.py``):

* Segment phrasings (from ``tools.anatomy``, never re-typed): the full name ("the proximal left
  anterior descending artery"), the code ("the pLAD", "the OM1", "the R-PDA"), the registry synonyms
  with abbreviations upper-cased ("the proximal LAD", "the mid RCA", "the first obtuse marginal",
  "the ramus intermedius"), "segment 6", a code with its number ("the proximal LAD (segment 6)"), and
  the same as an inline heading ("Proximal LAD: ...", "Segment 6: ...").
* Artery phrasings (clean vessels only): "the LAD", "the left anterior descending artery", "the
  circumflex", "the LCx", "the right coronary artery", "the left main", ...; lists "the LCx and RCA".
* Grading words with CAD-RADS 2.0 ranges: minimal 1-24%, mild 25-49%, moderate 50-69%, severe
  70-99%, occluded 100% ("total/complete occlusion", "totally/completely occluded"); numbers are the
  truth rounded to 5% within its band ("approximately 60%"), ranges "50-69%" or "50 to 69%". A plaque
  without narrowing (0%) is "minimal", never a number.
* Stenosis nouns: "stenosis", "luminal narrowing", "narrowing", "diameter stenosis",
  "in-stent restenosis"; lesion length: "measuring 12 mm in length", "extending over 12 mm",
  "over 12 mm", "12 mm long", "with a length of 12 mm", "spanning approximately 12 mm".
* Plaque words: calcified ("calcified", "densely calcified", "calcific"); non-calcified
  ("non-calcified", "noncalcified", "soft", "uncalcified", and "low-attenuation" only when the
  CAD-RADS string carries HRP); mixed ("mixed", "partially calcified", "partly calcified", "mixed
  calcified and non-calcified"); nouns "plaque", "atherosclerotic plaque".
* Stents: "3.0 x 18 mm stent" (diameter x length) or "18 mm stent"; "patent", "widely patent",
  "with no evidence of / without in-stent restenosis"; "<grade> in-stent restenosis (<range>)";
  "occluded due to in-stent restenosis"; calcification beside a stent: "with surrounding calcification".
* Negations: "is free of (atherosclerotic) plaque", "no plaque or stenosis in", "is normal /
  unremarkable, without plaque", "no evidence of calcification/plaque in", "<Artery>: no
  atherosclerotic plaque", "the remainder of the vessel is unremarkable", "no coronary calcification".
* Hedges: "Blooming artefact may lead to overestimation of this stenosis.", "Grading is limited by
  blooming artefact.", "Functional significance is uncertain.", "likely/probably via collaterals",
  "the stent appears patent". Hedge sentences name no vessel.
* Dominance: "right/left dominant", "right dominance", "codominant", "co-dominant".
* Impression: restated obstructive findings, stents and occlusions; "CAD-RADS 4A/S",
  "CAD-RADS 2.0: 3"; a management phrase per category (CAD-RADS 2.0 recommendations).

Example::

    >>> import numpy as np
    >>> from tools.case_format import ClinicalContext, Finding, Findings
    >>> f = Findings(cad_rads="3", findings=[Finding(id="f1", segment="pLAD", kind="mixed_plaque",
    ...     stenosis_percent=60, length_mm=12, start_mm=2, calcium_peak_hu=600)])
    >>> c = ClinicalContext(age=61, sex="male", race="white", systolic_bp_mmhg=130,
    ...     total_cholesterol_mg_dl=200, hdl_cholesterol_mg_dl=45, smoker=False, diabetes=False,
    ...     hypertension_treatment=True, lipid_lowering=False, family_history_mi=False)
    >>> "CAD-RADS" in write_report(f, c, dominance="right", rng=np.random.default_rng(0))
    True
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from tools.anatomy import (
    ARTERIES, ARTERY_NAMES, ARTERY_SYNONYMS, CORONARY_SEGMENTS, MAIN_VESSEL_PATHS, SEGMENTS_BY_CODE, SYNONYM_INDEX,
    CoronarySegment, segments_of_artery,
)
from tools.cadrads import cac_drs
from tools.case_format import ClinicalContext, Finding, Findings
from tools.troponin import interpret_troponin
from training.phantoms.clinical import as_generator

GRAMMAR_FILE = Path(__file__).with_name("report_grammar.yaml")
DOMINANCES = ("right", "left", "codominant")

# CAD-RADS 2.0 bands of the grading words (REFERENCE.md): (word, lowest %, highest %).
GRADES: tuple[tuple[str, int, int], ...] = (
    ("minimal", 1, 24), ("mild", 25, 49), ("moderate", 50, 69), ("severe", 70, 99))

# Abbreviations as radiologists write them; every other word of a registry synonym stays lower case.
_CASING = {"lad": "LAD", "rca": "RCA", "lcx": "LCx", "cx": "Cx", "pda": "PDA", "plb": "PLB", "om": "OM",
           "om1": "OM1", "om2": "OM2", "d1": "D1", "d2": "D2", "lm": "LM", "lmca": "LMCA", "lms": "LMS",
           "r-pda": "R-PDA", "l-pda": "L-PDA", "r-plb": "R-PLB", "l-plb": "L-PLB", "ri": "RI"}
# Registry synonyms that no radiologist writes in a report (collapsed codes, odd spellings).
_UNWRITTEN = re.compile(r"^(?:[pmd]-?(?:lad|rca|lcx|cx)|[pmd]lcx|p-lcx|lmcx|lcflx|lcx artery|left diagonal|"
                        r"rpda|lpda|rplb|lplb|segment \d+)$")


# --------------------------------------------------------------------------------------------
# Grammar: parse the template mini-language once, expand with an rng.

@dataclass(frozen=True)
class _Slot:
    name: str


@dataclass(frozen=True)
class _Alt:
    options: tuple[tuple, ...]  # each option a sequence of nodes


@dataclass(frozen=True)
class _Opt:
    body: tuple


@lru_cache(maxsize=4096)
def parse_template(text: str) -> tuple:
    """Parse ``<a|b>``, ``[x]`` and ``{slot}`` into a tree of nodes (cached per template).

    Raises:
        ValueError: on unbalanced brackets, naming the template.
    """
    nodes, pos = _parse_seq(text, 0, stop="")
    if pos != len(text):
        raise ValueError(f"unbalanced '{text[pos]}' at {pos} in report template {text!r}")
    return nodes


def _parse_seq(text: str, pos: int, stop: str) -> tuple[tuple, int]:
    nodes: list = []
    buf = ""
    while pos < len(text) and text[pos] not in stop:
        ch = text[pos]
        if ch in "<[{":
            if buf:
                nodes.append(buf)
                buf = ""
            if ch == "{":
                end = text.find("}", pos)
                if end < 0:
                    raise ValueError(f"unclosed '{{' in report template {text!r}")
                nodes.append(_Slot(text[pos + 1:end]))
                pos = end + 1
            elif ch == "[":
                body, pos = _parse_seq(text, pos + 1, stop="]")
                if pos >= len(text):
                    raise ValueError(f"unclosed '[' in report template {text!r}")
                nodes.append(_Opt(body))
                pos += 1
            else:
                options = []
                while True:
                    body, pos = _parse_seq(text, pos + 1, stop="|>")
                    if pos >= len(text):
                        raise ValueError(f"unclosed '<' in report template {text!r}")
                    options.append(body)
                    if text[pos] == ">":
                        break
                nodes.append(_Alt(tuple(options)))
                pos += 1
        elif ch in ">]}|":
            raise ValueError(f"unbalanced '{ch}' at {pos} in report template {text!r}")
        else:
            buf += ch
            pos += 1
    if buf:
        nodes.append(buf)
    return tuple(nodes), pos


def _capitalise(text: str) -> str:
    """Capitalise the first letter unless the first word already has capitals ("pLAD", "LAD")."""
    first = text.split(" ", 1)[0]
    if not text or any(c.isupper() for c in first) or first.startswith("hs-"):
        return text
    return text[0].upper() + text[1:]


class _Writer:
    """Expands grammar entries with one rng; slots come from a dict of values."""

    def __init__(self, grammar: dict, rng: np.random.Generator):
        self.g = grammar
        self.rng = rng

    def pick(self, options: Sequence[Any]) -> Any:
        if not options:
            raise ValueError("report grammar: empty list of alternatives")
        return options[int(self.rng.integers(len(options)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def expand(self, template: str, slots: dict[str, str] | None = None) -> str:
        out = self._expand(parse_template(template), slots or {})
        return _tidy(out)

    def say(self, key: str, slots: dict[str, str] | None = None) -> str:
        """One sentence from the grammar entry ``key`` (a list of templates, or a dotted path).

        A sentence that names a segment is redrawn (a few times) when it would end in a number
        ("... of segment 6."): a full stop after a digit reads as a decimal point to sentence
        splitters, which would merge it with the next sentence.
        """
        entry: Any = self.g
        for part in key.split("."):
            entry = entry[part]
        for _ in range(8):
            sentence = _capitalise(self.expand(self.pick(entry), slots))
            if not (slots and "seg" in slots and re.search(r"\d\.$", sentence)):
                break
        return sentence

    def _expand(self, nodes: tuple, slots: dict[str, str]) -> str:
        parts: list[str] = []
        for node in nodes:
            if isinstance(node, str):
                parts.append(node)
            elif isinstance(node, _Slot):
                parts.append(self._slot(node.name, slots))
            elif isinstance(node, _Opt):
                if self.chance(0.5):
                    parts.append(self._expand(node.body, slots))
            else:
                parts.append(self._expand(self.pick(node.options), slots))
        return "".join(parts)

    def _slot(self, name: str, slots: dict[str, str]) -> str:
        if name in slots:
            value = slots[name]
        elif name[:1].isupper() and name[:1].lower() + name[1:] in slots:
            value = _capitalise(slots[name[:1].lower() + name[1:]])
        else:
            raise ValueError(f"report grammar slot {{{name}}} has no value here; known: {sorted(slots)}")
        # A slot may hold a template itself (a grammar phrase chosen earlier): expand it now.
        return self._expand(parse_template(value), slots) if any(c in value for c in "<[{") else value


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,.;:)])", r"\1", text)
    text = re.sub(r",\s*,", ",", text)
    text = re.sub(r",\s*\.", ".", text)
    return _fix_articles(text.strip())


_VOWEL_NUMBER = re.compile(r"^(?:8|11|18|8\d|8\d\d)(?:\D|$)")


def _fix_articles(text: str) -> str:
    """'a' or 'an' by the sound of the next word ("an 18 mm stent", "an uncalcified plaque")."""
    def fix(m: re.Match) -> str:
        article, word = m.group(1), m.group(2)
        vowel = word[0].lower() in "aeiou" or bool(_VOWEL_NUMBER.match(word))
        new = ("an" if vowel else "a")
        return (new.capitalize() if article[0].isupper() else new) + " " + word
    return re.sub(r"\b([Aa]n?) (\w[\w.-]*)", fix, text)


@lru_cache(maxsize=1)
def load_grammar(path: Path = GRAMMAR_FILE) -> dict:
    """The report grammar (YAML), every template checked to parse."""
    grammar = yaml.safe_load(Path(path).read_text())
    for template in _all_strings(grammar):
        parse_template(template)
    return grammar


def _all_strings(node: Any):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _all_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _all_strings(value)


# --------------------------------------------------------------------------------------------
# Anatomy phrasing, all from tools.anatomy.

def _case(phrase: str) -> str:
    return " ".join(_CASING.get(w, w) for w in phrase.split())


def _maps_to(phrase: str, kind: str, key: str) -> bool:
    norm = re.sub(r"\s+", " ", re.sub(r"[^a-z0-9\- ]+", " ", phrase.lower())).strip()
    hit = SYNONYM_INDEX.get(norm)
    return hit is not None and hit[1] == key and (hit[0] == kind or kind == "artery" and hit[0] == "segment")


@lru_cache(maxsize=None)
def segment_phrasings(code: str) -> tuple[str, ...]:
    """Noun phrases (with article) that name segment ``code`` unambiguously, e.g. 'the proximal LAD'."""
    seg = SEGMENTS_BY_CODE[code]
    words = [seg.name, seg.code] + [s for s in seg.synonyms if not _UNWRITTEN.match(s)]
    phrases = []
    for word in dict.fromkeys(words):
        if word != seg.code and word == seg.code.lower():
            continue
        if _maps_to(word, "segment", code):
            # "the pLAD", "the first diagonal", but "diagonal 1" and "OM 1" without an article.
            article = "" if re.search(r" \d+$", word) else "the "
            phrases.append(article + (word if word == seg.code else _case(word)))
    phrases.append(f"segment {seg.number}")
    return tuple(phrases)


@lru_cache(maxsize=None)
def artery_phrasings(artery: str) -> tuple[str, ...]:
    """Noun phrases (with article) for a whole artery, e.g. 'the LAD', 'the right coronary artery'."""
    words = [ARTERY_NAMES[artery], *ARTERY_SYNONYMS[artery]]
    return tuple("the " + _case(w) for w in dict.fromkeys(words)
                 if not _UNWRITTEN.match(w) and w not in ("main stem",) and _maps_to(w, "artery", artery))


def _segment_slots(w: _Writer, seg: CoronarySegment) -> dict[str, str]:
    phrase = w.pick(segment_phrasings(seg.code))
    if phrase.startswith("the ") and w.chance(0.1):
        phrase = f"{phrase} (segment {seg.number})"
    head = _capitalise(phrase[4:] if phrase.startswith("the ") else phrase)
    return {"seg": phrase, "seg_head": head.split(" (")[0] + ":"}


def _short_artery(artery: str) -> str:
    return {"LM": "left main", "LAD": "LAD", "LCx": "LCx", "RCA": "RCA"}[artery]


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# --------------------------------------------------------------------------------------------
# Findings to sentences.

def grade_of(percent: float) -> tuple[str, int, int]:
    """Grading word and CAD-RADS band of a stenosis in (0, 100)."""
    for word, low, high in GRADES:
        if percent < high + 1:
            return word, low, high
    raise ValueError(f"no grading word for a stenosis of {percent}% (occlusions are described apart)")


def _stenosis_slots(w: _Writer, percent: float) -> dict[str, str]:
    word, low, high = grade_of(percent)
    shown = int(min(high, max(low, 5 * round(percent / 5))))  # rounded as reported, never across bands
    written = w.pick([f"{low}-{high}%", f"{low}-{high}%", f"{low} to {high}%"])
    return {"grade": word, "pct": str(shown), "range": written}


_PLAQUE_WORDS = {
    "calcified_plaque": ["calcified", "calcified", "densely calcified", "calcific"],
    "noncalcified_plaque": ["non-calcified", "non-calcified", "noncalcified", "soft", "uncalcified"],
    "mixed_plaque": ["mixed", "mixed", "partially calcified", "partly calcified", "mixed calcified and non-calcified"],
}
_SUMMARY_KIND = {"calcified": "calcified_plaque", "noncalcified": "noncalcified_plaque", "mixed": "mixed_plaque"}


def _plaque_slots(w: _Writer, kind: str, hrp: bool) -> dict[str, str]:
    words = _PLAQUE_WORDS[kind] + (["low-attenuation"] if hrp and kind == "noncalcified_plaque" else [])
    adj = w.pick(words)
    noun = w.pick(["plaque", "plaque", "plaque", "atherosclerotic plaque"])
    a_plaque = w.pick([f"a {adj} {noun}", f"{adj} {noun}"])
    return {"plaque": adj, "a_plaque": a_plaque}


def _stent_dims(w: _Writer, f: Finding) -> str:
    length = f"{f.length_mm:.0f}"
    if f.stent_diameter_mm is not None and w.chance(0.8):
        return f"{f.stent_diameter_mm:.1f} x {length} mm"
    return w.pick([f"{length} mm", f"{length} mm", ""])


def _finding_sentences(w: _Writer, f: Finding, findings: Findings, hrp: bool) -> list[str]:
    """One sentence describing ``f`` (its segment named), sometimes followed by a vessel-free hedge."""
    seg = SEGMENTS_BY_CODE[f.segment]
    slots = _segment_slots(w, seg)
    slots["length"] = w.expand(w.pick(w.g["length"]), {"mm": f"{f.length_mm:.0f}"})
    hedge: list[str] = []
    if f.kind == "stent":
        slots["stent_dims"] = _stent_dims(w, f)
        isr_percent = f.stenosis_percent
        if isr_percent >= 100:
            sentence = w.say("stent_occluded", slots)
        elif f.in_stent_restenosis or isr_percent > 0:
            sten = _stenosis_slots(w, max(isr_percent, 1.0))
            form = w.pick(w.g["isr"] if isr_percent > 0 else [t for t in w.g["isr"] if "{" + "grade}" in t
                                                                and "{range}" not in t and "{pct}" not in t])
            slots["isr"] = w.expand(form, sten)
            sentence = w.say("stent_restenosis", slots)
        else:
            sentence = w.say("stent", slots)
            if w.chance(0.15):
                hedge.append(w.say("stent_hedge"))
        if f.has_calcium:
            sentence = sentence[:-1] + w.pick(w.g["stent_calcium"]) + "."
        return [sentence, *hedge]
    if f.kind == "occlusion":
        plaque_kind = _occlusion_plaque(f, findings)
        calcium = f.has_calcium and plaque_kind not in ("calcified_plaque", "mixed_plaque")
        slots["calcium"] = w.pick(w.g["calcium_with_occlusion"]) if calcium else ""
        if plaque_kind:
            slots.update(_plaque_slots(w, plaque_kind, hrp))
            sentence = w.say("occlusion_plaque", slots)
        else:
            sentence = w.say("occlusion", slots)
        if w.chance(0.3):
            hedge.append(w.say("occlusion_hedge"))
        return [sentence, *hedge]
    slots.update(_plaque_slots(w, f.kind, hrp))
    if f.stenosis_percent <= 0:
        return [w.say("plaque_minimal", slots)]
    slots["sten"] = w.expand(w.pick(w.g["stenosis"]), _stenosis_slots(w, f.stenosis_percent))
    sentence = w.say("plaque", slots)
    if f.stenosis_percent >= 50 and f.kind != "noncalcified_plaque" and w.chance(0.2):
        hedge.append(w.say("calcium_hedge"))
    elif 50 <= f.stenosis_percent < 70 and w.chance(0.2):
        hedge.append(w.say("moderate_hedge"))
    return [sentence, *hedge]


def _occlusion_plaque(f: Finding, findings: Findings) -> str | None:
    """The plaque kind to name with an occlusion: its segment's summary type, unless another finding
    on the segment already describes a plaque (then the occlusion sentence names none)."""
    if any(o.segment == f.segment and o.kind in _PLAQUE_WORDS for o in findings.findings):
        return None
    summary = next((s for s in findings.segments if s.segment == f.segment), None)
    if summary is None or summary.plaque_type == "none":
        return None
    return _SUMMARY_KIND[summary.plaque_type]


# --------------------------------------------------------------------------------------------
# Sections.

@dataclass
class _Case:
    findings: Findings
    clinical: ClinicalContext
    dominance: str
    calcium_score: float | None

    def segment_findings(self, code: str) -> list[Finding]:
        return [f for f in self.findings.findings if f.segment == code]

    def segment_clean(self, code: str) -> bool:
        """Nothing was placed on the segment: no finding, and a clean summary if there is one."""
        if self.segment_findings(code):
            return False
        s = next((s for s in self.findings.segments if s.segment == code), None)
        return s is None or not (s.plaque_type != "none" or s.calcium or s.stent or s.occluded
                                 or s.max_stenosis_percent > 0)

    def segment_present(self, code: str) -> bool:
        s = next((s for s in self.findings.segments if s.segment == code), None)
        return s.present if s is not None else True

    def artery_clean(self, artery: str) -> bool:
        return all(self.segment_clean(s.code) for s in segments_of_artery(artery))

    def calcified_arteries(self) -> list[str]:
        hit = {SEGMENTS_BY_CODE[f.segment].artery for f in self.findings.findings if f.has_calcium}
        hit |= {SEGMENTS_BY_CODE[s.segment].artery for s in self.findings.segments if s.calcium}
        return [a for a in ARTERIES if a in hit]

    @property
    def hrp(self) -> bool:
        return "HRP" in self.findings.cad_rads.upper().split("/")


def _indication(w: _Writer, case: _Case) -> list[str]:
    c = case.clinical
    elevated = mildly = None
    if c.troponin_value is not None and c.troponin_unit:
        result = interpret_troponin(c.troponin_value, c.troponin_unit, c.sex, c.troponin_assay)
        elevated, mildly = result.above_url, result.times_url < 3
    stented = any(f.kind == "stent" for f in case.findings.findings)
    kind = "follow_up" if stented and w.chance(0.6) else ("acute" if elevated else "stable")
    slots = {"age": str(c.age), "man": "man" if c.sex == "male" else "woman", "male": c.sex,
             "presentation": w.pick(w.g["indication"]["presentation"][kind])}
    out = [w.say("indication.sentence", slots)]
    risks = _risk_factors(w, c, stented)
    if risks:
        out.append(w.say("indication.risk_factors", {"risk_list": _join(risks)}))
    elif w.chance(0.5):
        out.append(w.say("indication.no_risk_factors"))
    if elevated is not None:
        value = f"{c.troponin_value:g}"
        trend_key = ("trend_mildly_elevated" if mildly else "trend_elevated") if elevated else "trend_normal"
        trend = w.pick(w.g["indication"][trend_key])
        assay = c.troponin_assay or "hs-cTnI"
        out.append(w.say("indication.troponin", {"value": value, "unit": c.troponin_unit, "trend": trend,
                                                 "assay": assay}))
    return out


def _risk_factors(w: _Writer, c: ClinicalContext, stented: bool) -> list[str]:
    """One phrase per risk factor the patient has, in random order."""
    has = {"hypertension": c.hypertension_treatment, "diabetes": c.diabetes, "lipid_lowering": c.lipid_lowering,
           "high_cholesterol": not c.lipid_lowering and c.total_cholesterol_mg_dl >= 240, "smoker": c.smoker,
           "family_history": c.family_history_mi, "prior_pci": stented}
    words = w.g["indication"]["risk_words"]
    items = [w.expand(w.pick(words[k]), {"chol": f"{c.total_cholesterol_mg_dl:.0f}"}) for k, v in has.items() if v]
    return [items[i] for i in w.rng.permutation(len(items))]


def _technique(w: _Writer, case: _Case) -> list[str]:
    """One acquisition sentence (naming the calcium-scoring series only when a score exists), then
    a random subset of contrast, heart rate, reconstruction, quality and dose, in that order."""
    t = w.g["technique"]
    slots = {"gating": w.pick(w.g["gating"]), "slices": str(w.pick([64, 128, 256, 320])),
             "kv": str(w.pick([80, 100, 120])), "contrast": str(int(w.rng.integers(50, 91))),
             "rate": w.pick(["4.5", "5", "5.5", "6"]), "hr": str(int(w.rng.integers(50, 73))),
             "beta": w.pick(["25", "50"]), "thickness": w.pick(["0.5", "0.6", "0.625", "0.75"]),
             "phase": w.pick(["40", "70", "75"]), "dlp": str(int(w.rng.integers(80, 600)))}
    with_cac = case.calcium_score is not None and w.chance(0.6)
    out = [w.say("technique.acquisition_with_cac" if with_cac else "technique.acquisition", slots)]
    for group in ("contrast", "heart_rate", "reconstruction", "quality", "dose"):
        if w.chance(0.5):
            out.append(w.say(f"technique.{group}", slots))
    return out


def _coronaries(w: _Writer, case: _Case) -> list[str]:
    """Paragraphs (lines) of the coronary section: dominance, origins, then per vessel."""
    lines: list[str] = []
    intro = [w.say(f"dominance.{case.dominance}")]
    if w.chance(0.6):
        intro.append(w.say("origins"))
    if case.findings.segments and w.chance(0.4) and case.segment_clean("RI"):
        intro.append(w.say("ramus_present" if case.segment_present("RI") else "ramus_absent"))
    lines.append(" ".join(w.rng.permutation(intro).tolist() if len(intro) > 1 else intro))
    headed = w.chance(0.5)
    clean = [a for a in ARTERIES if case.artery_clean(a)]
    grouped = not headed and len(clean) >= 2 and w.chance(0.35)
    for artery in ARTERIES:
        if grouped and artery in clean:
            continue
        sentences = _vessel_sentences(w, case, artery)
        lines.append((w.pick(w.g["vessel_headings"][artery]) + "\n" if headed else "") + " ".join(sentences))
    if grouped:
        arts = [_short_artery(a) for a in clean]
        lines.append(w.say("clean_arteries", {"arts": "the " + _join(arts)}))
    return lines


def _vessel_sentences(w: _Writer, case: _Case, artery: str) -> list[str]:
    if case.artery_clean(artery):
        if artery == "LM" and w.chance(0.5):
            return [w.say("clean_artery_lm")]
        art = w.pick(artery_phrasings(artery))
        head = _capitalise(art[4:]) + ":"
        return [w.say("clean_artery", {"art": art, "art_head": head})]
    order = {s.code: i for i, s in enumerate(CORONARY_SEGMENTS)}
    main = MAIN_VESSEL_PATHS[artery]
    codes = sorted({f.segment for f in case.findings.findings if SEGMENTS_BY_CODE[f.segment].artery == artery},
                   key=lambda c: (c not in main, order[c]))
    out: list[str] = []
    for code in codes:
        for f in case.segment_findings(code):
            out.extend(_finding_sentences(w, f, case.findings, case.hrp))
    clean_main = [c for c in main if case.segment_clean(c) and case.segment_present(c)]
    if clean_main and w.chance(0.4):
        phrases = [w.pick(segment_phrasings(c)) for c in clean_main]
        out.append(w.say("clean_segments", {"segs": _join(phrases), "be": "is" if len(phrases) == 1 else "are"}))
    elif w.chance(0.2) and all(case.segment_clean(s.code) for s in segments_of_artery(artery)
                               if s.code not in codes):
        out.append(w.say("rest_clean"))
    return out


def _calcium(w: _Writer, case: _Case) -> list[str]:
    arteries = case.calcified_arteries()
    if case.calcium_score is not None:
        drs = cac_drs(case.calcium_score).category
        if case.calcium_score > 0 and arteries:
            drs += f"/N{len(arteries)}"
        return [w.say("calcium_score", {"score": f"{case.calcium_score:.0f}", "drs": drs})]
    if arteries:
        names = [_short_artery(a) for a in arteries]
        return [w.say("calcium_present", {"arteries": _join(names)})]
    return [w.say("calcium_absent")]


def _cardiac(w: _Writer, case: _Case) -> list[str]:
    count = int(w.rng.integers(1, 4))
    chosen = sorted(w.rng.choice(len(w.g["cardiac"]), size=count, replace=False))
    out = [_capitalise(w.expand(w.g["cardiac"][i])) for i in chosen]
    for structure in case.findings.extracoronary_calcium:
        out.append(w.say("valve_calcium", {"structure": structure}))
    if not case.findings.extracoronary_calcium and w.chance(0.4):
        out.append(w.say("no_valve_calcium"))
    return out


def _extracardiac(w: _Writer) -> list[str]:
    chosen = sorted(w.rng.choice(len(w.g["extracardiac"]), size=int(w.rng.integers(1, 3)), replace=False))
    return [_capitalise(w.expand(w.g["extracardiac"][i])) for i in chosen]


def _impression(w: _Writer, case: _Case) -> list[str]:
    out: list[str] = []
    findings = sorted(case.findings.findings, key=lambda f: -f.stenosis_percent)
    key_findings = [f for f in findings if f.kind == "stent" or f.stenosis_percent >= 50][:3]
    for f in key_findings:
        slots = _segment_slots(w, SEGMENTS_BY_CODE[f.segment])
        if f.kind == "stent":
            if f.stenosis_percent >= 100:
                out.append(w.say("impression_occlusion", slots))
            elif f.in_stent_restenosis or f.stenosis_percent > 0:
                slots.update(_stenosis_slots(w, max(f.stenosis_percent, 1.0)))
                out.append(w.say("impression_isr", slots))
            else:
                out.append(w.say("impression_stent", slots))
        elif f.stenosis_percent >= 100:
            out.append(w.say("impression_occlusion", slots))
        else:
            slots.update(_stenosis_slots(w, f.stenosis_percent))
            out.append(w.say("impression_severe", slots))
    rest = [f for f in findings if f not in key_findings and f.kind != "stent"]
    if not findings:
        out.append(w.say("impression_normal"))
    elif not key_findings:
        category = case.findings.cad_rads.split("/")[0].strip()
        out.append(w.say(f"impression_nonobstructive.{category if category in ('1', '2') else 'default'}"))
    elif rest and all(f.stenosis_percent < 50 for f in rest) and w.chance(0.6):
        out.append(w.say("impression_elsewhere"))
    out.append(w.say("cadrads", {"cadrads": case.findings.cad_rads}))
    category = case.findings.cad_rads.split("/")[0].strip().upper()
    management = w.g["management"].get(category)
    if management:
        out.append(_capitalise(w.expand(w.pick(management))))
    if any(f.kind == "stent" for f in findings) and w.chance(0.4):
        out.append(w.say("management_stent"))
    return out


# --------------------------------------------------------------------------------------------
# Public API.

def write_report(findings: Findings, clinical: ClinicalContext, *, dominance: str,
                 rng: np.random.Generator | random.Random, calcium_score: float | None = None) -> str:
    """A free-text CCTA report of a phantom, in one of many radiologist styles.

    Args:
        findings: the ground truth; every finding is described (segment, kind, severity) and only
            vessels and segments without findings are negated. ``findings.cad_rads`` is reported
            as given.
        clinical: the patient (age, sex, risk factors, hs-cTnI) for the indication section.
        dominance: "right", "left" or "codominant".
        rng: numpy random generator (a ``random.Random`` is accepted and turned into one by drawing
            a seed from it); the same state gives the same report.
        calcium_score: Agatston score when a calcium-scoring series exists; without it the report
            says which arteries are calcified, with no number.

    Raises:
        ValueError: on an unknown dominance, a negative calcium score, or arguments of the wrong type.
    """
    if not isinstance(findings, Findings):
        raise ValueError(f"findings must be a tools.case_format.Findings, got {type(findings).__name__}")
    if not isinstance(clinical, ClinicalContext):
        raise ValueError(f"clinical must be a tools.case_format.ClinicalContext, got {type(clinical).__name__}")
    if dominance not in DOMINANCES:
        raise ValueError(f"dominance must be one of {', '.join(DOMINANCES)}, got {dominance!r}")
    if calcium_score is not None and not calcium_score >= 0:
        raise ValueError(f"calcium score must be >= 0 (Agatston), got {calcium_score}")
    w = _Writer(load_grammar(), as_generator(rng))
    case = _Case(findings, clinical, dominance, calcium_score)

    sub = {"coronaries": _coronaries(w, case), "calcium": _calcium(w, case), "cardiac": _cardiac(w, case),
           "extracardiac": _extracardiac(w)}
    body = {"indication": _indication(w, case), "technique": _technique(w, case), "impression": _impression(w, case)}
    headings = {k: w.pick(v) for k, v in w.g["headings"].items()}
    numbered = w.chance(0.3)

    blocks: list[str] = []
    for section in w.pick(w.g["section_orders"]):
        if section == "findings":
            parts = []
            for name in w.pick(w.g["findings_orders"]):
                lines = sub[name]
                text = "\n".join(lines) if name == "coronaries" else " ".join(lines)
                parts.append(f"{headings[name]}\n{text}")
            blocks.append(headings["findings"] + "\n" + "\n\n".join(parts))
        elif section == "impression" and numbered:
            items = "\n".join(f"{i}. {s}" for i, s in enumerate(body[section], 1))
            blocks.append(f"{headings[section]}\n{items}")
        else:
            blocks.append(f"{headings[section]}\n{' '.join(body[section])}")
    return "\n\n".join(blocks) + "\n"


# --------------------------------------------------------------------------------------------
# Measuring variety: a sentence abstracted to its shape.

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
            elif isinstance(node, _Opt):
                options = ["", *walk(node.body)]
            elif isinstance(node, _Alt):
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
    out = []
    for line in report.splitlines():
        line = re.sub(r"^\d+\.\s+", "", line.strip())
        if not line or (line.endswith(":") and len(line.split()) <= 6):
            continue
        out.extend(s.strip() for s in re.split(r"(?<=[a-z%)A-Z0-9])\.(?=\s|$)", line) if s.strip())
    return out


def distinct_shapes(reports: Sequence[str]) -> set[str]:
    """Distinct sentence shapes over ``reports`` (see :func:`sentence_shape`)."""
    return {sentence_shape(s) for r in reports for s in report_sentences(r)}


__all__ = ["GRAMMAR_FILE", "GRADES", "artery_phrasings", "distinct_shapes", "grade_of",
           "load_grammar", "parse_template", "report_sentences", "segment_phrasings", "sentence_shape",
           "write_report"]
