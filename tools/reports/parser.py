"""Deterministic CCTA report parser over the coronary ontology: the embedded, weight-free reader.

The report is cut into sentences, each sentence into *chunks*: one plaque/stent/occlusion noun with
the anatomy it is attached to ("calcified plaque in the pRCA with mild stenosis and soft plaque in
the mid LAD" gives two chunks). Anatomy comes from ``cardiovlm.tools.core.anatomy.SYNONYM_INDEX`` (never re-typed
here). Negation cues ("no", "without", "free of", "no evidence of", "unremarkable", "patent") and
uncertainty cues ("possible", "probable", "cannot be excluded") are scoped to their chunk.

Examples::

    >>> f = parse_report("Mixed plaque in the proximal LAD with 50-69% stenosis. No plaque in the RCA.")
    >>> [(x.segment or x.artery, x.stenosis_category, x.negated) for x in f.findings]
    [('pLAD', '3', False), ('RCA', None, True)]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cardiovlm.tools.core.anatomy import MAIN_VESSEL_PATHS, SEGMENTS_BY_CODE, SYNONYM_INDEX, anatomy_at
from cardiovlm.tools.reports.findings import ReportFindings, SegmentFinding, grade_of_percent

_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[-/][A-Za-z0-9]+)*(?:\.\d+)?%?|[;,:()]")

# Nouns that open a new chunk: each is one finding of its own.
_FINDING_NOUNS = {
    "plaque": "plaque", "plaques": "plaque", "atheroma": "plaque", "lesion": "plaque", "lesions": "plaque",
    "calcification": "calcium", "calcifications": "calcium", "calcium": "calcium",
    "stent": "stent", "stents": "stent", "stented": "stent", "pci": "stent", "des": "stent",
    "occlusion": "occlusion", "occluded": "occlusion", "cto": "occlusion", "occlusive": "occlusion",
    "disease": "plaque", "atherosclerosis": "plaque",
}
# Nouns that attach to the chunk they appear in.
_STENOSIS_NOUNS = {"stenosis", "stenoses", "narrowing", "luminal", "obstruction", "restenosis", "isr"}
_GRADE_WORDS = {
    "minimal": "minimal", "trace": "minimal", "minor": "minimal", "mild": "mild", "moderate": "moderate",
    "severe": "severe", "high-grade": "severe", "critical": "severe", "subtotal": "severe",
}
_PRE_NEGATION = {"no", "without", "free", "absent", "negative", "nor", "none", "not"}
_POST_NEGATION = {"unremarkable", "patent", "normal", "absent", "excluded", "clean", "smooth"}
_UNCERTAIN = {"possible", "possibly", "probable", "probably", "likely", "suspected", "questionable",
              "equivocal", "may", "suspicious", "presumed", "indeterminate"}
# Words that end a negation's reach ("no stenosis but a plaque").
_BREAKERS = {"but", "however", "although", "with", "causing", "resulting", "which", "while", "whereas"}

_RANGE = re.compile(r"(\d+(?:\.\d+)?)\s*%?\s*(?:-|–|to)\s*(\d+(?:\.\d+)?)\s*%")
_BOUND = re.compile(r"(<=|>=|≤|≥|<|>|less than|more than|greater than|under|below|over|up to)\s*(\d+(?:\.\d+)?)\s*%", re.I)  # noqa: E501
_PERCENT = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*%")
_STENT_DIMS = re.compile(r"(\d+(?:\.\d+)?)\s*(?:mm)?\s*[x×]\s*(\d+(?:\.\d+)?)\s*mm", re.I)
_MM = re.compile(r"(\d+(?:\.\d+)?)\s*mm\b", re.I)
_DIAMETER = re.compile(r"(?:diameter|calibre|caliber)\D{0,12}?(\d+(?:\.\d+)?)\s*mm|(\d+(?:\.\d+)?)\s*mm\s*(?:diameter|wide)", re.I)  # noqa: E501
_AGATSTON = re.compile(r"(?:agatston|calcium score|cac score|cac|coronary calcium)[^0-9.;\n]{0,30}?(\d+(?:[.,]\d+)?)", re.I)  # noqa: E501
_CADRADS = re.compile(r"CAD[- ]?RADS(?:\s*2\.0)?[\s:=]*(0|1|2|3|4A|4B|5|N)((?:\s*/\s*(?:P[1-4]|HRP|I[+-]?|S|G|E|N))*)", re.I)  # noqa: E501
_DOMINANCE = re.compile(r"\b(right|left|co|co-|balanced)[\s-]*(dominan(?:t|ce))|\b(codominan(?:t|ce))", re.I)
_SERIAL = re.compile(r"\b(proximal|mid|middle|distal)((?:\s*(?:,|and|to|through|-)\s*(?:proximal|mid|middle|distal))+)\s+"  # noqa: E501
                     r"(lad|rca|lcx|cx|circumflex|left anterior descending|right coronary(?: artery)?)\b", re.I)
_SENTENCE = re.compile(r"\.(?=\s|$)|\n|(?<!\d)\.(?!\d)")  # not the point of "2.5 mm"


@dataclass
class _Mention:
    segment: str | None
    artery: str
    start: int
    end: int
    header: bool = False  # "LAD: ..." heading a paragraph; a more specific mention replaces it


@dataclass
class _Chunk:
    start: int
    end: int
    mentions: list[_Mention] = field(default_factory=list)
    nouns: list[tuple[str, int, int]] = field(default_factory=list)  # (kind, token index, char start)


def _tokens(text: str, offset: int) -> list[tuple[str, int, int]]:
    return [(m.group(0).lower(), offset + m.start(), offset + m.end()) for m in _TOKEN.finditer(text)]


def _artery_of(kind: str, key: str) -> tuple[str | None, str]:
    if kind == "segment":
        return key, SEGMENTS_BY_CODE[key].artery
    return None, key


def _serial_mentions(sentence: str, offset: int) -> list[_Mention]:
    """"proximal and mid LAD" names two segments with one artery word."""
    out: list[_Mention] = []
    for m in _SERIAL.finditer(sentence):
        hit = SYNONYM_INDEX.get(m.group(3).lower())
        if not hit:
            continue
        artery = hit[1] if hit[0] == "artery" else SEGMENTS_BY_CODE[hit[1]].artery
        words = re.findall(r"proximal|mid|middle|distal", m.group(0), re.I)
        for word in words:
            key = SYNONYM_INDEX.get(f"{word.lower()} {m.group(3).lower()}")
            if key and key[0] == "segment":
                out.append(_Mention(key[1], artery, offset + m.start(), offset + m.end()))
        if artery in MAIN_VESSEL_PATHS and re.search(r"\b(to|through)\b", m.group(0), re.I):
            # "proximal to distal LAD": the whole path between the two words.
            path = MAIN_VESSEL_PATHS[artery]
            named = [x.segment for x in out if x.artery == artery and x.segment in path]
            if len(named) >= 2:
                lo, hi = path.index(named[0]), path.index(named[-1])
                for code in path[lo:hi + 1]:
                    if code not in named:
                        out.append(_Mention(code, artery, offset + m.start(), offset + m.end()))
    return out


_POSITION_WORDS = {"proximal", "mid", "middle", "distal"}
_PART_WORDS = {"segment", "segments", "portion", "portions", "part", "parts", "third", "thirds", "aspect", "course"}


def _mentions(tokens: list[tuple[str, int, int]], context_artery: str | None = None) -> list[tuple[int, int, _Mention]]:
    """Longest anatomy phrase at each token, as (first token, last token + 1, mention).

    "the proximal segment" names a segment of the artery last mentioned (``context_artery`` carries
    it over from the previous sentence, e.g. a "LAD:" heading).
    """
    found = []
    words_of = [t[0] for t in tokens]
    i = 0
    while i < len(tokens):
        if tokens[i][0] in _POSITION_WORDS and context_artery:
            # "the proximal segment", "proximal and mid segments"
            words, j = [tokens[i][0]], i + 1
            while j + 1 < len(tokens) and tokens[j][0] in ("and", ",", "to", "through") \
                    and tokens[j + 1][0] in _POSITION_WORDS:
                words.append(tokens[j + 1][0])
                j += 2
            if j < len(tokens) and tokens[j][0] in _PART_WORDS:
                hits = [SYNONYM_INDEX.get(f"{w} {context_artery.lower()}") for w in words]
                codes = [h[1] for h in hits if h and h[0] == "segment"]
                for code in dict.fromkeys(codes):
                    found.append((i, j + 1, _Mention(code, context_artery, tokens[i][1], tokens[j][2])))
                if codes:
                    i = j + 1
                    continue
        hit = anatomy_at(words_of, i, skip=_spans_punctuation)
        if hit is None:
            i += 1
            continue
        n, kind, key = hit
        if kind in ("segment", "artery"):  # a structure ("left main bronchus") is passed over whole
            segment, artery = _artery_of(kind, key)
            context_artery = artery
            found.append((i, i + n, _Mention(segment, artery, tokens[i][1], tokens[i + n - 1][2])))
        i += n
    return found


def _spans_punctuation(phrase: str) -> bool:
    return any(w in ";,:()" for w in phrase.split())


def _chunks(tokens: list[tuple[str, int, int]], sentence_span: tuple[int, int],
            context_artery: str | None = None) -> list[_Chunk]:
    """Group anatomy mentions and finding nouns of one sentence into findings."""
    mentions = _mentions(tokens, context_artery)
    by_start: dict[int, list[tuple[int, int, _Mention]]] = {}
    for m in mentions:
        by_start.setdefault(m[0], []).append(m)  # "proximal and mid segments" gives two at one token
    chunks = [_Chunk(*sentence_span)]
    i = 0
    while i < len(tokens):
        word = tokens[i][0]
        current = chunks[-1]
        if i in by_start:
            group = by_start[i]
            last = group[0][1]
            header = last < len(tokens) and tokens[last][0] == ":"
            for _, _, mention in group:
                mention.header = header
            if current.mentions and all(m.header and m.artery == group[0][2].artery for m in current.mentions):
                current.mentions.clear()  # "LAD: plaque in the pLAD" is about the pLAD
            # A new anatomy after a completed finding (finding + anatomy + finding ... anatomy) starts over,
            # unless it is a list continuation ("in the LAD and LCx").
            elif current.mentions and current.nouns and current.nouns[-1][1] > _last_mention_token(current, tokens):
                if not _is_list_continuation(tokens, i):
                    chunks.append(_Chunk(tokens[i][1], sentence_span[1]))
                    current.end = tokens[i][1]
                    current = chunks[-1]
            current.mentions.extend(m for _, _, m in group)
            i = last
            continue
        if word == ";" and (current.mentions or current.nouns):
            current.end = tokens[i][1]
            chunks.append(_Chunk(tokens[i][2], sentence_span[1]))
        elif word in _FINDING_NOUNS:
            kind = _FINDING_NOUNS[word]
            has_finding = any(k in ("plaque", "stent", "occlusion") for k, _, _ in current.nouns)
            mention_follows = any(first > i for first in by_start)
            if (current.mentions and has_finding and kind in ("plaque", "stent") and mention_follows
                    and not _negated(tokens, i)):
                start = _phrase_start(tokens, i)
                current.end = start
                chunks.append(_Chunk(start, sentence_span[1]))
                current = chunks[-1]
            current.nouns.append((kind, i, tokens[i][1]))
        i += 1
    return [c for c in chunks if c.mentions]


def _last_mention_token(chunk: _Chunk, tokens) -> int:
    last = chunk.mentions[-1].end
    return max((k for k, t in enumerate(tokens) if t[2] <= last), default=-1)


def _is_list_continuation(tokens, i: int) -> bool:
    prev = [t[0] for t in tokens[max(0, i - 3):i]]
    return bool(prev) and prev[-1] in (",", "and", "or", "nor", "the") and not any(
        w in _FINDING_NOUNS or w in _STENOSIS_NOUNS for w in prev)


def _phrase_start(tokens, i: int) -> int:
    """Char start of the noun phrase ending at token ``i`` ("and non-calcified plaque" -> "non-calcified")."""
    j = i
    while j > 0 and tokens[j - 1][0] not in (",", ";", "and", "with", "in", "of", "the", "a", "an") and i - j < 4:
        j -= 1
    return tokens[j][1]


def _negated(tokens, i: int, lo: int = 0) -> bool:
    """A pre-negation cue within six tokens before token ``i``, with no breaker in between."""
    for j in range(i - 1, max(lo, i - 7) - 1, -1):
        word = tokens[j][0]
        if word in _BREAKERS or word == ";":
            return False
        if word in _PRE_NEGATION:
            following = tokens[j + 1][0] if j + 1 < len(tokens) else ""
            if word == "not" and following in ("excluded", "be"):
                return False
            return True
    return False


def _chunk_text(report: str, chunk: _Chunk) -> tuple[str, list[tuple[str, int, int]]]:
    text = report[chunk.start:chunk.end]
    return text, _tokens(text, chunk.start)


def _finding(report: str, chunk: _Chunk, mention: _Mention, noun_negated: dict[int, bool]) -> SegmentFinding:
    text, toks = _chunk_text(report, chunk)
    words = [t[0] for t in toks]
    lower = text.lower()
    kinds = {k for k, _, _ in chunk.nouns}
    positive = {k for k, pos, _ in chunk.nouns if not noun_negated[pos]}
    negated_kinds = kinds - positive
    stenosis_idx = [k for k, w in enumerate(words) if w in _STENOSIS_NOUNS]
    stenosis_negated = bool(stenosis_idx) and all(_negated(toks, k) for k in stenosis_idx)
    uncertain = any(w in _UNCERTAIN for w in words) or bool(re.search(r"(can ?not|can't|not) be (excluded|ruled out)", lower))  # noqa: E501
    post_negation = any(w in _POST_NEGATION for w in words) and not re.search(r"(can ?not|can't|not) be excluded", lower)  # noqa: E501

    f: dict = {"segment": mention.segment, "artery": mention.artery, "span": (chunk.start, chunk.end),
               "text": text, "uncertain": uncertain}
    # Stent and in-stent restenosis first: a stent's numbers are its size, not a stenosis.
    if "stent" in kinds:
        f["stent"] = "stent" in positive
        dims = _STENT_DIMS.search(text)
        if dims:
            a, b = float(dims.group(1)), float(dims.group(2))
            f["stent_diameter_mm"], f["stent_length_mm"] = min(a, b), max(a, b)
        else:
            diameter = _DIAMETER.search(text)
            if diameter:
                f["stent_diameter_mm"] = float(diameter.group(1) or diameter.group(2))
            lengths = [float(m.group(1)) for m in _MM.finditer(text) if float(m.group(1)) >= 6
                       and (not diameter or m.start() != diameter.start())]
            if lengths:
                f["stent_length_mm"] = max(lengths)
        if "restenosis" in words or "isr" in words:
            k = words.index("restenosis") if "restenosis" in words else words.index("isr")
            f["in_stent_restenosis"] = not _negated(toks, k)
        elif f["stent"] and ("patent" in words or "widely" in words):
            f["in_stent_restenosis"] = False
    # Plaque composition.
    plaque_words = set(words)
    if plaque_words & {"mixed", "partially-calcified"} or "partially calcified" in lower or "partly calcified" in lower:
        f["plaque_type"] = "mixed"
    elif plaque_words & {"non-calcified", "noncalcified", "soft", "fibrofatty", "fibro-fatty", "lipid-rich",
                         "low-attenuation", "fibrous", "uncalcified", "non-calcific"}:
        f["plaque_type"] = "noncalcified"
    elif plaque_words & {"calcified", "calcific", "densely-calcified"} or (
            "calcium" in positive and "plaque" in kinds):
        f["plaque_type"] = "calcified"
    if "plaque" in negated_kinds and "plaque" not in positive:
        f.pop("plaque_type", None)
    calcium_words = plaque_words & {"calcified", "calcific", "calcification", "calcifications", "calcium"}
    if f.get("plaque_type") in ("calcified", "mixed") or "calcium" in positive:
        f["calcium"] = True
    elif calcium_words and ("calcium" in negated_kinds or f.get("plaque_type") is None):
        f["calcium"] = False if "calcium" in negated_kinds else None
    if f.get("plaque_type") == "noncalcified" and f.get("calcium") is None:
        f["calcium"] = False
    # Stenosis: a range, a number, then grading words.
    pct_text = text
    if "stent" in kinds and not ("restenosis" in words or "isr" in words):
        pct_text = ""  # a stent's percentages would be something else (e.g. overlap)
    rng = _RANGE.search(pct_text)
    pct = _PERCENT.search(pct_text)
    bound = _BOUND.search(pct_text)
    if bound and not rng:
        value = float(bound.group(2))
        below = bound.group(1).lower() in ("<", "less than", "under", "below", "up to", "<=", "≤")
        low, high = (1.0, value - 1 if value > 1 else value) if below else (value, 99.0 if value < 100 else 100.0)
        f["stenosis_low"], f["stenosis_high"] = low, high
        f["stenosis_grade"] = grade_of_percent(low if not below else high)
    elif rng:
        low, high = float(rng.group(1)), float(rng.group(2))
        f["stenosis_low"], f["stenosis_high"] = low, high
        f["stenosis_grade"] = grade_of_percent(low)
    elif pct:
        value = float(pct.group(1))
        f["stenosis_percent"] = value
        f["stenosis_grade"] = grade_of_percent(value)
    else:
        for k, w in enumerate(words):
            if w in _GRADE_WORDS and not _negated(toks, k):
                # Reports write "mild plaque" for "plaque with mild stenosis" too: read it as the grade.
                f["stenosis_grade"] = _GRADE_WORDS[w]
                break
        if "stenosis_grade" not in f and stenosis_negated:
            f["stenosis_grade"] = "none"
    if "occlusion" in positive or re.search(r"\b(totally|completely|chronically) occluded\b|\b100\s*%", lower):
        f["occluded"] = True
        f["stenosis_grade"], f["stenosis_percent"] = "occluded", 100.0
    # Lesion length: a length in mm that is not a stent dimension.
    if "stent" not in kinds:
        m = re.search(r"(?:length|long|extending|over|measuring|spanning)\D{0,15}?(\d+(?:\.\d+)?)\s*mm|"
                      r"(\d+(?:\.\d+)?)\s*mm[- ](?:long|length|segment|lesion)", text, re.I)
        if m:
            f["lesion_length_mm"] = float(m.group(1) or m.group(2))
    has_positive = bool(positive) or f.get("stenosis_grade") not in (None, "none")
    if not has_positive and (negated_kinds or stenosis_negated or post_negation or not kinds):
        f["negated"] = bool(negated_kinds or stenosis_negated or post_negation)
    if "stent" in positive:
        f["negated"] = False
    return SegmentFinding(**f)


def _is_empty(f: SegmentFinding) -> bool:
    """A bare mention ("the LAD gives off two diagonals") says nothing to extract."""
    return not (f.negated or f.occluded or f.stent is not None or f.calcium is not None
                or f.plaque_type or f.stenosis_grade or f.lesion_length_mm)


def _sentences(report: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in _SENTENCE.finditer(report):
        if m.start() > start:
            spans.append((start, m.start()))
        start = m.end()
    if start < len(report):
        spans.append((start, len(report)))
    return [(a, b) for a, b in spans if report[a:b].strip()]


def parse_report(report: str) -> ReportFindings:
    """Extract per-segment findings, dominance, CAD-RADS and calcium score from a CCTA report.

    Raises:
        ValueError: when ``report`` is not a string.
    """
    if not isinstance(report, str):
        raise ValueError(f"report must be text, got {type(report).__name__}")
    findings: list[SegmentFinding] = []
    context_artery: str | None = None
    for start, end in _sentences(report):
        sentence = report[start:end]
        tokens = _tokens(sentence, start)
        chunks = _chunks(tokens, (start, end), context_artery)
        if chunks:
            context_artery = chunks[-1].mentions[-1].artery
        for chunk in chunks:
            # Negation of each noun is decided on sentence tokens, bounded by the chunk start.
            lo = next((k for k, t in enumerate(tokens) if t[1] >= chunk.start), 0)
            noun_negated = {pos: _negated(tokens, pos, lo) for _, pos, _ in chunk.nouns}
            serial = _serial_mentions(report[chunk.start:chunk.end], chunk.start)
            mentions = chunk.mentions
            if serial:
                covered = {(m.start, m.end) for m in serial}
                mentions = serial + [m for m in mentions if not any(a <= m.start < b for a, b in covered)]
            seen: set[tuple[str | None, str]] = set()
            for mention in mentions:
                if (mention.segment, mention.artery) in seen:
                    continue
                seen.add((mention.segment, mention.artery))
                finding = _finding(report, chunk, mention, noun_negated)
                if not _is_empty(finding):
                    findings.append(finding)
    result = ReportFindings(findings=findings)
    if m := _CADRADS.search(report):
        result.cad_rads = (m.group(1).upper() + re.sub(r"\s+", "", m.group(2) or "").upper())
    if m := _DOMINANCE.search(report):
        word = (m.group(1) or "co").lower()
        result.dominance = "right" if word == "right" else "left" if word == "left" else "codominant"
    if m := _AGATSTON.search(report):
        result.calcium_score = float(m.group(1).replace(",", ""))
    return result


__all__ = ["parse_report"]
