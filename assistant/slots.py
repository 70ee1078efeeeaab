"""Rule-based slot extractors: numbers with units, devices, troponin, sex, landmarks, anatomy.

Intent is read by meaning (:mod:`cardiovlm.assistant.intents`); the values a tool needs are read here by
rules, because a number and its unit must be exact: "2 cm", "20 millimetres" and "20mm" are all
20 mm, "3.0 x 20" is a diameter and a length, "18-22 mm" is a range, and a negative length is
refused with :class:`QuestionValueError` instead of being passed to a tool. Anatomy comes from the
registry (:func:`cardiovlm.tools.core.anatomy.find_anatomy`), never from a list of our own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from cardiovlm.tools.core.anatomy import (
    ARTERIES,
    LANDMARKS,
    MAIN_VESSEL_PATHS,
    SEGMENT_PARENT,
    SEGMENTS_BY_CODE,
    STRUCTURES_BY_NAME,
    SYNONYM_INDEX,
    find_anatomy,
)
from cardiovlm.tools.core.errors import CardioVLMError
from cardiovlm.tools.quant.troponin import TroponinMarkerError, check_marker

Sex = Literal["male", "female"]
Device = Literal["DES", "BMS", "scaffold"]


class QuestionValueError(CardioVLMError):
    """A number in the question cannot be a measurement (negative length, troponin without meaning)."""

    code = "question_value"


# Stent diameters are 2.0-5.0 mm and lengths 8-48 mm: a bare "3.5 mm stent" is a diameter.
MAX_STENT_DIAMETER_MM = 6.0

_NUM = r"(\d+(?:[.,]\d+)?)"
_LENGTH_UNIT = r"(mm|millimet(?:er|re)s?|cm|centimet(?:er|re)s?)\b"
_UNIT_TO_MM = {"mm": 1.0, "cm": 10.0}
_NEGATIVE = re.compile(r"(?:(?<![\w.])[-−–]\s*|\bminus\s+)" + _NUM + r"\s*-?\s*" + _LENGTH_UNIT, re.I)
_RANGE = re.compile(r"(?:between\s+)?" + _NUM + r"\s*(?:mm|cm)?\s*(?:-|–|to|and|or)\s*" + _NUM + r"\s*-?\s*"
                    + _LENGTH_UNIT, re.I)
_BY = re.compile(_NUM + r"\s*(?:mm|cm)?\s*(?:x|×|by|\*|/)\s*" + _NUM + r"\s*-?\s*(?:" + _LENGTH_UNIT + r")?", re.I)
_LENGTH = re.compile(_NUM + r"\s*-?\s*" + _LENGTH_UNIT, re.I)
_STENT_NOUN = r"(?:stents?|one|ones|des|bms|device|scaffold|drug[- ]eluting|bare[- ]metal|long|length)"
# "a 3.0 DES", "3.5 stent": a decimal without a unit before the device is its diameter (an integer
# there may be a count: "2 stents").
_BARE_DIAMETER = re.compile(r"(?<![\w.,])(\d[.,]\d{1,2})\s*(?=(?:des|bms|stents?|scaffold|drug[- ]?eluting|bare[- ]?metal)\b)",  # noqa: E501
                            re.I)
_DIAMETER_WORD = re.compile(r"\b(diameter|wide|calibre|caliber|across)\b", re.I)

_TROPONIN_WORD = re.compile(r"\b(?:hs[- ]?)?(?:c?tn[- ]?[it]|troponin(?:[- ]?[it])?|trop)\b", re.I)
_TROPONIN_T = re.compile(r"\b(?:hs[- ]?)?(?:c?tn[- ]?t|troponin[- ]?t)\b", re.I)
_TROPONIN_UNIT = (r"(pg\s*/\s*ml|ng\s*/\s*l|ng\s*/\s*ml|pg\s+per\s+ml|ng\s+per\s+l(?:it(?:er|re))?|"
                  r"ng\s+per\s+ml|nanograms?\s+per\s+lit(?:er|re)|picograms?\s+per\s+millilit(?:er|re))")
_TROPONIN_VALUE = re.compile(_NUM + r"\s*" + _TROPONIN_UNIT, re.I)
_BARE_NUMBER = re.compile(r"(?<![\w.])" + _NUM + r"(?![\w.]*\s*(?:%|mm|cm|years?|y/?o|yo|au|hu))", re.I)

_DEVICE: list[tuple[Device, re.Pattern]] = [("DES", re.compile(r"\bdes\b|\bdrug[- ]?eluting\b", re.I)),
           ("BMS", re.compile(r"\bbms\b|\bbare[- ]?metal\b", re.I)),
           ("scaffold", re.compile(r"\b(?:bioresorbable\s+)?scaffold\b|\bbvs\b", re.I))]

# Only a statement of sex is one: a noun ("female", "a man"), an age-sex shorthand ("54F", "62 yo M") or
# "sex: F". A pronoun ("his LAD", "her troponin") or a title ("Mr Smith") only refers to the patient: a
# clinician writes "he" of a patient whose sex the tools may know otherwise, and a troponin read against
# the wrong sex-specific limit would be a wrong verdict, where "sex unknown" compares with both.
_FEMALE = re.compile(r"\b(female|woman|women|lady|girl)\b|\b\d{1,3}\s?(?:y/?o\s?|-?year-?old\s?)?f\b|"
                     r"\b(?:sex|gender)\s*[:=]?\s*f\b", re.I)
_MALE = re.compile(r"\b(male|man|men|gentleman|boy)\b|\b\d{1,3}\s?(?:y/?o\s?|-?year-?old\s?)?m\b|"
                   r"\b(?:sex|gender)\s*[:=]?\s*m\b", re.I)
_NUMBER_WORDS = {w: n for n, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_NUMBER_WORDS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60})
_SPELLED = re.compile(r"\b(" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")(?:[- ](one|two|three|four|"
                      r"five|six|seven|eight|nine))?\b(?=\s*-?\s*(?:mm|millimet|cm|centimet|ng|pg))", re.I)


def spelled_numbers(text: str) -> str:
    """'twelve millimetre' -> '12 millimetre', 'twenty-four mm' -> '24 mm' (only before a unit)."""
    def value(m: re.Match) -> str:
        n = _NUMBER_WORDS[m.group(1).lower()] + (_NUMBER_WORDS[m.group(2).lower()] if m.group(2) else 0)
        return str(n)
    return _SPELLED.sub(value, text)

# Landmark phrases -> registry landmark key. Lesion ends come from the measured lesion, the rest from
# the VLM's landmark head.
LESION_LANDMARKS = {"lesion_start": "start of the lesion", "lesion_end": "end of the lesion",
                    "lesion_mld": "narrowest point of the lesion"}
_LANDMARK_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("lm_bifurcation", re.compile(r"\b(?:left main|lm|lmca)\s+bifurcation\b|\bbifurcation of the (?:left main|lm)\b|"
                                  r"\b(?:left main|lm)\s+(?:splits?|divides?|bifurcates?)\b", re.I)),
    ("left_coronary_ostium", re.compile(
        r"\b(?:left main|lm|lmca|left coronary|left)\s+(?:coronary\s+)?(?:ostium|orifice|origin)\b|"
        r"\b(?:ostium|orifice|origin) of the (?:left main|lm|left coronary)\b|"
        r"\b(?:left main|lm|left coronary artery)\s+(?:arises?|originates?|comes? (?:off|from)|takes? off|starts?)\b", re.I)),  # noqa: E501
    ("right_coronary_ostium", re.compile(
        r"\b(?:rca|right coronary(?: artery)?|right)\s+(?:ostium|orifice|origin)\b|"
        r"\b(?:ostium|orifice|origin) of the (?:rca|right coronary)\b|"
        r"\b(?:rca|right coronary(?: artery)?)\s+(?:arises?|originates?|comes? (?:off|from)|takes? off)\b", re.I)),
    ("aortic_annulus_centre", re.compile(r"\bannul(?:us|ar plane)\b", re.I)),
    ("lv_apex", re.compile(r"\bapex\b|\bapical point\b", re.I)),
    ("crux", re.compile(r"\bcrux\b", re.I)),
    ("d1_origin", re.compile(r"\b(?:origin of the (?:first diagonal|d1)|(?:first diagonal|d1)\s+(?:origin|arises?|"
                             r"originates?|comes? (?:off|from)|takes? off|branches? off))\b", re.I)),
    ("om1_origin", re.compile(r"\b(?:origin of the (?:first obtuse marginal|om1)|(?:first obtuse marginal|om1)\s+"
                              r"(?:origin|arises?|originates?|comes? (?:off|from)|takes? off|branches? off))\b", re.I)),
    ("pda_origin", re.compile(r"\b(?:origin of the (?:pda|posterior descending)|(?:pda|posterior descending(?: artery)?)"  # noqa: E501
                              r"\s+(?:origin|arises?|originates?|comes? (?:off|from)|takes? off))\b", re.I)),
    ("lesion_start", re.compile(r"\b(?:start|beginning|proximal (?:end|edge|border|shoulder)|onset)\b.{0,30}\b(?:lesion|"  # noqa: E501
                                r"stenosis|narrowing|plaque)\b|\b(?:lesion|stenosis|narrowing|plaque)\b.{0,30}\b(?:start|"
                                r"begin)s?\b", re.I)),
    ("lesion_end", re.compile(r"\b(?:end|distal (?:end|edge|border|shoulder)|stop)\b.{0,30}\b(?:lesion|stenosis|"
                              r"narrowing|plaque)\b|\b(?:lesion|stenosis|narrowing|plaque)\b.{0,30}\b(?:ends?|stops?|"
                              r"finish(?:es)?)\b", re.I)),
    ("lesion_mld", re.compile(r"\bnarrowest\b|\bminimal lumen (?:diameter|area)?\s*(?:point|position|spot|site|location)"  # noqa: E501
                              r"|\bwhere is the (?:minimal lumen|mld|tightest point)\b|\bwhere (?:exactly )?is the "
                              r"(?:lesion|stenosis|narrowing|plaque)\b", re.I)),
]


@dataclass
class Anatomy:
    """Anatomy named in a text, in order: coronary vessels (segment or artery codes) and structures."""

    vessels: list[str] = field(default_factory=list)
    structures: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)  # registry finding structures: calcified_plaque, stent


@dataclass
class Numbers:
    stent_length_mm: float | None = None
    stent_diameter_mm: float | None = None
    stent_length_range_mm: tuple[float, float] | None = None
    lesion_length_mm: float | None = None
    device: Device | None = None
    troponin_value: float | None = None
    troponin_unit: str | None = None


def to_number(text: str) -> float:
    return float(text.replace(",", "."))


def _mm(value: str, unit: str) -> float:
    unit = unit.lower()
    return to_number(value) * _UNIT_TO_MM["cm" if unit.startswith(("cm", "cent")) else "mm"]


# Clinical shorthand the registry does not list, written out before the registry reads the text.
_SHORTHAND: list[tuple[re.Pattern, str]] = [
    (re.compile(r"\bprox\.?(?=\s)", re.I), "proximal"),
    (re.compile(r"\bdist\.?(?=\s)", re.I), "distal"),
    (re.compile(r"\bmid[- ]?(?:to[- ])?distal\b", re.I), "mid"),  # SCCT segment 13 is the mid and distal LCx
    (re.compile(r"\b(?:circ|circum|cfx)\b", re.I), "circumflex"),
    (re.compile(r"\bmld\b", re.I), "minimal lumen diameter"),
    (re.compile(r"\bmla\b", re.I), "minimal lumen area"),
    # Acquisition and identifier abbreviations: the sentence model knows the words, not the letters.
    (re.compile(r"\bkvp?\b", re.I), "tube voltage"),
    (re.compile(r"\bmas\b", re.I), "tube current"),
    (re.compile(r"\brecon\b", re.I), "reconstruction"),
    (re.compile(r"\bfov\b", re.I), "field of view"),
    (re.compile(r"\bdob\b", re.I), "date of birth"),
    (re.compile(r"\bmrn\b", re.I), "medical record number"),
    (re.compile(r"\bheart muscle\b", re.I), "myocardium"),
    (re.compile(r"\bventricles\b", re.I), "ventricle"),
    (re.compile(r"\batria\b", re.I), "atrium"),
    (re.compile(r"\barteries\b", re.I), "artery"),
    # A CCTA is no study for pulmonary embolism; the letters must still reach the reasoned "cannot".
    (re.compile(r"\bpe\b", re.I), "pulmonary embolism"),
]
# "diag", "diag 1", "first diag", "the diagonal": the first diagonal unless a second one is named; "OM"
# alone is the first obtuse marginal (the registry lists only numbered ones).
_BRANCH_SHORTHAND = re.compile(r"\b(?:(first|1st|second|2nd)\s+)?(diag(?:onal)?|om|obtuse marginal)(?:\s*([12])\b)?"
                               r"(?=[^\w-]|$)(?!\s+[12]\b)", re.I)


def _branch(m: re.Match) -> str:
    second = (m.group(1) or "").lower() in ("second", "2nd") or m.group(3) == "2"
    noun = "diagonal" if m.group(2).lower().startswith("diag") else "obtuse marginal"
    return f"{'second' if second else 'first'} {noun}"


# Domain words clinicians misspell or clip; corrected before any rule or the matcher reads the question.
_DOMAIN_WORDS = ("agatston", "calcium", "calcified", "calcification", "stenosis", "stenoses", "restenosis",
                 "troponin", "ejection", "embolism")
_CLIPPED = [(re.compile(r"\bcalcs?\b", re.I), "calcium")]


@lru_cache(maxsize=4096)
def correct_domain_spelling(text: str) -> str:
    """Misspelt or clipped domain words written out: 'agatson' -> 'agatston', 'calcuim' -> 'calcium',
    'calc score' -> 'calcium score'. Only a short list of domain words is corrected, so an ordinary
    word is never turned into one of them."""
    import difflib

    for pattern, replacement in _CLIPPED:
        text = pattern.sub(replacement, text)

    def fix(m: re.Match) -> str:
        word = m.group(0)
        if any(known in word.lower() for known in _DOMAIN_WORDS):  # the word, or a compound of it ("noncalcified")
            return word
        close = difflib.get_close_matches(word.lower(), _DOMAIN_WORDS, n=1, cutoff=0.85)
        return close[0] if close else word

    return re.sub(r"[A-Za-z]{6,}", fix, text)
# "mid and distal LAD", "left and right ventricles": the shared noun belongs to both modifiers.
_ELLIPSIS = re.compile(r"\b(proximal|mid|distal|left|right)\s+(and|or|vs\.?|versus)\s+(proximal|mid|distal|left|right)\s+"  # noqa: E501
                       r"([a-z][\w-]*)", re.I)
_WORDS_FOR_TYPOS: tuple[str, ...] = ()


def _vocabulary() -> tuple[str, ...]:
    global _WORDS_FOR_TYPOS
    if not _WORDS_FOR_TYPOS:
        words = {w for phrase in SYNONYM_INDEX for w in phrase.split() if len(w) >= 6 and w.isalpha()}
        words |= {"ostium", "annulus", "bifurcation", "stenosis", "calcium", "calcification", "circumflex"}
        _WORDS_FOR_TYPOS = tuple(sorted(words))
    return _WORDS_FOR_TYPOS


@lru_cache(maxsize=4096)  # every extractor normalises the same pieces of a question again
def normalise_clinical(text: str) -> str:
    """Shorthand written out, shared modifiers distributed and misspelt anatomy words corrected
    ("prox circ" -> "proximal circumflex", "mid and distal LAD" -> "mid LAD and distal LAD",
    "circumflx" -> "circumflex"), so the registry can name what the clinician meant."""
    import difflib

    for pattern, replacement in _SHORTHAND:
        text = pattern.sub(replacement, text)
    text = _BRANCH_SHORTHAND.sub(_branch, text)
    text = _ELLIPSIS.sub(lambda m: f"{m.group(1)} {m.group(4)} {m.group(2)} {m.group(3)} {m.group(4)}", text)
    vocabulary = _vocabulary()

    def fix(m: re.Match) -> str:
        word = m.group(0)
        if word.lower() in vocabulary or len(word) < 6:
            return word
        close = difflib.get_close_matches(word.lower(), vocabulary, n=1, cutoff=0.83)  # 'circumflx', 'ostuim' yes; 'myocardial' (a word of its own) no  # noqa: E501
        return close[0] if close else word

    return re.sub(r"[A-Za-z]{6,}", fix, text)


def anatomy_in(text: str) -> Anatomy:
    """Vessels, structures and findings named in ``text`` (registry keys, in order, without repeats)."""
    found = Anatomy()
    for kind, key, _phrase in find_anatomy(normalise_clinical(text)):
        if kind in ("segment", "artery"):
            if key not in found.vessels:
                found.vessels.append(key)
        elif STRUCTURES_BY_NAME[key].group == "finding":
            if key not in found.findings:
                found.findings.append(key)
        elif key not in found.structures:
            found.structures.append(key)
    # A segment and its own artery named together ("the proximal LAD ... the LAD") mean the segment.
    segs = [v for v in found.vessels if v in SEGMENTS_BY_CODE and v not in ARTERIES]
    found.vessels = [v for v in found.vessels
                     if not (v in ARTERIES and any(SEGMENTS_BY_CODE[s].artery == v for s in segs))]
    return found


def numbers_in(text: str) -> Numbers:
    """Stent length / diameter (mm), ranges, the device type and a troponin value with its unit.

    Raises:
        QuestionValueError: a negative length ("a -20 mm stent").
    """
    out = Numbers()
    text = spelled_numbers(text)
    if m := _NEGATIVE.search(text):
        raise QuestionValueError(f"a length cannot be negative ({m.group(0).strip()}): give the stent or lesion "
                                 "length as a positive number, e.g. 20 mm")
    out.device = next((name for name, pattern in _DEVICE if pattern.search(text)), None)
    troponin = _troponin(text)
    if troponin:
        try:
            check_marker(_troponin_marker(text))
        except TroponinMarkerError as err:
            raise QuestionValueError(str(err)) from err
        out.troponin_value, out.troponin_unit = troponin
    rest = _TROPONIN_VALUE.sub(" ", text)
    lengths: list[tuple[float, int, int]] = []
    if m := _BY.search(rest):
        a, b = to_number(m.group(1)), to_number(m.group(2))
        unit = m.group(3) or "mm"
        a, b = _mm(str(a), unit), _mm(str(b), unit)
        out.stent_length_mm, out.stent_diameter_mm = max(a, b), min(a, b)
        rest = rest[:m.start()] + " " * (m.end() - m.start()) + rest[m.end():]
    if m := _RANGE.search(rest):
        lo, hi = sorted((_mm(m.group(1), m.group(3)), _mm(m.group(2), m.group(3))))
        if lo != hi:
            out.stent_length_range_mm = (lo, hi)
            out.stent_length_mm = out.stent_length_mm or lo
            rest = rest[:m.start()] + " " * (m.end() - m.start()) + rest[m.end():]
    for m in _LENGTH.finditer(rest):
        lengths.append((_mm(m.group(1), m.group(2)), m.start(), m.end()))
    for value, start, end in lengths:
        after, before = rest[end:end + 40], rest[max(0, start - 30):start]
        is_diameter = bool(_DIAMETER_WORD.search(after[:20]) or _DIAMETER_WORD.search(before))
        about_lesion = re.search(r"\b(lesion|stenosis|narrowing|plaque)\b", after[:25], re.I) \
            and not re.search(_STENT_NOUN, after[:12], re.I)
        if about_lesion and not is_diameter:
            out.lesion_length_mm = value
            continue
        if is_diameter or (value < MAX_STENT_DIAMETER_MM and not re.search(r"\blong|length", after[:20], re.I)):
            out.stent_diameter_mm = out.stent_diameter_mm or value
        elif out.stent_length_mm is None:
            out.stent_length_mm = value
    if out.stent_diameter_mm is None and (m := _BARE_DIAMETER.search(rest)):
        value = to_number(m.group(1))
        if 2.0 <= value < MAX_STENT_DIAMETER_MM:
            out.stent_diameter_mm = value
    return out


def _troponin(text: str) -> tuple[float, str | None] | None:
    """(value, unit) of a troponin named in the text; the unit is None when none is written."""
    if m := _TROPONIN_VALUE.search(text):
        if _TROPONIN_WORD.search(text):
            return to_number(m.group(1)), _unit(m.group(2))
    word = _TROPONIN_WORD.search(text)
    if word is None:
        return None
    tail = text[word.end():word.end() + 40]
    if m := _BARE_NUMBER.search(tail):
        return to_number(m.group(1)), None
    head = text[max(0, word.start() - 30):word.start()]
    if m := _BARE_NUMBER.search(head):
        return to_number(m.group(1)), None
    return None


def _troponin_marker(text: str) -> str:
    """"T" when the troponin named is troponin T ("TnT", "hs-cTnT", "troponin T"), else "I"."""
    return "T" if _TROPONIN_T.search(text) else "I"


def _unit(text: str) -> str:
    t = re.sub(r"\s+", " ", text.lower())
    if t.startswith(("pg", "picogram")):
        return "pg/mL"
    if "ml" in t or "millilit" in t:
        return "ng/mL"
    return "ng/L"


def sex_in(text: str) -> Sex | None:
    female, male = bool(_FEMALE.search(text)), bool(_MALE.search(text))
    if female == male:
        return None
    return "female" if female else "male"


_BARE_LESION_END = [("lesion_start", re.compile(r"\b(start|starts|begin|begins|beginning|onset)\b", re.I)),
                    ("lesion_end", re.compile(r"\b(end|ends|stop|stops|finish|finishes)\b", re.I))]


def landmark_in(text: str, lesion_context: bool = False) -> str | None:
    """The registry landmark (or lesion landmark) a text names, e.g. 'left_coronary_ostium'.

    With ``lesion_context`` (a lesion is being talked about) a bare "where does it start / end"
    names that lesion's start or end.
    """
    text = normalise_clinical(text)
    for key, pattern in _LANDMARK_PATTERNS:
        if pattern.search(text):
            return key
    if _VESSEL_START.search(text) and not _LESION_NOUN.search(text):
        vessels = anatomy_in(text).vessels
        origin = origin_landmark(vessels[0]) if vessels else None
        if origin:
            return origin
    if lesion_context:
        for key, pattern in _BARE_LESION_END:
            if pattern.search(text):
                return key
    if re.search(r"\b(ostium|orifice)\b", text, re.I):
        vessels = anatomy_in(text).vessels
        if vessels:
            return "right_coronary_ostium" if _artery(vessels[0]) == "RCA" else "left_coronary_ostium"
    return None


# "Where does the LAD begin?": a vessel's start is a place, the landmark at its origin.
_VESSEL_START = re.compile(r"\b(?:begin|begins|beginning|start|starts|starting|arise|arises|arising|originate|"
                           r"originates|originating|origin|takes? off|take-?off|comes? off|branch(?:es)? off|"
                           r"springs? from|leaves?|leaving|splits? off|departs?|separates? from|diverges?|"
                           r"(?:is )?given off)\b", re.I)
_LESION_NOUN = re.compile(r"\b(?:lesion|stenos[ie]s|narrowing|plaque|blockage|occlusion|stent|calcif)", re.I)
# "Where does the LAD end?": no landmark marks a vessel's end; its last segment, drawn, shows where it runs out.
_VESSEL_END = re.compile(r"\b(?:end|ends|ending|terminat\w*|stop|stops|finish|finishes|run out|runs out|peter out|"
                         r"peters out|last part|distal end|distal extent|how far does)\b", re.I)


def vessel_end_in(text: str) -> str | None:
    """The last segment of the vessel whose end a text asks about ('where does the RCA end?' -> 'dRCA'),
    or None when it asks about no vessel's end (a lesion's end is a lesion landmark)."""
    text = normalise_clinical(text)
    if not _VESSEL_END.search(text) or _LESION_NOUN.search(text):
        return None
    vessels = anatomy_in(text).vessels
    if not vessels:
        return None
    vessel = vessels[0]
    return MAIN_VESSEL_PATHS[vessel][-1] if vessel in MAIN_VESSEL_PATHS else vessel


# Branches whose origin is a registry landmark; a vessel starting elsewhere (mid LAD, D2) has none.
_BRANCH_ORIGINS = {"D1": "d1_origin", "OM1": "om1_origin", "R-PDA": "pda_origin", "L-PDA": "pda_origin"}


def origin_landmark(vessel: str) -> str | None:
    """The registry landmark where a vessel starts: its ostium, the left main bifurcation (LAD, LCx,
    ramus) or a branch origin; None when no landmark marks the vessel's start."""
    first = MAIN_VESSEL_PATHS[vessel][0] if vessel in MAIN_VESSEL_PATHS else vessel
    parent = SEGMENT_PARENT.get(first, "")
    if parent is None:
        return "right_coronary_ostium" if _artery(first) == "RCA" else "left_coronary_ostium"
    if parent == "LM":
        return "lm_bifurcation"
    return _BRANCH_ORIGINS.get(first)


