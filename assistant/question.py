"""Understanding a clinician's question: intent, anatomy and numbers with units.

The embedded planner reads questions with this parser; it relies on the anatomy registry for every
vessel name and resolves follow-ups ("and the RCA?", "what about a 24 mm one?") against the
previous question of the same session.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

from tools.anatomy import SEGMENTS_BY_CODE, STRUCTURES_BY_NAME, find_anatomy

Intent = Literal[
    "stent_coverage", "calcium_score", "stenosis", "segment", "presence", "risk", "reports",
    "study_info", "patient_identity", "unknown",
]

FindingWord = Literal["calcification", "plaque", "stent", "occlusion", "stenosis", "lesion"]


YES_NO_INTENTS = ("stent_coverage", "presence", "risk", "stenosis", "calcium_score")


class ParsedQuestion(BaseModel):
    text: str
    intent: Intent
    segment: str | None = Field(None, description="SCCT segment code named in the question")
    artery: str | None = Field(None, description="artery (LM, LAD, LCx, RCA) named without a segment")
    structure: str | None = Field(None, description="non-coronary structure named, e.g. 'aorta'")
    finding: FindingWord | None = None
    stent_length_mm: float | None = None
    stent_diameter_mm: float | None = None
    troponin_value: float | None = None
    troponin_unit: str | None = None
    superlative: Literal["most_calcified", "most_stenosed"] | None = None
    stenosis_threshold_percent: float | None = Field(
        None, description="the stenosis a yes/no question asks about: 50 for 'significant', 70 for 'severe'")
    stent_status: Literal["patency", "restenosis"] | None = Field(
        None, description="a question on the state of a stent: is it patent, is there in-stent restenosis")
    is_yes_no: bool = False
    follow_up: bool = Field(False, description="completed from the previous question")


_NUMBER = r"(\d+(?:[.,]\d+)?)"
_STENT_LENGTH = re.compile(_NUMBER + r"\s*-?\s*mm\b(?=[^.?!]*\b(?:stent|one|long)\b)|(?<=stent of )" + _NUMBER
                           + r"\s*mm", re.I)
_LENGTH_X_DIAMETER = re.compile(_NUMBER + r"\s*(?:mm)?\s*[x×]\s*" + _NUMBER + r"\s*mm", re.I)
_DIAMETER = re.compile(_NUMBER + r"\s*mm\s*(?:diameter|wide)|diameter\s*(?:of\s*)?" + _NUMBER + r"\s*mm", re.I)
_TROPONIN = re.compile(r"(?:hs-?)?(?:c?tn-?i|troponin(?:[- ]?i)?)\s*(?:of|was|is|=|:|at)?\s*" + _NUMBER
                       + r"\s*(pg/ml|ng/l|ng/ml)", re.I)
_YES_NO_START = re.compile(r"^\s*(is|are|does|do|will|would|can|could|should|has|have|was|were|did|any)\b"
                           r"(?!\s+(you|u)\b)", re.I)  # "can you segment ..." is a request, not a yes/no question

_INTENT_PATTERNS: list[tuple[Intent, re.Pattern]] = [
    # First: a question after who the patient is gets the de-identification answer, never a tool call.
    ("patient_identity", re.compile(r"\b(?:patient'?s?|his|her|their)\s+(?:full\s+)?(?:name|identity|address|"
                                    r"date of birth|birth ?date|dob|mrn|medical record number|phone|insurance)\b|"
                                    r"\bwho is (?:the|this) patient\b|\bname of (?:the|this) patient\b|"
                                    r"\b(?:date of birth|medical record number|mrn)\b", re.I)),
    ("stent_coverage", re.compile(r"\bstent\b.*\b(cover|long enough|enough|fit|land|suffic)|"
                                  r"\b(cover|covers|covering)\b.*\bstent\b|\bwhich stent\b|\bstent (length|size)\b",
                                  re.I)),
    ("risk", re.compile(r"\bmace\b|\brisk\b|\bprognos|\bevent\b|\bheart attack\b|\bmyocardial infarction\b|"
                        r"\btroponin\b|\bmesa\b", re.I)),
    ("reports", re.compile(r"\b(prior|previous|earlier|old)\b.*\breports?\b|\breports?\b.*\b(prior|previous|similar)\b|"
                           r"\bsimilar (cases|patients|studies)\b|\bsearch (the )?reports\b", re.I)),
    ("calcium_score", re.compile(r"\bcalcium score\b|\bagatston\b|\bcac\b|\bcac-drs\b|\bcalcium burden\b|"
                                 r"\bhow much calcium\b|\bcalcium volume\b|\bmass score\b|\bcoronary calcium\b", re.I)),
    ("segment", re.compile(r"\b(segment|outline|delineate|contour|mask|highlight|show me|draw)\b", re.I)),
    ("stenosis", re.compile(r"\bstenos[ie]s\b|\bnarrow|\bhow (severe|tight|bad)\b|\bcad-?rads\b|\blesion length\b|"
                            r"\blength of the .*lesion\b|\bhow long is\b|\bminimal lumen\b|\bmld\b|\bdegree of\b|"
                            r"\bobstruct|\bblock", re.I)),
    ("study_info", re.compile(r"\b(what|which) (study|series|scan)\b|\bstudy (info|information|details|summary)\b|"
                              r"\bslice thickness\b|\bspacing\b|\bmodality\b|\bwhat is loaded\b", re.I)),
]

_FINDING_PATTERNS: list[tuple[FindingWord, re.Pattern]] = [
    ("stent", re.compile(r"\bstent", re.I)),
    ("occlusion", re.compile(r"\bocclu|\bcto\b|\btotally blocked\b", re.I)),
    ("calcification", re.compile(r"\bcalci|\bcalcium\b|\bca\b", re.I)),
    ("plaque", re.compile(r"\bplaque", re.I)),
    ("stenosis", re.compile(r"\bstenos|\bnarrow", re.I)),
    ("lesion", re.compile(r"\blesion", re.I)),
]

_REFERS_BACK = re.compile(r"\b(?:it|its|(?:that|this|the same) (?:lesion|stenosis|one|segment|vessel|artery|plaque))\b",
                          re.I)
_FOLLOW_UP = re.compile(r"^\s*(and|what about|how about|same for|and for|also|what of)\b|^\s*(the )?"
                        r"(lad|rca|lcx|lm|left main|circumflex|right coronary)\s*\??\s*$", re.I)


def _number(text: str) -> float:
    return float(text.replace(",", "."))


def _first_group(match: re.Match) -> str:
    return next(g for g in match.groups() if g is not None)


def parse_question(text: str, previous: ParsedQuestion | None = None) -> ParsedQuestion:
    """Intent, anatomy and numbers of one question; a follow-up inherits what it leaves out.

    Examples::

        >>> q = parse_question("Will a 20 mm stent fully cover the proximal LAD lesion?")
        >>> q.intent, q.segment, q.stent_length_mm, q.is_yes_no
        ('stent_coverage', 'pLAD', 20.0, True)
        >>> parse_question("what about a 24 mm one?", previous=q).segment
        'pLAD'
    """
    if not text or not text.strip():
        raise ValueError("the question is empty")
    clean = " ".join(text.split())

    intent: Intent = "unknown"
    for name, pattern in _INTENT_PATTERNS:
        if pattern.search(clean):
            intent = name
            break

    segment = artery = structure = None
    for kind, key, _phrase in find_anatomy(clean):
        if kind == "segment" and segment is None:
            segment = key
        elif kind == "artery" and artery is None and segment is None:
            artery = key
        elif kind == "structure" and structure is None and STRUCTURES_BY_NAME[key].group != "finding":
            structure = key
    if segment is not None:
        artery = None

    finding = next((name for name, pattern in _FINDING_PATTERNS if pattern.search(clean)), None)
    superlative = None
    if re.search(r"\bmost (heavily )?calcif", clean, re.I):
        superlative, finding = "most_calcified", "calcification"
    elif re.search(r"\b(most|worst|tightest) (severe(ly)? )?(stenos|narrow|diseased)", clean, re.I):
        superlative = "most_stenosed"

    threshold = None
    if re.search(r"\b(severe|critical|tight|high[- ]grade)\b", clean, re.I):
        threshold = 70.0  # CAD-RADS 4A
    elif re.search(r"\b(significant|obstructive|flow[- ]limiting|ha?emodynamic|relevant)\b", clean, re.I):
        threshold = 50.0  # obstructive by CT, CAD-RADS 3 or more

    stent_status = None
    if re.search(r"\brestenos|\bISR\b|\bin-?stent (stenosis|narrowing|occlusion)", clean, re.I):
        stent_status, finding = "restenosis", "stent"
    elif re.search(r"\bpatent\b|\bpatency\b|\bopen\b", clean, re.I) and finding == "stent":
        stent_status = "patency"

    stent_length = stent_diameter = None
    if m := _LENGTH_X_DIAMETER.search(clean):
        # "3.0 x 20 mm": the larger number is the length.
        a, b = _number(m.group(1)), _number(m.group(2))
        stent_length, stent_diameter = max(a, b), min(a, b)
    elif m := _STENT_LENGTH.search(clean):
        stent_length = _number(_first_group(m))
    if m := _DIAMETER.search(clean):
        stent_diameter = _number(_first_group(m))

    troponin_value = troponin_unit = None
    if m := _TROPONIN.search(clean):
        troponin_value = _number(m.group(1))
        troponin_unit = {"pg/ml": "pg/mL", "ng/l": "ng/L", "ng/ml": "ng/mL"}[m.group(2).lower()]

    if stent_status and intent in ("unknown", "stenosis", "stent_coverage"):
        intent = "presence"
    if intent in ("unknown", "stenosis") and finding in ("calcification", "plaque", "stent", "occlusion") \
            and _YES_NO_START.match(clean):
        intent = "presence"
    if intent == "unknown" and finding in ("stenosis", "lesion", "occlusion") and (segment or artery):
        intent = "stenosis"
    if intent == "unknown" and superlative == "most_calcified":
        intent = "segment"

    parsed = ParsedQuestion(
        text=clean, intent=intent, segment=segment, artery=artery, structure=structure, finding=finding,
        stent_length_mm=stent_length, stent_diameter_mm=stent_diameter, troponin_value=troponin_value,
        troponin_unit=troponin_unit, superlative=superlative, stent_status=stent_status,
        stenosis_threshold_percent=threshold,
        is_yes_no=bool(_YES_NO_START.match(clean)) and intent in YES_NO_INTENTS,
    )
    return _resolve_follow_up(parsed, previous)


def _resolve_follow_up(q: ParsedQuestion, previous: ParsedQuestion | None) -> ParsedQuestion:
    """Fill what a short follow-up leaves out from the previous question of the session."""
    if previous is None or previous.intent == "unknown":
        return q
    short = len(q.text.split()) <= 8
    # A short question with no intent of its own is a follow-up only when it brings something the
    # previous one can use (anatomy, a finding, a number): "banana rocket?" stays unknown.
    brings = any((q.segment, q.artery, q.structure, q.finding, q.stent_length_mm, q.stent_diameter_mm,
                  q.troponin_value))
    # "Will a 20 mm stent cover it?" after a question on the pLAD lesion: its own intent, the anatomy
    # of the previous question.
    refers_back = not (q.segment or q.artery or q.structure) and bool(_REFERS_BACK.search(q.text))
    looks_follow_up = bool(_FOLLOW_UP.search(q.text)) or (short and q.intent == "unknown" and brings) or refers_back
    if not looks_follow_up:
        return q
    update: dict = {"follow_up": True}
    if q.intent == "unknown":
        update["intent"] = previous.intent
        update["is_yes_no"] = previous.is_yes_no
        update["finding"] = q.finding or previous.finding
    named_anatomy = q.segment or q.artery or q.structure
    if not named_anatomy:
        update.update(segment=previous.segment, artery=previous.artery, structure=previous.structure)
    elif q.artery and previous.segment and q.segment is None:
        # "and the RCA?" after a question on the proximal LAD: the same position on the other artery.
        update["segment"] = _same_position_segment(previous.segment, q.artery)
        if update["segment"]:
            update["artery"] = None
    for name in ("stent_length_mm", "stent_diameter_mm", "troponin_value", "troponin_unit", "superlative",
                 "stent_status", "stenosis_threshold_percent"):
        if getattr(q, name) is None:
            update[name] = getattr(previous, name)
    return q.model_copy(update=update)


def _same_position_segment(segment: str, artery: str) -> str | None:
    """pLAD + RCA -> pRCA; returns None when the artery has no segment at that position."""
    prefix = segment[0] if segment[0] in "pmd" and segment[1:2].isupper() else None
    if prefix is None:
        return None
    candidates = {"LAD": "LAD", "RCA": "RCA", "LCx": "LCx" if prefix == "d" else "Cx"}
    if artery not in candidates:
        return None
    code = prefix + candidates[artery]
    return code if code in SEGMENTS_BY_CODE else None
