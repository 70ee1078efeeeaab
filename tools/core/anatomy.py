"""The one registry of anatomy names used by every CardioVLM package.

Phantoms, quantification tools, the curriculum builder, the VLM, the assistant and the UI all
import their structure names, label ids, colours, SCCT coronary segments and synonyms from here,
so the names never drift apart.

Coronary segments follow the SCCT 18-segment model (SCCT 2014 guideline). Their SNOMED CT codes
are those of DICOM context group CID 3014 as shipped by pydicom (``pydicom.sr.Collection("CID3014")``).

Label ids are stable: they are written into every label map on disk, so never renumber one.
Coronary segment ``n`` (SCCT number) has label id ``CORONARY_LABEL_OFFSET + n - 1``.
Segment 13 (mid and distal circumflex) is keyed "dLCx" so that "LCx" always means the whole artery.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

Artery = Literal["LM", "LAD", "LCx", "RCA"]
ARTERIES: tuple[Artery, ...] = ("LM", "LAD", "LCx", "RCA")

ARTERY_NAMES: dict[str, str] = {
    "LM": "left main coronary artery",
    "LAD": "left anterior descending artery",
    "LCx": "left circumflex artery",
    "RCA": "right coronary artery",
}

ARTERY_SYNONYMS: dict[str, tuple[str, ...]] = {
    "LM": ("left main", "left main coronary artery", "left main coronary", "left main stem", "lm",
           "lmca", "lms", "lmcx", "main stem", "left main trunk"),
    "LAD": ("lad", "left anterior descending", "left anterior descending artery",
            "anterior descending artery", "anterior interventricular artery", "anterior descending"),
    "LCx": ("lcx", "cx", "circumflex", "left circumflex", "left circumflex artery", "circumflex artery",
            "circumflex branch", "circumflex branch of the left coronary artery", "lcx artery", "lcflx"),
    "RCA": ("rca", "right coronary", "right coronary artery", "right coronary branch"),
}


@dataclass(frozen=True)
class CoronarySegment:
    """One SCCT coronary segment."""

    number: int  # SCCT number, 1..18
    code: str  # short name used everywhere as the key, e.g. "pLAD"
    name: str  # full English name, as written in reports
    artery: Artery  # the main vessel it counts towards for per-artery calcium and CAD-RADS rules
    snomed: str  # SNOMED CT code from DICOM CID 3014
    synonyms: tuple[str, ...] = field(default=())

    @property
    def label_id(self) -> int:
        return CORONARY_LABEL_OFFSET + self.number - 1


CORONARY_LABEL_OFFSET = 20

# Ramus intermedius is counted with the LCx for per-artery calcium (a documented choice:
# conventions differ between scoring packages).
CORONARY_SEGMENTS: tuple[CoronarySegment, ...] = (
    CoronarySegment(1, "pRCA", "proximal right coronary artery", "RCA", "91083009",
                    ("proximal rca", "rca proximal", "p-rca", "prca", "proximal right coronary", "segment 1")),
    CoronarySegment(2, "mRCA", "mid right coronary artery", "RCA", "450960006",
                    ("mid rca", "middle rca", "rca mid", "m-rca", "mrca", "mid right coronary", "segment 2")),
    CoronarySegment(3, "dRCA", "distal right coronary artery", "RCA", "41879009",
                    ("distal rca", "rca distal", "d-rca", "drca", "distal right coronary", "segment 3")),
    CoronarySegment(4, "R-PDA", "right posterior descending artery", "RCA", "53655008",
                    ("pda", "r-pda", "rpda", "posterior descending artery", "posterior descending",
                     "right pda", "posterior interventricular artery", "segment 4")),
    CoronarySegment(5, "LM", "left main coronary artery", "LM", "3227004",
                    ARTERY_SYNONYMS["LM"] + ("segment 5",)),
    CoronarySegment(6, "pLAD", "proximal left anterior descending artery", "LAD", "68787002",
                    ("proximal lad", "lad proximal", "p-lad", "plad", "proximal left anterior descending",
                     "proximal anterior descending", "lad proximal segment", "segment 6")),
    CoronarySegment(7, "mLAD", "mid left anterior descending artery", "LAD", "91748002",
                    ("mid lad", "middle lad", "lad mid", "m-lad", "mlad", "mid left anterior descending",
                     "mid anterior descending", "segment 7")),
    CoronarySegment(8, "dLAD", "distal left anterior descending artery", "LAD", "36672000",
                    ("distal lad", "lad distal", "d-lad", "dlad", "distal left anterior descending",
                     "apical lad", "segment 8")),
    CoronarySegment(9, "D1", "first diagonal branch", "LAD", "91750005",
                    ("d1", "first diagonal", "1st diagonal", "diagonal 1", "first diagonal branch",
                     "left diagonal", "segment 9")),
    CoronarySegment(10, "D2", "second diagonal branch", "LAD", "91751009",
                    ("d2", "second diagonal", "2nd diagonal", "diagonal 2", "second diagonal branch",
                     "segment 10")),
    CoronarySegment(11, "pCx", "proximal left circumflex artery", "LCx", "52433000",
                    ("proximal circumflex", "proximal lcx", "lcx proximal", "p-lcx", "pcx", "plcx",
                     "proximal cx", "proximal left circumflex", "segment 11")),
    CoronarySegment(12, "OM1", "first obtuse marginal branch", "LCx", "91754001",
                    ("om1", "first obtuse marginal", "1st obtuse marginal", "obtuse marginal 1",
                     "first marginal", "om 1", "segment 12")),
    CoronarySegment(13, "dLCx", "mid and distal left circumflex artery", "LCx", "91753007",
                    ("dlcx", "mid circumflex", "distal circumflex", "mid lcx", "distal lcx", "mid-distal lcx",
                     "lcx mid", "lcx distal", "m-lcx", "d-lcx", "mid cx", "distal cx", "segment 13")),
    CoronarySegment(14, "OM2", "second obtuse marginal branch", "LCx", "91755000",
                    ("om2", "second obtuse marginal", "2nd obtuse marginal", "obtuse marginal 2",
                     "second marginal", "om 2", "segment 14")),
    CoronarySegment(15, "L-PDA", "left posterior descending artery", "LCx", "91760001",
                    ("l-pda", "lpda", "left pda", "left posterior descending", "segment 15")),
    CoronarySegment(16, "R-PLB", "right posterolateral branch", "RCA", "91761002",
                    ("r-plb", "rplb", "plb", "posterolateral branch", "right posterolateral branch",
                     "right posterolateral", "posterior left ventricular branch", "segment 16")),
    CoronarySegment(17, "RI", "ramus intermedius", "LCx", "244252004",
                    ("ri", "ramus", "ramus intermedius", "intermediate artery", "intermediate branch",
                     "ramus intermedius artery", "segment 17")),
    CoronarySegment(18, "L-PLB", "left posterolateral branch", "LCx", "91757008",
                    ("l-plb", "lplb", "left posterolateral branch", "left posterolateral", "segment 18")),
)

SEGMENTS_BY_CODE: dict[str, CoronarySegment] = {s.code: s for s in CORONARY_SEGMENTS}
SEGMENTS_BY_LABEL: dict[int, CoronarySegment] = {s.label_id: s for s in CORONARY_SEGMENTS}

# Proximal-to-distal order of the segments making up each main vessel's path (side branches apart).
MAIN_VESSEL_PATHS: dict[str, tuple[str, ...]] = {
    "LM": ("LM",),
    "LAD": ("pLAD", "mLAD", "dLAD"),
    "LCx": ("pCx", "dLCx"),
    "RCA": ("pRCA", "mRCA", "dRCA"),
}

# Parent of each segment: where its path starts. None means an ostium on the aortic root.
SEGMENT_PARENT: dict[str, str | None] = {
    "LM": None, "pLAD": "LM", "mLAD": "pLAD", "dLAD": "mLAD", "D1": "pLAD", "D2": "mLAD",
    "pCx": "LM", "dLCx": "pCx", "OM1": "pCx", "OM2": "dLCx", "L-PDA": "dLCx", "L-PLB": "dLCx",
    "RI": "LM", "pRCA": None, "mRCA": "pRCA", "dRCA": "mRCA", "R-PDA": "dRCA", "R-PLB": "dRCA",
}


@dataclass(frozen=True)
class Structure:
    """A labelled structure of a label map (everything but the coronary segments)."""

    label_id: int
    name: str  # key used everywhere, snake_case
    display: str  # what a clinician reads
    group: Literal["body", "heart", "vessel", "finding"]
    color: tuple[int, int, int]
    synonyms: tuple[str, ...] = field(default=())


STRUCTURES: tuple[Structure, ...] = (
    Structure(1, "soft_tissue", "soft tissue and muscle", "body", (205, 150, 125), ("muscle", "body wall")),
    Structure(2, "subcutaneous_fat", "subcutaneous fat", "body", (255, 230, 150), ("subcutaneous fat",)),
    Structure(3, "lung_left", "left lung", "body", (120, 170, 220), ("left lung",)),
    Structure(4, "lung_right", "right lung", "body", (100, 150, 210), ("right lung",)),
    Structure(5, "spine", "vertebral column", "body", (240, 240, 240), ("spine", "vertebra", "vertebral body")),
    Structure(6, "sternum", "sternum", "body", (230, 230, 210), ("sternum", "breastbone")),
    Structure(7, "epicardial_fat", "epicardial fat", "heart", (250, 210, 120), ("epicardial fat", "pericardial fat")),
    Structure(8, "liver", "liver", "body", (150, 80, 60), ("liver",)),
    Structure(10, "lv_blood", "left ventricle", "heart", (220, 60, 60),
              ("left ventricle", "lv", "left ventricular cavity", "lv cavity", "lv blood pool")),
    Structure(11, "rv_blood", "right ventricle", "heart", (60, 90, 220),
              ("right ventricle", "rv", "right ventricular cavity", "rv cavity")),
    Structure(12, "la_blood", "left atrium", "heart", (240, 130, 130), ("left atrium", "la", "left atrial cavity")),
    Structure(13, "ra_blood", "right atrium", "heart", (120, 140, 240), ("right atrium", "ra", "right atrial cavity")),
    Structure(14, "lv_myocardium", "left ventricular myocardium", "heart", (170, 90, 40),
              ("myocardium", "lv myocardium", "left ventricular myocardium", "lv wall", "left ventricular wall")),
    Structure(15, "aorta", "aorta", "vessel", (230, 50, 160),
              ("aorta", "ascending aorta", "descending aorta", "thoracic aorta")),
    Structure(16, "aortic_root", "aortic root", "vessel", (250, 100, 190),
              ("aortic root", "aortic sinuses", "sinuses of valsalva", "aortic bulb")),
    Structure(17, "pulmonary_artery", "pulmonary trunk", "vessel", (90, 200, 230),
              ("pulmonary trunk", "pulmonary artery", "main pulmonary artery", "pa")),
    Structure(18, "cardiac_wall", "atrial and right ventricular wall", "heart", (160, 110, 80),
              ("rv wall", "atrial wall", "right ventricular wall")),
    Structure(40, "calcified_plaque", "calcified plaque", "finding", (255, 255, 0),
              ("calcification", "calcified plaque", "calcium", "calcified lesion", "calcific plaque")),
    Structure(41, "noncalcified_plaque", "non-calcified plaque", "finding", (255, 140, 0),
              ("non-calcified plaque", "noncalcified plaque", "soft plaque", "fibrofatty plaque")),
    Structure(42, "stent", "stent", "finding", (200, 200, 255), ("stent", "coronary stent")),
    Structure(43, "extracoronary_calcification", "calcification outside the coronary arteries", "finding",
              (180, 180, 0), ("valve calcification", "annular calcification", "aortic valve calcification")),
    # thorax around the heart (phantom generator 2.0); ids 0-43 above are unchanged
    Structure(44, "superior_vena_cava", "superior vena cava", "vessel", (70, 110, 200), ("svc", "superior vena cava")),
    Structure(45, "inferior_vena_cava", "inferior vena cava", "vessel", (60, 90, 170), ("ivc", "inferior vena cava")),
    Structure(46, "brachiocephalic_trunk", "brachiocephalic trunk", "vessel", (220, 70, 140),
              ("brachiocephalic trunk", "innominate artery", "brachiocephalic artery")),
    Structure(47, "left_common_carotid_artery", "left common carotid artery", "vessel", (210, 60, 120),
              ("left common carotid", "left common carotid artery", "left carotid")),
    Structure(48, "left_subclavian_artery", "left subclavian artery", "vessel", (200, 50, 110),
              ("left subclavian", "left subclavian artery")),
    Structure(49, "pulmonary_arteries", "right and left pulmonary arteries and their branches", "vessel",
              (110, 210, 240), ("right pulmonary artery", "left pulmonary artery", "pulmonary arteries",
                                "pulmonary arterial branches", "rpa", "lpa")),
    Structure(50, "pulmonary_veins", "pulmonary veins", "vessel", (240, 120, 90),
              ("pulmonary veins", "pulmonary vein", "pulmonary venous branches")),
    Structure(51, "trachea", "trachea", "body", (180, 220, 255), ("trachea", "windpipe")),
    Structure(52, "main_bronchi", "main bronchi", "body", (160, 200, 240),
              ("main bronchi", "main bronchus", "left main bronchus", "right main bronchus", "bronchi")),
    Structure(53, "oesophagus", "oesophagus", "body", (200, 120, 150), ("oesophagus", "esophagus", "gullet")),
    Structure(54, "ribs", "ribs", "body", (235, 235, 220), ("rib", "ribs")),
    Structure(55, "costal_cartilage", "costal cartilage", "body", (210, 220, 200), ("costal cartilage",)),
    Structure(56, "stomach", "stomach", "body", (230, 160, 120), ("stomach", "gastric fundus")),
    Structure(57, "brachiocephalic_veins", "brachiocephalic veins", "vessel", (80, 120, 210),
              ("brachiocephalic vein", "brachiocephalic veins", "innominate vein")),
    Structure(58, "azygos_vein", "azygos vein", "vessel", (90, 100, 190), ("azygos", "azygos vein")),
    Structure(59, "humerus", "humerus", "body", (225, 225, 200), ("humerus", "upper arm bone")),
    Structure(60, "lung_fissure", "lung fissure", "body", (150, 190, 230),
              ("fissure", "lung fissure", "major fissure", "oblique fissure", "minor fissure", "horizontal fissure")),
)

STRUCTURES_BY_NAME: dict[str, Structure] = {s.name: s for s in STRUCTURES}
STRUCTURES_BY_LABEL: dict[int, Structure] = {s.label_id: s for s in STRUCTURES}

HEART_CHAMBERS = ("lv_blood", "rv_blood", "la_blood", "ra_blood")
FINDING_LABELS = tuple(s.label_id for s in STRUCTURES if s.group == "finding")
CORONARY_LABELS = tuple(s.label_id for s in CORONARY_SEGMENTS)

# Landmarks written by the phantoms and predicted by the VLM; lesion landmarks are added per finding.
LANDMARKS: dict[str, str] = {
    "left_coronary_ostium": "left coronary ostium",
    "right_coronary_ostium": "right coronary ostium",
    "aortic_annulus_centre": "centre of the aortic annulus",
    "lm_bifurcation": "left main bifurcation",
    "crux": "crux cordis",
    "lv_apex": "left ventricular apex",
    "d1_origin": "origin of the first diagonal",
    "om1_origin": "origin of the first obtuse marginal",
    "pda_origin": "origin of the posterior descending artery",
}

PLAQUE_TYPES = ("calcified", "noncalcified", "mixed")
FINDING_KINDS = ("calcified_plaque", "noncalcified_plaque", "mixed_plaque", "occlusion", "stent")

SEGMENT_COLORS: dict[str, tuple[int, int, int]] = {
    "LM": (255, 0, 0), "LAD": (255, 80, 0), "LCx": (0, 200, 0), "RCA": (0, 120, 255),
}


def label_name(label_id: int) -> str:
    """The registry key for a label id: a segment code ("pLAD") or a structure name ("aorta")."""
    if label_id in SEGMENTS_BY_LABEL:
        return SEGMENTS_BY_LABEL[label_id].code
    if label_id in STRUCTURES_BY_LABEL:
        return STRUCTURES_BY_LABEL[label_id].name
    if label_id == 0:
        return "background"
    raise KeyError(f"label id {label_id} is not in the anatomy registry")


def label_table() -> dict[int, str]:
    """Every label id with its registry key, background included (written next to label maps)."""
    table = {0: "background"}
    table.update({s.label_id: s.name for s in STRUCTURES})
    table.update({s.label_id: s.code for s in CORONARY_SEGMENTS})
    return dict(sorted(table.items()))


def label_color(label_id: int) -> tuple[int, int, int]:
    if label_id in SEGMENTS_BY_LABEL:
        return SEGMENT_COLORS[SEGMENTS_BY_LABEL[label_id].artery]
    return STRUCTURES_BY_LABEL[label_id].color


def mask_color(name: str) -> tuple[int, int, int]:
    """Display colour of a named mask: a segment or artery takes its artery's colour, a structure or
    finding its own (``calcified_plaque_LAD`` -> the calcified-plaque colour); yellow otherwise."""
    if name in SEGMENTS_BY_CODE:
        return SEGMENT_COLORS[SEGMENTS_BY_CODE[name].artery]
    if name in SEGMENT_COLORS:
        return SEGMENT_COLORS[name]
    for structure in STRUCTURES:
        if name.startswith(structure.name):
            return structure.color
    return (255, 255, 0)


def segments_of_artery(artery: str) -> tuple[CoronarySegment, ...]:
    """All segments counted towards a main vessel, e.g. ``segments_of_artery("LAD")`` -> pLAD..D2."""
    if artery not in ARTERIES:
        raise ValueError(f"unknown artery {artery!r}; expected one of {', '.join(ARTERIES)}")
    return tuple(s for s in CORONARY_SEGMENTS if s.artery == artery)


def _normalise(text: str) -> str:
    text = text.lower().replace("–", "-").replace("_", " ")
    text = re.sub(r"[^a-z0-9\- ]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _synonym_index() -> dict[str, tuple[str, str]]:
    """Normalised phrase -> (kind, key), kind in {"segment", "artery", "structure"}."""
    index: dict[str, tuple[str, str]] = {}
    for artery, names in ARTERY_SYNONYMS.items():
        for phrase in names:
            index[_normalise(phrase)] = ("artery", artery)
    for seg in CORONARY_SEGMENTS:
        for phrase in (seg.code, seg.name, *seg.synonyms):
            key = _normalise(phrase)
            # "LM" is both a segment and an artery; the segment wins (they are the same vessel).
            index[key] = ("segment", seg.code)
    for struct in STRUCTURES:
        for phrase in (struct.name.replace("_", " "), struct.display, *struct.synonyms):
            index.setdefault(_normalise(phrase), ("structure", struct.name))
    return index


SYNONYM_INDEX: dict[str, tuple[str, str]] = _synonym_index()
_MAX_PHRASE_WORDS = max(len(p.split()) for p in SYNONYM_INDEX)


def anatomy_at(words: Sequence[str], i: int,
               skip: Callable[[str], bool] | None = None) -> tuple[int, str, str] | None:
    """The longest registry phrase beginning at ``words[i]``: (how many words it spans, kind, key), or
    None when no phrase begins there. The one longest-match rule of every anatomy scanner.

    ``words`` are matched as given (lower case, as :func:`find_anatomy` normalises them). The longest
    phrase wins whatever its kind, so "left main bronchus" is the bronchus and never the left main;
    a caller that wants vessels only drops the other kinds after the match. ``skip(phrase)`` refuses a
    phrase that cannot be one (it spans punctuation, or a short word is ordinary English there) and
    the next shorter phrase is tried.
    """
    for n in range(min(_MAX_PHRASE_WORDS, len(words) - i), 0, -1):
        phrase = " ".join(words[i:i + n])
        hit = SYNONYM_INDEX.get(phrase)
        if hit is not None and not (skip and skip(phrase)):
            return n, hit[0], hit[1]
    return None


def find_anatomy(text: str) -> list[tuple[str, str, str]]:
    """All anatomy mentions in ``text``, longest phrase first at each position, left to right.

    Returns a list of ``(kind, key, matched_phrase)`` with kind one of "segment", "artery", "structure".

    Examples::

        >>> find_anatomy("70% stenosis of the proximal LAD and a plaque in the RCA")
        [('segment', 'pLAD', 'proximal lad'), ('artery', 'RCA', 'rca')]
    """
    found: list[tuple[str, str, str]] = []
    # A phrase never spans punctuation: "the RCA; distal circumflex" is not "RCA distal".
    for clause in re.split(r"[;,.:()\[\]\n]+", text):
        words = _normalise(clause).split()
        i = 0
        while i < len(words):
            hit = anatomy_at(words, i)
            if hit is None:
                i += 1
                continue
            n, kind, key = hit
            found.append((kind, key, " ".join(words[i:i + n])))
            i += n
    return found


def resolve_segment(name: str) -> CoronarySegment:
    """The SCCT segment a user or report names ("proximal LAD", "segment 6", "pLAD").

    Raises:
        ValueError: when the name is not a known coronary segment (an artery alone, such as
            "LAD", is ambiguous between its segments and is refused with the list to choose from).
    """
    if name in SEGMENTS_BY_CODE:
        return SEGMENTS_BY_CODE[name]
    hit = SYNONYM_INDEX.get(_normalise(name))
    if hit and hit[0] == "segment":
        return SEGMENTS_BY_CODE[hit[1]]
    if hit and hit[0] == "artery":
        choices = ", ".join(s.code for s in segments_of_artery(hit[1]))
        raise ValueError(f"{name!r} names a whole artery; choose one of its segments: {choices}")
    known = ", ".join(s.code for s in CORONARY_SEGMENTS)
    raise ValueError(f"{name!r} is not a coronary segment name CardioVLM knows; known segments: {known}")


def resolve_structure_or_segment(name: str) -> tuple[str, str]:
    """(kind, key) for any anatomy name; raises ValueError with the known names when unknown."""
    if name in SEGMENTS_BY_CODE:
        return "segment", name
    if name in STRUCTURES_BY_NAME:
        return "structure", name
    if name in ARTERIES:
        return "artery", name
    hit = SYNONYM_INDEX.get(_normalise(name))
    if hit:
        return hit
    raise ValueError(f"{name!r} is not an anatomy name CardioVLM knows")


def all_names() -> Iterable[str]:
    """Every registry key (segments, arteries, structures)."""
    yield from SEGMENTS_BY_CODE
    yield from ARTERIES
    yield from STRUCTURES_BY_NAME