def landmark_display(key: str) -> str:
    return LESION_LANDMARKS.get(key) or LANDMARKS.get(key, key.replace("_", " "))


def _artery(vessel: str) -> str:
    return vessel if vessel in ARTERIES else SEGMENTS_BY_CODE[vessel].artery


def artery_of(vessel: str) -> str:
    """The main artery of a vessel code ('mRCA' -> 'RCA', 'LAD' -> 'LAD')."""
    return _artery(vessel)


_POLITE = re.compile(r"^\s*(?:(?:and|also|ok(?:ay)?|so|now|then)\s+)?(?:(?:can|could|would|will) you\s+(?:please\s+)?|please\s+)?"  # noqa: E501
                     r"(?:tell me|give me|let me know)\s+(?=(?:how|what|which|where|whether|if|is|are|the|its|his|her)\b)",  # noqa: E501
                     re.I)


def mask_for_embedding(text: str) -> str:
    """The text as the intent matcher embeds it: anatomy and devices replaced by generic words.

    "How tight is the proximal LAD?" and "How tight is the mid RCA?" ask the same thing, so both
    read "how tight is the vessel"; a DES or BMS is a "stent" (MiniLM does not know the acronyms).
    """
    words = _WORD.findall(_POLITE.sub("", normalise_clinical(text)).lower())
    out: list[str] = []
    i = 0
    while i < len(words):
        for n in range(min(_MAX_WORDS, len(words) - i), 0, -1):
            phrase = " ".join(words[i:i + n])
            hit = SYNONYM_INDEX.get(phrase)
            if hit and n == 1 and phrase in _AMBIGUOUS_SHORT:
                hit = None
            if hit:
                kind, key = hit
                if kind == "structure" and STRUCTURES_BY_NAME[key].group == "finding":
                    out.append(phrase)
                else:
                    out.append("vessel" if kind in ("segment", "artery") else "structure")
                i += n
                break
        else:
            word = words[i]
            out.append(_DEVICE_WORDS.get(word, word))
            i += 1
    return " ".join(out)


_WORD = re.compile(r"[a-z0-9]+(?:[-'.][a-z0-9]+)*|[?%]")
_MAX_WORDS = max(len(p.split()) for p in SYNONYM_INDEX)
# One- or two-letter registry synonyms that are also ordinary English words in a question.
_AMBIGUOUS_SHORT = {"pa", "ra", "la", "ri"}
# "%" asks for a percentage as "percent" does ("what % is it?").
_DEVICE_WORDS = {"des": "stent", "bms": "stent", "scaffold": "stent", "pci": "stenting", "%": "percent"}
