"""Understanding a clinician's question: intents by meaning, slots by rule, follow-ups by context.

- Intent: the nearest phrasings of a bank, by MiniLM sentence embeddings (:mod:`cardiovlm.assistant.intents`).
- Slots: numbers with their units, devices, troponin, sex and landmarks by rule
  (:mod:`cardiovlm.assistant.slots`); anatomy from the registry (:mod:`cardiovlm.tools.core.anatomy`).
- Several requests in one question ("What is the calcium score and how severe is the LAD
  stenosis?") become several parts, each planned and answered, or named as not answered; a
  comparison of vessels is one part over every vessel named. Pieces split at conjunctions, commas,
  semicolons, "also" / "plus" / "as well as", sentence ends, lines and numbered items; a list of
  names, a statement of context or an "or" alternative stays with its request.
- Sex is a slot only where the question states it ("female", "a man", "54F"): "his" and "her"
  refer to the patient and say nothing the tools may take as the sex.
- Slots and cues a rule reads exactly steer a close call: a request to show or see a finding is a
  segmentation unless it asks for a number; a question about the assistant itself ("who built you")
  is identity answered about the assistant, whether the images are real is a study question; a
  named unmeasurable quantity (EF, FFR, plaque rupture) is a "cannot" of that topic; "which artery
  gives the PDA" is dominance; "where does the RCA end" draws its last segment.
- A follow-up ("and in the RCA?", "what about a 24 mm one?") takes what it leaves out from the
  previous question; a request with an intent of its own never inherits the previous intent, and
  anatomy alone never carries an intent that does not take anatomy (a MACE question).

:func:`understand` gives the typed plan (intent and slots of each part) that the paraphrase test
set scores; :func:`parse_question` gives the planner's fuller reading.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from cardiovlm.assistant.intents import Intent, IntentMatch, match_cached, match_texts
from cardiovlm.assistant.slots import (
    MAX_STENT_DIAMETER_MM,
    QuestionValueError,
    anatomy_in,
    correct_domain_spelling,
    landmark_in,
    numbers_in,
    sex_in,
    vessel_end_in,
)
from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE
from cardiovlm.tools.quant.cadrads import OBSTRUCTIVE_PERCENT, SEVERE_PERCENT

# What the planner does for a part. The public intent is coarser: "calcium" is a score or a
# presence check, "stent" a coverage check or a presence / patency check.
Task = Literal[
    "study_info", "calcium_score", "stenosis", "cadrads", "stent_coverage", "presence", "segment", "risk",
    "reports", "locate", "patient_identity", "about_assistant", "cannot", "unknown",
]
FindingWord = Literal["calcification", "plaque", "stent", "occlusion", "stenosis", "lesion"]

YES_NO_TASKS = ("stent_coverage", "presence", "risk", "stenosis", "calcium_score", "cadrads")
# Intents whose answer depends on the anatomy asked about: an anatomy-only follow-up can continue them.
ANATOMY_INTENTS = ("segment", "calcium", "stenosis", "stent", "locate")
# A slot of the question that only one intent can use pulls a close call towards it.
SLOT_PULL = 0.08


class ParsedQuestion(BaseModel):
    text: str
    intent: Intent = "unknown"
    task: Task = "unknown"
    segment: str | None = Field(None, description="SCCT segment code named in the question")
    artery: str | None = Field(None, description="artery (LM, LAD, LCx, RCA) named without a segment")
    vessels: list[str] = Field(default_factory=list, description="every vessel named, in order (comparisons)")
    structure: str | None = Field(None, description="non-coronary structure named, e.g. 'aorta'")
    structures: list[str] = Field(default_factory=list, description="every non-coronary structure named, in order")
    finding: FindingWord | None = None
    stent_length_mm: float | None = None
    stent_diameter_mm: float | None = None
    stent_lengths_mm: list[float] = Field(default_factory=list, description="every stent length to try (ranges)")
    device: str | None = Field(None, description="stent type named: DES, BMS or scaffold")
    troponin_value: float | None = None
    troponin_unit: str | None = None
    sex: Literal["male", "female"] | None = None
    landmark: str | None = Field(None, description="registry landmark or lesion_start / lesion_end / lesion_mld")
    superlative: Literal["most_calcified", "most_stenosed"] | None = None
    stenosis_threshold_percent: float | None = Field(
        None, description="the stenosis a yes/no question asks about: 50 for 'significant', 70 for 'severe'")
    stent_status: Literal["patency", "restenosis"] | None = Field(
        None, description="a question on the state of a stent: is it patent, is there in-stent restenosis")
    cannot_topic: str | None = Field(None, description="for 'cannot': which unmeasurable quantity")
    problem: str | None = Field(None, description="why the question cannot be run as asked (e.g. a negative length)")
    is_yes_no: bool = False
    follow_up: bool = Field(False, description="completed from the previous question")
    confidence: float = Field(0.0, description="similarity of the intent's nearest phrasings")
    parts: list[ParsedQuestion] = Field(default_factory=list,
                                          description="for a question with several requests: one entry each")
    previous: ParsedQuestion | None = Field(None, exclude=True, repr=False,
                                              description="the question asked before this one in the conversation")

    def all_parts(self) -> list[ParsedQuestion]:
        return self.parts or [self]


# ------------------------------------------------------------------------------- typed plan (API)
class PlanSlots(BaseModel):
    vessel: str | None = Field(None, description="segment or artery code, e.g. 'pLAD', 'RCA'")
    vessels: list[str] = Field(default_factory=list, description="every vessel of a comparison")
    structure: str | None = Field(None, description="registry structure name ('aorta', 'lv_blood'), or for a "
                                  "segmentation the finding shown: 'calcification', 'plaque', 'stent'")
    structures: list[str] = Field(default_factory=list, description="every structure of the request")
    stent_length_mm: float | None = None
    stent_diameter_mm: float | None = None
    troponin_value: float | None = None
    troponin_unit: Literal["ng/L", "pg/mL", "ng/mL"] | None = None
    sex: Literal["male", "female"] | None = None
    landmark: str | None = Field(None, description="registry landmark key or lesion_start / lesion_end / lesion_mld")


class PlanPart(BaseModel):
    intent: Intent
    slots: PlanSlots
    text: str = Field(description="the words of the question this part answers")


class QuestionPlan(BaseModel):
    """What the assistant will do for a question: one part per request, follow-ups resolved."""

    question: str
    parts: list[PlanPart]
    follow_up: bool = False
    problem: str | None = Field(None, description="why the question is refused as asked, e.g. a negative length")

    @property
    def intents(self) -> list[str]:
        return [p.intent for p in self.parts]


def understand(question: str, prior: Sequence[str] = ()) -> QuestionPlan:
    """The typed plan of ``question``, follow-ups resolved against the ``prior`` questions (oldest first).

    Examples::

        >>> understand("What is the calcium score and how severe is the LAD stenosis?").intents
        ['calcium', 'stenosis']
        >>> understand("and in the RCA?", prior=["How tight is the proximal LAD?"]).parts[0].slots.vessel
        'RCA'
    """
    previous = None
    for text in prior:
        try:
            previous = parse_question(text, previous)
        except ValueError:
            previous = None
    q = parse_question(question, previous)
    parts = [PlanPart(intent=p.intent, text=p.text, slots=PlanSlots(
        vessel=p.segment or p.artery, vessels=list(p.vessels), structure=next(iter(_shown(p)), None),
        structures=_shown(p),
        stent_length_mm=p.stent_length_mm, stent_diameter_mm=p.stent_diameter_mm,
        troponin_value=p.troponin_value, troponin_unit=p.troponin_unit, sex=p.sex, landmark=p.landmark))
        for p in q.all_parts()]
    return QuestionPlan(question=q.text, parts=parts, follow_up=any(p.follow_up for p in q.all_parts()),
                        problem=q.problem)


def _shown(p: ParsedQuestion) -> list[str]:
    """The structures a part is about; a segmentation of a finding is about that finding."""
    shown = list(p.structures)
    if p.intent == "segment" and p.finding in ("calcification", "plaque", "stent"):
        shown.append(p.finding)
    return shown


# ------------------------------------------------------------------------------------- parsing
_YES_NO_START = re.compile(r"^\s*(is|are|does|do|will|would|can|could|should|has|have|was|were|did|any|may)\b"
                           r"(?!\s+(you|u|i)\b)", re.I)  # "can you segment ..." is a request, not a yes/no question
_FINDING_PATTERNS: list[tuple[FindingWord, re.Pattern]] = [
    ("stent", re.compile(r"\bstent|\bdes\b|\bbms\b|\bscaffold", re.I)),
    ("occlusion", re.compile(r"\bocclu|\bcto\b|\btotally blocked\b", re.I)),
    ("plaque", re.compile(r"\bnon-?calcified\b|\bsoft plaque|\bfibro-?fatty|\blipid", re.I)),
    ("calcification", re.compile(r"\bcalci|\bcalcium\b|\bca\b|\bcac\b|\bagatston", re.I)),
    ("plaque", re.compile(r"\bplaque", re.I)),
    ("stenosis", re.compile(r"\bstenos|\bnarrow", re.I)),
    ("lesion", re.compile(r"\blesion", re.I)),
]
_SCORE_WORDS = re.compile(r"\bscore|\bagatston|\bcac\b|\bburden|\bvolume|\bmass\b|\bhow much|\bquantif|\bload\b", re.I)
_STENT_SIZE_WORDS = re.compile(r"\bsize|\bsizing|\blength|\bdiameter|\blong\b|\bwhich\b|\bwhat\b|\brecommend|\bplan|"
                               r"\bchoose|\bneed|\bfit|\bcover|\bspan|\breach|\benough|\bsuffic|\blanding|\btwo stents|"
                               r"\bsingle|\bone\b", re.I)
_REFERS_BACK = re.compile(r"\b(?:it|its|there|(?:that|this|the same|the) (?:lesion|stenosis|one|segment|vessel|artery|"
                          r"plaque|narrowing|stent))\b", re.I)
_POSITION = re.compile(r"\b(proximal(?:ly)?|prox|mid|middle|distal(?:ly)?|dist)\b", re.I)
_BARE_NUMBER = re.compile(r"(?<![\w.])(\d+(?:[.,]\d+)?)(?![\w.%])")
_COMPARE_BACK = re.compile(r"\bcompare (?:it|that|this)\b|\b(?:it|that|this) (?:vs\.?|versus|compared (?:with|to))\b", re.I)  # noqa: E501
_FOLLOW_UP_START = re.compile(r"^\s*(and|what about|how about|same (?:for|in|on)|and for|also|what of|now|then|ok(?:ay)?"  # noqa: E501
                              r",? and|what if)\b", re.I)
# Words that carry no request of their own: a clause made only of these (plus anatomy and numbers)
# continues the previous question.
_FILLER = set("""a an the and or of in on at for to about what how is are was were be it its that this those these
then also same now ok okay please one ones what's where's how's it's that's there's there with same as well vs versus do does did i we you me my our your
any also too again instead rather either both proximal mid middle distal patient patients sex female male
woman man lady gentleman per total each all mm millimetre millimeter millimetres millimeters cm if so just
he she him his her hers they them their theirs he's she's
""".split())  # a pronoun refers to the patient or to a vessel named before: it asks nothing itself  # noqa: E501
_CLAUSE_START = re.compile(r"^\s*(what|which|whose|where|how|is|are|does|do|will|would|can|could|should|has|have|was|were|"  # noqa: E501
                           r"did|any|show|segment|outline|draw|highlight|give|tell|measure|grade|quantify|locate|mark|"
                           r"point|find|search|list|compare|check|assess|evaluate|calculate|compute|estimate|score|"
                           r"display|plan|size|recommend|who|when|why)\b", re.I)
_LESION_WORDS = re.compile(r"\b(lesion|stenos[ie]s|narrowing|plaque|blockage)\b", re.I)


# One request per line or per numbered item ("1) calcium score 2) CAD-RADS") reads as one per clause.
_LINE_BREAK = re.compile(r"\s*[\r\n]+\s*(?:[-*\u2022]\s+)?")
_LIST_MARK = re.compile(r"^\s*\(?\d{1,2}[.)]\s+|(?<=\s)\(?\d{1,2}\)\s+(?=[A-Za-z])")


def _clean(text: str) -> str:
    text = correct_domain_spelling(text)
    text = _LIST_MARK.sub("; ", _LINE_BREAK.sub("; ", text.strip()))
    return " ".join(text.split()).strip(" ;")


# "the mid segment", "that segment": the noun names a place, it is no request to segment.
_SEGMENT_NOUN = re.compile(r"\b(proximal|prox|mid|middle|distal|dist|the|that|this|same|next|other|each|which)\s+"
                           r"segments?\b", re.I)


def _content_words(text: str) -> list[str]:
    from cardiovlm.assistant.slots import mask_for_embedding

    words = re.findall(r"[a-z][a-z'-]*", mask_for_embedding(_SEGMENT_NOUN.sub(r"\1", text)))
    return [w for w in words if w not in _FILLER and w not in ("vessel", "structure")]


# Nouns that name what is listed ("the pLAD and the mRCA lesions"), not a request of their own.
_LIST_NOUNS = {"lesion", "lesions", "stenosis", "stenoses", "narrowing", "narrowings", "one", "ones", "segment",
               "segments"}


def _request_words(text: str) -> list[str]:
    return [w for w in _content_words(text) if w not in _LIST_NOUNS]


def _is_clause(text: str) -> bool:
    return bool(_CLAUSE_START.match(text)) or len(_content_words(text)) >= 2


_ASKS_ABOUT_IT = re.compile(r"(?:^|[:,]\s*)(?:is|does|will|would|can|could|did|has|was)\s+it\b", re.I)
# "segment the LAD, which looks calcified", "draw the RCA, it seems heavily diseased": a description of what
# was just named, no request of its own.
_DESCRIBING = (r"(?:which|that|as it|since it|because it|it|they|this|as they)\s+(?:really\s+|also\s+)?"
               r"(?:looks?|seems?|appears?|is|are|was|were|has|have|had)\b")
_DESCRIPTION = re.compile(r"^\s*" + _DESCRIBING + r"(?!.*\?\s*$)", re.I)
_TRAILING_DESCRIPTION = re.compile(r",\s*" + _DESCRIBING + r"[^?]*$", re.I)
_ASKS_WHERE = re.compile(r"^\s*(?:where(?:'s|\s+(?:is|are|does|do|did|was|exactly))|locate|find|show|point|mark|"
                         r"pinpoint|indicate)\b", re.I)
_CONDITION = re.compile(r"^\s*(?:if|when|once|assuming|supposing|suppose|given|provided)\b", re.I)
# A connective after a semicolon or a sentence's end ("; also draw it", "? And the RCA") belongs to the
# separator, so the piece after it starts with its own verb.
_THEN_WORDS = r"(?:(?:and\s+)?(?:also|then|plus)\s+|and\s+)?"
_SENTENCE_END = (r"(?<=[.!])(?<!\bvs\.)(?<!\bDr\.)(?<!\bMr\.)(?<!\bMs\.)(?<!\bMrs\.)(?<!\be\.g\.)(?<!\bi\.e\.)"
                 r"\s+(?=[A-Za-z])")
_SEPARATOR = re.compile(r"(,?\s+(?:and also|and then|and additionally|and|also|as well as|along with|together with|"
                        r"in addition to|additionally|plus|then|or)\s+|\s*\+\s*|(?<=[A-Za-z]{3})\s+/\s+(?=[A-Za-z]{3})|\s*;\s*"  # noqa: E501
                        + _THEN_WORDS
                        + r"|(?<=\?)\s+" + _THEN_WORDS + "|" + _SENTENCE_END + _THEN_WORDS + r"|,\s+)", re.I)
# Separators that add a request rather than list names: "plus", "also", "as well as", a semicolon or a
# new sentence. Two pieces of different known intents around one of these are two requests even when
# neither is a clause or a confident match ("slice thickness, as well as the total calcium").
_ADDING = re.compile(r"\balso\b|\bas well as\b|\bplus\b|\bthen\b|\balong with\b|\btogether with\b|\bin addition to\b|"
                     r"\badditionally\b|[;?.!+/]", re.I)
# A plain list separator between two names ("the left main, LAD and RCA by narrowing") lists what
# one request is about.
_LISTING = re.compile(r"^\s*(?:,|,?\s*\b(?:and|or)\b)\s*$", re.I)
# A statement of context ("She has an RCA lesion; would a 28 mm stent cover it?") is no request of
# its own: it belongs to the question after it.
_STATEMENT = re.compile(r"^\s*(?:he|she|they|the patient|this patient|patient|pt|there)\s+(?:has|had|have|is|was|got|"
                        r"presents?|presented|underwent|came|comes)\b(?![^?]*\?\s*$)", re.I)
# Two pieces that each read as a confident request of a different kind are two requests even when
# neither is a full clause ("CAC-DRS and MACE risk?", "slice thickness and agatston?").
CONFIDENT = 0.6
# ... or as one that understood and far ahead of any other reading ("series description": study 0.50,
# the next intent 0.18).
CLEAR_LEAD = 0.25
# A piece this close to the bank's off-topic requests asks something else, however short.
OFF_TOPIC = 0.3


def _confident(m: IntentMatch) -> bool:
    ranked = m.ranked()
    lead = ranked[0][1] - ranked[1][1] if len(ranked) > 1 else ranked[0][1]
    return m.score >= CONFIDENT or (m.intent != "unknown" and lead >= CLEAR_LEAD)


def _asks_something_else(piece: str, match: IntentMatch | None = None) -> bool:
    """A piece the assistant does not understand is a request of its own ('tell me a joke about
    bananas') only when it starts like a clause and says enough, or reads like the bank's off-topic
    requests ('what's the weather'); 'where?' or 'what do you measure?' only continue the request
    before it."""
    if not _CLAUSE_START.match(piece):
        return False
    off_topic = match is not None and match.ranked()[0][0] == "unknown" and match.score >= OFF_TOPIC
    return off_topic or len(_content_words(piece)) >= 2


def _piece_numbers(piece: str):
    try:
        return numbers_in(piece)
    except QuestionValueError:
        from cardiovlm.assistant.slots import Numbers

        return Numbers()


def _superlative(text: str) -> Literal["most_calcified", "most_stenosed"] | None:
    if re.search(r"\b(most|heaviest|highest|biggest|largest|greatest|maximal|max)\b.{0,25}\bcalci|\bmost (heavily )?calcif",  # noqa: E501
                 text, re.I):
        return "most_calcified"
    if re.search(r"\b(most|worst|tightest|severest|highest[- ]grade|narrowest|most severe(ly)?)\b[^?.]{0,25}"
                 r"\b(stenos|narrow|diseased|lesion|obstruct|block)|\b(worst|tightest|severest|most severe)\b",
                 text, re.I):
        return "most_stenosed"
    return None


def _piece_intent(piece: str, match: IntentMatch, lesion_context: bool) -> str:
    intent = _choose_intent(match, _piece_numbers(piece), landmark_in(piece, lesion_context), piece)
    if intent == "segment" and not _DISPLAY_WORD.search(piece):
        superlative = _superlative(piece)
        if superlative:  # measured unless it is to be shown (as in _parse_part)
            return "calcium" if superlative == "most_calcified" else "stenosis"
    if intent == "stenosis" and not anatomy_in(piece).vessels and _PATIENT_LEVEL.search(piece):
        return "cadrads_patient"  # as in _parse_part: the patient's disease as a whole
    return intent


def _carries_own_slot(piece: str, intent: str, lesion_context: bool) -> bool:
    """The piece holds a value only its intent uses (a troponin for risk, a stent size, a landmark)."""
    n = _piece_numbers(piece)
    return ((intent == "risk" and n.troponin_value is not None)
            or (intent == "stent" and (n.stent_length_mm is not None or n.stent_diameter_mm is not None))
            or (intent == "locate" and landmark_in(piece, lesion_context) is not None))


def _own_topics(first: str, second: str) -> bool:
    """One piece names calcium and no narrowing, the other narrowing and no calcium ("Agatston per
    vessel, then the worst stenosis"), or one names a quantity no tool measures and the other does not
    ("LVEF and the LAD stenosis"): two requests, however short."""
    def topic(piece: str) -> str | None:
        unmeasurable = unmeasurable_topic(piece)
        if unmeasurable:
            return unmeasurable
        calcium, narrowing = bool(_CALCIUM_EVIDENCE.search(piece)), bool(_NARROWING_EVIDENCE.search(piece))
        return None if calcium == narrowing else ("calcium" if calcium else "narrowing")

    a, b = topic(first), topic(second)
    return a is not None and b is not None and a != b


def _names_at(piece: str, end: bool) -> bool:
    """The piece ends (or starts, after an article) with the name of a vessel or structure."""
    from cardiovlm.assistant.slots import mask_for_embedding

    words = [w for w in mask_for_embedding(piece).split() if w != "?"]
    if not end:
        words = words[1:] if words[:1] == ["the"] else words
    return bool(words) and words[-1 if end else 0] in ("vessel", "structure")


def _split(text: str, lesion_context: bool) -> list[tuple[str, IntentMatch]]:
    """The requests of a question, each with its intent match; one entry for a single request."""
    tokens = _SEPARATOR.split(text)
    pieces, separators = tokens[0::2], tokens[1::2]
    keep = [i for i, p in enumerate(pieces) if p.strip(" ,?.;+")]
    if len(keep) < 2:
        return [(text, match_texts([text])[0])]
    whole, *matches = match_texts([text, *[pieces[i].strip() for i in keep]])
    parts: list[tuple[str, IntentMatch, str]] = []
    for n, i in enumerate(keep):
        piece, m = pieces[i].strip(), matches[n]
        intent = _piece_intent(piece, m, lesion_context)
        if parts:
            prev_text, prev, prev_intent = parts[-1]
            clauses = (_is_clause(piece) and _is_clause(prev_text)
                       and (intent != "unknown" or _asks_something_else(piece, m))
                       and (prev_intent != "unknown" or _asks_something_else(prev_text, prev)))
            confident = (_confident(m) and _confident(prev) and "unknown" not in (intent, prev_intent)
                         and bool(_request_words(piece)) and bool(_content_words(prev_text)))
            # A new request: both sides ask something, and different things. A side that asks nothing the
            # assistant knows still splits off when it starts like a clause, so it is named as not answered.
            slot_backed = "unknown" not in (intent, prev_intent) and bool(_content_words(prev_text)) and (
                _carries_own_slot(piece, intent, lesion_context) or _own_topics(prev_text, piece))
            # "If I put a 22 mm stent in, am I covering it?": a condition and its question are one request.
            conditional = bool(_CONDITION.match(prev_text)) and separators[i - 1].strip() == ","
            # "a 30 mm BMS, mid RCA: does it cover edge to edge?": a yes/no on "it" naming no finding of its
            # own asks about the piece before ("is the circ calcified and is it narrowed?" asks two things).
            about_it = bool(_ASKS_ABOUT_IT.search(piece)) and not (
                _NARROWING_EVIDENCE.search(piece) or any(p.search(piece) for _, p in _FINDING_PATTERNS))
            separator = separators[i - 1] if i - 1 < len(separators) else " "
            # After "also", "plus" or a new sentence even a bare noun ("... and also the stenosis of the RCA")
            # is a request of its own: a list of names reads "A and B", not "A, also B".
            # A piece that ends its own question ("EF? and how narrow ...") is followed by a new request.
            ends_question = prev_text.rstrip().endswith(("?", "!"))
            adding = ((bool(_ADDING.search(separator)) or ends_question) and "unknown" not in (intent, prev_intent)
                      and bool(_content_words(piece)) and bool(_content_words(prev_text)))
            listing = (bool(_LISTING.match(separator)) and _names_at(prev_text, end=True) and _names_at(piece, end=False)  # noqa: E501
                       and not _own_topics(prev_text, piece))
            statement = bool(_STATEMENT.match(prev_text)) or (
                bool(_DESCRIPTION.match(piece)) and separator.strip() == ",")
            # "... with a single 20 mm stent, or will I need two?": an alternative that asks nothing
            # known of its own is the other answer to the same question ("narrowed or calcified?" asks two).
            alternative = bool(re.search(r"\bor\b", separator, re.I)) and "unknown" in (intent, prev_intent)
            # "where is the crux and where is the apex": one intent, but two places, each pointed to.
            # ("where's the crux, where the PDA comes off?" names one place twice).
            two_places = (intent == prev_intent == "locate" and bool(_ASKS_WHERE.match(piece)) and len(
                {landmark_in(prev_text, lesion_context), landmark_in(piece, lesion_context)} - {None}) == 2)
            same = intent == prev_intent and not two_places
            if (same or conditional or about_it or listing or statement or alternative
                    or not (clauses or confident or slot_backed or adding)):
                joined = prev_text + separators[i - 1] + piece if i - 1 < len(separators) else prev_text + " " + piece
                joined_match = match_cached(joined) if joined != text else whole
                parts[-1] = (joined, joined_match, _piece_intent(joined, joined_match, lesion_context))
                continue
        parts.append((piece, m, intent))
    if len(parts) == 1:
        return [(text, whole)]
    return [(p, m) for p, m, _ in parts]


def parse_question(text: str, previous: ParsedQuestion | None = None) -> ParsedQuestion:
    """Intent, anatomy and numbers of one question; a follow-up inherits what it leaves out.

    Examples::

        >>> q = parse_question("Will a 20 mm stent fully cover the proximal LAD lesion?")
        >>> q.intent, q.task, q.segment, q.stent_length_mm, q.is_yes_no
        ('stent', 'stent_coverage', 'pLAD', 20.0, True)
        >>> parse_question("what about a 24 mm one?", previous=q).segment
        'pLAD'
    """
    if not text or not text.strip():
        raise ValueError("the question is empty")
    clean = _clean(text)
    lesion_context = bool(_LESION_WORDS.search(clean)) or any(
        p.landmark or p.intent in ("stenosis", "stent", "locate") for p in (previous.all_parts() if previous else []))
    pieces = _split(clean, lesion_context)
    # An elliptic follow-up ("which artery has the most?") leaves its topic word in the question before.
    before = " ".join(p.text for p in previous.all_parts()) if previous is not None else ""
    parts = [_parse_part(piece, match, lesion_context, before) for piece, match in pieces]
    # Anatomy or a number after "and ..." is no request of its own, whatever it resembles; a whole
    # first question worded as one ("How is the LAD?") keeps what it reads as.
    opening = previous is None and len(parts) == 1 and bool(_CLAUSE_START.match(clean)) \
        and not _FOLLOW_UP_START.search(clean)
    parts = [p if opening or _has_own_request(p) else p.model_copy(update={"intent": "unknown", "task": "unknown",
                                                                            "is_yes_no": False}) for p in parts]
    prev_parts = previous.all_parts() if previous is not None else []
    history = _history(previous)
    resolved: list[ParsedQuestion] = []
    for i, part in enumerate(parts):
        # The first part continues the previous question; later parts continue the part before them.
        context = [*prev_parts] if i == 0 else [resolved[-1]]
        part = _resolve_follow_up(part, context, previous_all=history)
        if (i > 0 and part.intent in ANATOMY_INTENTS and not (part.vessels or part.structures)
                and resolved[-1].vessels and resolved[-1].is_yes_no and not _CLAUSE_START.match(part.text)):
            # "Is the LAD calcified and narrowed?": a second predicate of a yes/no question shares its subject.
            part = part.model_copy(update=_anatomy_of(resolved[-1]))
        if part.intent == "cadrads_patient" and part.vessels:  # "what's its CAD-RADS?" about a vessel
            part = part.model_copy(update={"intent": "stenosis", "task": "stenosis"})
        resolved.append(part)
    resolved = [piece for part in resolved for piece in _treatment_split(part)]
    if len(resolved) == 1:
        return resolved[0].model_copy(update={"text": clean, "previous": _trimmed(previous)})
    first = resolved[0]
    return first.model_copy(update={"text": clean, "parts": resolved, "is_yes_no": False,
                                    "previous": _trimmed(previous)})


# "How long is the stent in the RCA?", "the diameter of her LAD stent": a stent in place, asked about.
_STENT_IN_PLACE = re.compile(
    r"\b(?:is|was|are|were)\s+(?:the|this|that|her|his|its|their)\s+(?:[\w-]+\s+)?stents?\b|"
    r"\b(?:length|diameter|size|dimensions?)\s+of\s+(?:the|this|that|her|his|its|their)\s+(?:[\w-]+\s+)?stents?\b|"
    r"\bstent'?s\s+(?:length|diameter|size)\b", re.I)
# A stent to be chosen or placed is a sizing question.
_SIZING_CUE = re.compile(r"\b(?:should|would|could|must|need|needs|needed|pick|choose|use|recommend|suggest|plan|"
                         r"cover|covers|span|for (?:the|this|that|a|an) (?:lesion|stenosis|narrowing|plaque))\b", re.I)
_TREATMENT = r"(?:stent(?:ing)?|pci|intervention|angioplasty|revasculari[sz]ation|bypass|cabg|treatment|surgery)"
# Whether a lesion should be treated: "does this plaque need stenting?", "is PCI indicated?", "would you stent it?".
_TREATMENT_CUE = re.compile(
    r"\b(?:needs?|requires?|warrants?|merits?|qualif(?:y|ies) for|benefits? from|calls? for)\s+(?:a |an |any )?"
    + _TREATMENT + r"\b|\b" + _TREATMENT + r"\s+(?:is\s+|be\s+)?(?:indicated|needed|necessary|required|warranted|"
    r"recommended)\b|\b(?:should|would you|do you|shall)\s+(?:i |we |you |they )?(?:stent|treat|intervene|"
    r"revasculari[sz]e|dilate)\b|\b(?:should|does|do|will|would)\b.{0,40}\bbe\s+(?:stented|treated|dilated|"
    r"revasculari[sz]ed)\b", re.I)


def _treatment_split(part: ParsedQuestion) -> list[ParsedQuestion]:
    """Whether to treat a lesion is the clinician's decision, but it rests on the lesion's severity:
    such a question is answered with the measured stenosis and the reason the decision is not the tool's.
    A stent size in the question makes it a sizing question instead."""
    if part.intent in ("risk", "reports", "identity", "unknown") or not _TREATMENT_CUE.search(part.text) \
            or part.stent_length_mm is not None or part.stent_diameter_mm is not None:
        return [part]
    severity = part.model_copy(update={"intent": "stenosis", "task": "stenosis", "is_yes_no": False,
                                       "stent_status": None, "cannot_topic": None,
                                       "finding": "stenosis" if part.finding in (None, "stent") else part.finding})
    decision = part.model_copy(update={"intent": "cannot", "task": "cannot", "is_yes_no": False,
                                       "cannot_topic": "treatment_decision"})
    return [severity, decision]


# How many earlier questions a follow-up may reach back to (the question before first).
HISTORY_DEPTH = 6


def _history(previous: ParsedQuestion | None) -> list[ParsedQuestion]:
    """The parts of the earlier questions, oldest first, back to HISTORY_DEPTH questions."""
    chain: list[ParsedQuestion] = []
    q = previous
    while q is not None and len(chain) < HISTORY_DEPTH:
        chain.append(q)
        q = q.previous
    return [p for q in reversed(chain) for p in q.all_parts()]


def _trimmed(previous: ParsedQuestion | None) -> ParsedQuestion | None:
    """The chain of earlier questions cut at HISTORY_DEPTH, so a long session stays small."""
    if previous is None:
        return None
    chain: list[ParsedQuestion] = []
    q: ParsedQuestion | None = previous
    while q is not None and len(chain) < HISTORY_DEPTH:
        chain.append(q)
        q = q.previous
    out: ParsedQuestion | None = None
    for earlier in reversed(chain):
        out = earlier.model_copy(update={"previous": out})
    return out


def _parse_part(text: str, match: IntentMatch, lesion_context: bool = False, before: str = "") -> ParsedQuestion:
    anatomy = anatomy_in(text)
    problem = None
    try:
        numbers = numbers_in(text)
    except QuestionValueError as err:
        from cardiovlm.assistant.slots import Numbers

        numbers, problem = Numbers(), str(err)
    landmark = landmark_in(text, lesion_context=lesion_context)
    intent = _choose_intent(match, numbers, landmark, text, before)
    vessel_end = vessel_end_in(text) if landmark is None and _WHERE.search(text) else None
    if vessel_end and intent in ("stenosis", "segment", "locate", "unknown"):
        # "Where does the RCA end?": no landmark marks it; the vessel's last segment is drawn instead.
        intent, anatomy.vessels = "segment", [vessel_end]
    dominance = bool(_DOMINANCE_CUE.search(text)) or (intent == "cannot" and match.topic == "dominance")
    if dominance:
        # "Which vessel gives off the PDA?" is the dominance question: the PDA names it, it is not asked about.
        intent, anatomy.vessels = "cannot", []
    if intent == "cadrads_patient" and anatomy.vessels:
        intent = "stenosis"  # the CAD-RADS grade of a named vessel is that vessel's stenosis
    if intent == "locate" and landmark and not landmark.startswith("lesion_"):
        # "left main ostium", "LV apex": the anatomy names the landmark, it is not asked about.
        anatomy.vessels, anatomy.structures = [], []

    segment = artery = structure = None
    vessels = list(anatomy.vessels)
    if vessels:
        first = vessels[0]
        if first in SEGMENTS_BY_CODE:
            segment = first
        else:
            artery = first
    if anatomy.structures:
        structure = anatomy.structures[0]
    structures = list(anatomy.structures)

    # "segment the LAD, which looks calcified": what the request names is drawn, not the description after it.
    named = _TRAILING_DESCRIPTION.sub("", text) if intent == "segment" and (vessels or structures) else text
    finding = next((name for name, pattern in _FINDING_PATTERNS if pattern.search(named)), None)
    superlative = _superlative(text)
    if intent == "segment" and superlative and not _DISPLAY_WORD.search(text):
        # "the worst stenosis in that vessel": a superlative is measured unless it is to be shown.
        intent = "calcium" if superlative == "most_calcified" else "stenosis"
    if intent == "stenosis" and not vessels and superlative is None and _PATIENT_LEVEL.search(text):
        intent = "cadrads_patient"  # the patient's disease as a whole is what CAD-RADS grades

    threshold = None
    if re.search(r"\b(severe|critical|tight|high[- ]grade)\b", text, re.I):
        threshold = SEVERE_PERCENT  # CAD-RADS 4A
    elif re.search(r"\b(significant|obstructive|flow[- ]limiting|ha?emodynamic|relevant)\b", text, re.I):
        threshold = OBSTRUCTIVE_PERCENT  # obstructive by CT, CAD-RADS 3 or more

    stent_status = None
    if re.search(r"\brestenos|\bISR\b|\bin-?stent (stenosis|narrowing|occlusion)", text, re.I):
        stent_status, finding = "restenosis", "stent"
    elif finding == "stent" and re.search(r"\bpatent\b|\bpatency\b|\bopen\b|\boccluded\b|\bworking\b|\blook",
                                          text, re.I):
        stent_status = "patency"

    if stent_status == "restenosis" and intent == "stent" and numbers.stent_length_mm is None \
            and numbers.stent_diameter_mm is None:
        # In-stent restenosis is a narrowing of the stented segment, measured through the stent; no stent is sized.
        intent = "stenosis"
    lengths = list(numbers.stent_length_range_mm or ([numbers.stent_length_mm] if numbers.stent_length_mm else []))
    is_yes_no = bool(_YES_NO_START.match(text))
    task = _task(intent, text, finding, stent_status, numbers.stent_length_mm, is_yes_no, bool(vessels), superlative)
    about_self = match.topic == "assistant" or bool(_SELF_CUE.search(text))
    if intent == "identity" and about_self and not _PATIENT_WORD.search(text):
        # "who made you", "what can you do": a question about the assistant, not about whose study this is.
        task = "about_assistant"
    if intent == "stenosis" and task == "presence" and finding is None:
        finding = "stenosis"
    if (task == "stent_coverage" and numbers.stent_length_mm is None and numbers.stent_diameter_mm is None
            and _STENT_IN_PLACE.search(text) and not _SIZING_CUE.search(text)):
        # The size of a stent already there is its state: found on the images and measured through,
        # not a stent to choose for a lesion.
        task, finding = "stenosis", "stent"
    return ParsedQuestion(
        text=text, intent=intent, task=task, segment=segment, artery=artery, vessels=vessels, structure=structure,
        structures=structures,
        finding=finding, stent_length_mm=numbers.stent_length_mm, stent_diameter_mm=numbers.stent_diameter_mm,
        stent_lengths_mm=lengths, device=numbers.device, troponin_value=numbers.troponin_value,
        troponin_unit=numbers.troponin_unit, sex=sex_in(text), landmark=landmark if intent == "locate" else None,
        superlative=superlative, stenosis_threshold_percent=threshold, stent_status=stent_status,
        cannot_topic=(("dominance" if dominance else unmeasurable_topic(text) or match.topic) if intent == "cannot"
                      else None), problem=problem,
        is_yes_no=is_yes_no and task in YES_NO_TASKS, confidence=round(match.score, 3),
    )


_DISPLAY = re.compile(r"^\s*(?:(?:can|could|would|will) (?:you|i)\s+(?:please\s+)?(?:see\s+)?|please\s+|i(?:'d| would) "
                      r"like (?:to see\s+)?|let me see\s+)?(?:show|highlight|draw|outline|paint|mask|segment|display|"
                      r"visuali[sz]e|overlay|contour|delineate|colou?r|trace|make a mask|give me a mask|pull up)\b", re.I)  # noqa: E501
# "can I see the plaque in the LM?", "I want to look at the calcium": to see a finding is to have it drawn.
_SEE_REQUEST = re.compile(r"^\s*(?:(?:please\s+)?(?:can|could|may) (?:i|we)|(?:i|we)(?:'d| would)? (?:like|want|wanna|"
                          r"need)(?: to)?|let me|let'?s)\s+(?:(?:please|quickly|just)\s+)?(?:see|view|look at|"
                          r"have a look at|visuali[sz]e)\b", re.I)
_DISPLAY_WORD = re.compile(r"\b(?:show|highlight|draw|outline|paint|mask|segment|display|visuali[sz]e|overlay|contour|"
                           r"delineate|colou?r|trace|see|pull up|view)", re.I)
_STENT_EVIDENCE = re.compile(r"\bstent|\bdes\b|\bbms\b|\bscaffold|\bpci\b|\bdevice|\brestenos|\bisr\b|\bcover|\bspan",
                             re.I)  # covering a lesion is what a stent does
# Another time or other patients: the answer is in the reports, not in this study's images.
_RETRIEVAL_CUE = re.compile(
    r"\b(?:other|similar|comparable|matching)\s+(?:patients?|people|cases?|stud(?:y|ies)|reports?|exams?)\b|"
    r"\b(?:on file|in the (?:archive|records?|chart|database))\b|\breported\b|\blast (?:time|year|month|visit)'?s?\b|"
    r"\b(?:previous|prior|earlier|older|old|last)\s+(?:\w+\s+)?(?:reports?|stud(?:y|ies)|scans?|ct|cta|ccta|exams?|echo|"
    r"angiograms?|imaging|results?|visits?)\b", re.I)
# "What did it show?", "the last CT showed": a study or a vessel showed something, nobody asks to be shown it.
_REPORTED_SHOW = re.compile(r"\b(?:did|does|do|has|have)\s+(?!you\b|u\b|i\b|we\b)(?:the\s+)?[\w-]+\s+show\b|"
                            r"\bshow(?:ed|s|n)\b", re.I)
# "who" and "whose" ask for a person, and the person a study is about is its patient.
_PERSON_CUE = re.compile(r"^\s*(?:who|whose)\b|\bwhose\b|\b(?:which|what) (?:patient|person)\b|\bname\b(?!\s+(?:of\s+)?(?:the\s+)?(?:vessel|artery|arteries|"  # noqa: E501
                         r"segment|branch|series|protocol|kernel|scanner|structure))", re.I)
# A question naming the patient (or a person's identifiers) is about the patient, never about the assistant.
_PATIENT_WORD = re.compile(r"\b(?:patient|pt|name|mrn|dob|birth|born|address|he|she|his|her|mr|mrs|ms)\b", re.I)
# Disease of the patient as a whole, not of a vessel: "obstructive disease anywhere", "overall".
_PATIENT_LEVEL = re.compile(r"\b(?:overall|anywhere|in (?:any|all) (?:of (?:the|his|her) )?(?:vessels?|arteries)|"
                            r"obstructive (?:coronary )?(?:artery )?disease|obstructive cad|"
                            r"(?:multi|two|three|single|one|[123])[- ]?vessel (?:coronary )?disease)\b", re.I)
# A series, an acquisition or its header is what a study question is about, whatever else it names
# ("is there a calcium score series?").
_STUDY_CUE = re.compile(r"\bseries\b|\bacquisition|\bacquired\b|\bprotocol\b|\bdicom\b|\bheader\b|\bmodality\b", re.I)
# Whether the images are real or made is the study's provenance, not whose identity it carries.
PROVENANCE_CUE = re.compile(r"\b(?:real|synthetic|phantoms?|simulat\w*|artificial|genuine|fake|fictional|made[- ]up|"
                             r"generated|computer[- ]generated|actual (?:patient|person|human))\b", re.I)
# "are you a real doctor" asks about the assistant, not about the images.
_SECOND_PERSON = re.compile(r"\b(?:you|your|yourself|u)\b", re.I)
# A question on the assistant's own nature ("are you a doctor", "who built you", "your limitations").
_SELF_CUE = re.compile(
    r"^\s*(?:are|were) (?:you|u)\b"
    # "what can you do (for me)?" ends the question; "what can you do about this lesion" asks about the lesion
    r"|\bwhat\b[^?]{0,30}\b(?:can|could) (?:you|u)\s+(?:do|handle|help|offer|manage|answer)"
    r"(?:\s+(?:me|us))?(?:\s+(?:with|for (?:me|us)))?\s*[?.!]*\s*$"
    r"|\b(?:am i|are we) (?:chatting|talking|speaking|writing) (?:with|to)\b"
    r"|\b(?:who|what) (?:are|made|built|created|trained|designed|wrote|developed|programmed) (?:you|u)\b"
    r"|\babout (?:you|yourself)\b"
    r"|\byour (?:name|purpose|limitations?|capabilit\w+|abilit\w+|features?|functions?|makers?|creators?"
    r"|developers?)\b",
    re.I)
# Words that ask for a number: a display request naming one also wants the measurement.
_MEASURE_WORDS = re.compile(r"\bscor|\bagatston|\bcac-?drs|\bcad-?rads|\bvolume|\bmass\b|\bhow (?:much|many|tight|"
                            r"severe|bad|narrow)|\bpercent|%|\bgrade|\bdegree|\bseverity|\bmeasure|\bquantif", re.I)
_WHERE = re.compile(r"\bwhere\b|\bhow far\b|\bpoint\b|\blocate\b|\bshow\b", re.I)
# Which artery gives the posterior descending (or posterolateral) branch is the heart's dominance.
_DOMINANCE_CUE = re.compile(r"\b(?:which|what|whose)\b[^?]{0,40}\b(?:gives?|giving|gave|supplies|supplying|feeds?|"
                            r"provides?)\b[^?]{0,20}\b(?:pda|r-pda|l-pda|posterior descending|plb|posterolateral)|"
                            r"\b(?:pda|posterior descending(?: artery)?)\b[^?]{0,30}\b(?:comes? from|arises? from|"
                            r"supplied by|given off by|fed by)\s+(?:which|what)\b", re.I)
# Quantities no tool measures, named outright: the question gets the reasoned "cannot" of that topic.
_UNMEASURABLE: list[tuple[str, re.Pattern]] = [
    ("ejection_fraction", re.compile(r"\bejection fraction\b|\blv ?ef\b|\bef\b|\bstroke volume\b|\bcardiac output\b",
                                     re.I)),
    # Whether a narrowing limits flow is a question of pressure, not of the lumen's diameter.
    ("ffr", re.compile(r"\b(?:ct-?)?ffr(?:-?ct)?\b|\bifr\b|\bfractional flow\b|\bisch(?:a)?emi|\bperfusion\b|"
                       r"\bflow[- ]?limit|\bha?emodynamic(?:al(?:ly)?)?\b|\bfunctional(?:ly)? significan|"
                       r"\b(?:limit|reduc|restrict|impair|compromis)\w*\s+(?:the\s+)?(?:blood\s+)?flow\b", re.I)),
    ("pulmonary_embolism", re.compile(r"\bpulmonary embol|\bpe\b|\bctpa\b|\bclots? in the lungs?\b", re.I)),
    ("plaque_vulnerability", re.compile(r"\bruptur|\bvulnerab|\bhigh[- ]risk (?:plaque|features?)\b|\bnapkin[- ]ring\b|"
                                        r"\bpositive(?:ly)? remodel|\bunstable plaque\b|\blow[- ]attenuation plaque\b|"
                                        r"\bspotty calcif", re.I)),
]


def unmeasurable_topic(text: str) -> str | None:
    """The "cannot" topic a question names outright (ejection fraction, FFR, plaque vulnerability), else None."""
    return next((topic for topic, pattern in _UNMEASURABLE if pattern.search(text)), None)


# A calcium question names calcium (or its score); a question naming calcium and no narrowing leans to calcium.
_CALCIUM_EVIDENCE = re.compile(r"(?<!non-)(?<!non )\bcalci|\bca\b|\bcacs?\b|\bcac-?drs|\bagatston|\bscor|\bburden|"
                               r"\bhounsfield", re.I)
_NARROWING_EVIDENCE = re.compile(r"\bstenos|\bnarrow|\blesion|\bobstruct|\bblock|\btight|\boccl|\bsignifican|\bsevere|"
                                 r"\bcad-?rads|\blumen|\bmld\b|\bmla\b|\bpercent|%|\bdiameter|\bflow|\bcritical|\bpatent|"
                                 r"\bdiseas|\bplaque|\bworse|\bbad|\bgrade", re.I)


def _choose_intent(match: IntentMatch, numbers, landmark: str | None, text: str, before: str = "") -> str:
    """The matched intent, checked against the slots.

    A locate needs a landmark, a stent question a stent (a word, a size or a device) and a calcium
    question calcium or its score: without one the next intent is taken. A troponin value, a stent
    size, a landmark or a request to show something pulls a close call towards risk, stent, locate or
    segment; another time or other patients pull it strongly towards the reports; calcium named
    without any narrowing pushes it away from stenosis. The words of the
    question ``before`` count as evidence too (a follow-up may leave its topic there).
    """
    scores = dict(match.scores)
    if numbers.troponin_value is not None:
        scores["risk"] += SLOT_PULL
    has_stent_numbers = numbers.stent_length_mm is not None or numbers.stent_diameter_mm is not None
    if has_stent_numbers or numbers.device:
        scores["stent"] += SLOT_PULL
    elif not _STENT_EVIDENCE.search(text + " " + before):
        scores["stent"] = -1.0
    if not _CALCIUM_EVIDENCE.search(text + " " + before):
        scores["calcium"] = -1.0
    elif not _NARROWING_EVIDENCE.search(text):
        scores["stenosis"] -= SLOT_PULL  # "which is more calcified, the LCx or the RCA?" asks no narrowing
    if landmark is None:
        scores["locate"] = -1.0
    else:
        # The start or end of a lesion is a place: a question naming one asks where it is.
        scores["locate"] += 2 * SLOT_PULL if landmark in ("lesion_start", "lesion_end") else SLOT_PULL
    if _RETRIEVAL_CUE.search(text):
        scores["reports"] += 3 * SLOT_PULL
    if unmeasurable_topic(text):
        # "will the LAD plaque rupture", "is the RCA stenosis flow-limiting" name what no tool measures: the
        # narrowing named with it is the subject, not the question, so the reading of a narrowing yields.
        scores["cannot"] = max(scores["cannot"] + 2 * SLOT_PULL, scores["stenosis"] + SLOT_PULL)
    display = bool(_DISPLAY.match(text) or _SEE_REQUEST.match(text))
    if display and not _MEASURE_WORDS.search(text):
        # "show the calcified plaque": the finding word names what to draw; no measurement is asked.
        scores["segment"] += 1.5 * SLOT_PULL
        scores["calcium"] -= SLOT_PULL
        scores["stenosis"] -= SLOT_PULL
    elif display:
        # "display the Agatston per vessel": the display verb asks to be shown a number, not a mask.
        scores["segment"] -= 2 * SLOT_PULL
    elif _REPORTED_SHOW.search(text):
        scores["segment"] -= 2 * SLOT_PULL
    if _PERSON_CUE.search(text):
        scores["identity"] += SLOT_PULL
    if _SELF_CUE.search(text):
        scores["identity"] += 2 * SLOT_PULL  # a question put to the assistant about itself
    if _STUDY_CUE.search(text) or (PROVENANCE_CUE.search(text) and not _SECOND_PERSON.search(text)):
        scores["study_info"] += SLOT_PULL
    if match.intent == "unknown" and max(scores.values()) < match.score + SLOT_PULL:
        return "unknown"
    from cardiovlm.assistant.intents import default_matcher

    return default_matcher().decide(scores)


def _task(intent: str, text: str, finding, stent_status, stent_length, is_yes_no: bool, has_vessel: bool,
          superlative) -> Task:
    if intent == "calcium":
        if is_yes_no and has_vessel and not _SCORE_WORDS.search(text):
            return "presence"
        return "calcium_score"
    if intent == "stenosis":
        if stent_status == "restenosis" or (finding == "plaque" and is_yes_no):
            return "presence"
        return "stenosis"
    if intent == "stent":
        if stent_length is not None:
            return "stent_coverage"
        if stent_status:
            return "presence"
        if is_yes_no and not _STENT_SIZE_WORDS.search(text) or re.search(r"\bwhere\b|\bprior\b|\bprevious|\bstented\b|"
                                                                         r"\bimplanted\b|\bpci\b", text, re.I):
            return "presence"
        return "stent_coverage"
    return {"cadrads_patient": "cadrads", "identity": "patient_identity"}.get(intent, intent)  # type: ignore[return-value]


# ----------------------------------------------------------------------------------- follow-ups
def _brings(q: ParsedQuestion) -> bool:
    return any((q.vessels, q.structures, q.stent_length_mm, q.stent_diameter_mm, q.troponin_value, q.landmark,
                q.sex, _POSITION.search(q.text), _BARE_NUMBER.search(q.text)))


# The words of an age ("a 70 year old man", "aged 58"): beside a stated sex they describe the patient.
_AGE_WORDS = {"year", "years", "yr", "yrs", "old", "aged", "age", "yo", "y"}
_AGE_NUMBER = re.compile(r"\d+\s*(?:-?\s*years?|yrs?|y/?o)\b|\baged?\s+\d+", re.I)


def _has_own_request(q: ParsedQuestion) -> bool:
    """The part asks for something itself (not only anatomy or a number after 'and ...'). A statement
    of the patient's sex and age ("the patient is a 70 year old man") asks nothing."""
    words = _content_words(q.text)
    if q.sex and set(words) <= _AGE_WORDS:
        words = []
    return q.intent != "unknown" and (bool(words) or q.task == "about_assistant")


def _resolve_follow_up(q: ParsedQuestion, context: list[ParsedQuestion], previous_all: list[ParsedQuestion]) \
        -> ParsedQuestion:
    """Fill what a follow-up leaves out from the conversation.

    A part with a request of its own keeps its intent; it only takes the previous anatomy when it
    refers back ("cover it", "that lesion") or starts like a follow-up and names none. A part
    without one ("and in the RCA?", "what about a 24 mm one?") continues the most recent earlier
    request that can use what it brings.
    """
    if not context:
        return q
    own = _has_own_request(q)
    marker = bool(_FOLLOW_UP_START.search(q.text))
    named = bool(q.vessels or q.structure)
    refers_back = not named and bool(_REFERS_BACK.search(q.text))
    if own:
        base = _last_with_anatomy(context)
        if base is not None and named and _COMPARE_BACK.search(q.text):
            # "compare it with the LAD": the earlier request, over both vessels.
            vessels = list(dict.fromkeys([*base.vessels, *q.vessels]))
            return q.model_copy(update={"follow_up": True, "intent": base.intent, "task": base.task,
                                        "vessels": vessels, "finding": base.finding})
        if not (refers_back or (marker and not named)):
            return q
        if base is None:
            base = next((p for p in reversed(context) if p.landmark), None)
            if base is None:
                return q
        update: dict[str, Any] = {"follow_up": True}
        if q.intent in ANATOMY_INTENTS or (q.intent == "cadrads_patient" and refers_back):
            update.update(_anatomy_of(base))  # "what's its CAD-RADS?": the grade of that vessel
        if q.intent == "stent" and base.intent == "stent":
            update.update(_stent_numbers(q, base))
        if q.intent == "segment" and base.intent == "locate" and base.landmark and not base.landmark.startswith("lesion_"):  # noqa: E501
            # "mark it on the image" after a landmark: the landmark is what is to be shown.
            update.update(intent="locate", task="locate", landmark=base.landmark)
        elif q.intent == "segment" and q.finding is None and base.finding in ("calcification", "plaque", "stent"):
            update["finding"] = base.finding  # "draw it" after the calcium in the RCA: the calcium
        return q.model_copy(update=update)
    if not (_brings(q) or marker):
        return q
    base = _continuable(q, context) or _continuable(q, previous_all)
    if base is None:
        return q
    update = {"follow_up": True, "intent": base.intent, "task": base.task, "is_yes_no": base.is_yes_no,
                    "finding": q.finding or base.finding, "superlative": q.superlative or base.superlative,
                    "stent_status": q.stent_status or base.stent_status,
                    "stenosis_threshold_percent": q.stenosis_threshold_percent or base.stenosis_threshold_percent,
                    "cannot_topic": base.cannot_topic, "confidence": base.confidence}
    if not named:
        update.update(_anatomy_of(base))
        position = _POSITION.search(q.text)
        if position and base.vessels:
            # "and the distal segment?", "distal too?": that position on the same artery.
            same = _same_position_segment(position.group(1), base.vessels[0])
            if same:
                update.update(segment=same, artery=None, vessels=[same])
    if base.landmark and not q.landmark:
        update["landmark"] = base.landmark
        if base.landmark in ("left_coronary_ostium", "right_coronary_ostium"):
            side = re.search(r"\b(left|right)\b", q.text, re.I)
            if side:  # "and the right one?" after the left main ostium
                update["landmark"] = f"{side.group(1).lower()}_coronary_ostium"
    bare = _BARE_NUMBER.search(q.text)
    no_unit_number = (float(bare.group(1).replace(",", ".")) if bare and q.stent_length_mm is None
                      and q.stent_diameter_mm is None and q.troponin_value is None else None)
    if no_unit_number is not None and base.intent == "stent":
        value = no_unit_number
        if value >= MAX_STENT_DIAMETER_MM:
            update.update(stent_length_mm=value, stent_lengths_mm=[value])
        else:
            update["stent_diameter_mm"] = value
    # A number beside a stated sex or an age word ("female, 58", "58 years") is the patient's age, not a new value.
    if no_unit_number is not None and base.intent == "risk" and base.troponin_unit and q.sex is None \
            and not _AGE_NUMBER.search(q.text):
        update.update(troponin_value=no_unit_number, troponin_unit=base.troponin_unit)
    if base.intent == "stent":
        for name, value in _stent_numbers(q, base).items():
            update.setdefault(name, value)
    if base.intent == "risk":
        for name in ("troponin_value", "troponin_unit", "sex"):
            if getattr(q, name) is None:
                update.setdefault(name, getattr(base, name))
    return q.model_copy(update=update)


def _continuable(q: ParsedQuestion, context: list[ParsedQuestion]) -> ParsedQuestion | None:
    """The most recent request that what ``q`` brings can continue."""
    for base in reversed(context):
        if base.intent in ("unknown", "identity", "cannot"):
            continue
        if (q.vessels or q.structure) and base.intent not in ANATOMY_INTENTS:
            continue
        if (q.stent_length_mm or q.stent_diameter_mm) and base.intent != "stent":
            continue
        if q.troponin_value is not None and base.intent != "risk":
            continue
        return base
    return None


def _same_position_segment(position: str, vessel: str) -> str | None:
    """'distal' + the LAD (or any LAD segment) -> 'dLAD'; None when that artery has no such segment."""
    from cardiovlm.tools.core.anatomy import MAIN_VESSEL_PATHS

    artery = vessel if vessel in MAIN_VESSEL_PATHS else SEGMENTS_BY_CODE[vessel].artery
    path = MAIN_VESSEL_PATHS.get(artery, ())
    index = {"proximal": 0, "proximally": 0, "prox": 0, "mid": 1, "middle": 1, "distal": 2, "distally": 2,
             "dist": 2}[position.lower()]
    if len(path) == 2 and index >= 1:  # the LCx: pCx, then the mid-and-distal dLCx
        return path[1]
    return path[index] if index < len(path) else None


def _last_with_anatomy(context: list[ParsedQuestion]) -> ParsedQuestion | None:
    return next((p for p in reversed(context) if p.vessels or p.structure), None)


def _anatomy_of(base: ParsedQuestion) -> dict:
    return {"segment": base.segment, "artery": base.artery, "vessels": list(base.vessels), "structure": base.structure,
            "structures": list(base.structures)}


def _stent_numbers(q: ParsedQuestion, base: ParsedQuestion) -> dict:
    update: dict = {}
    if (q.stent_length_mm is None and q.stent_diameter_mm is not None and base.stent_length_mm is not None
            and not re.search(r"\b(diameter|wide|calibre|caliber|across)\b", q.text, re.I)):
        # "what about a 5 mm one?" after a 20 mm stent: another length, however short, not a diameter.
        q = q.model_copy(update={"stent_length_mm": q.stent_diameter_mm, "stent_diameter_mm": None})
        update.update(stent_length_mm=q.stent_length_mm, stent_lengths_mm=[q.stent_length_mm],
                      stent_diameter_mm=base.stent_diameter_mm)
    if q.stent_length_mm is None:
        update.update(stent_length_mm=base.stent_length_mm, stent_lengths_mm=list(base.stent_lengths_mm))
    if q.stent_diameter_mm is None:
        update["stent_diameter_mm"] = base.stent_diameter_mm
    if q.device is None:
        update["device"] = base.device
    if q.stent_length_mm is not None and base.task == "stent_coverage":
        update["task"] = "stent_coverage"
    return update

