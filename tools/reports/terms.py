"""What the report store reads from report and query text: anatomy, stated findings, embedded text.

Severity synonyms are rewritten to CAD-RADS words and coronary mentions to their registry names
(:mod:`cardiovlm.tools.core.anatomy`), so a report and a question naming one vessel or grade in different words are
read, and embedded, alike. The findings a text states are read by the report parser
(:mod:`cardiovlm.tools.reports.parser`) as canonical terms such as ``pLAD:severe``.
"""

from __future__ import annotations

import re
from functools import lru_cache

from cardiovlm.tools.core.anatomy import ARTERY_NAMES, SEGMENTS_BY_CODE, find_anatomy
from cardiovlm.tools.reports.parser import parse_report

# A sentence ends at . ! ? followed by space, or at a line break.
SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")


def anatomy_keys(text: str) -> set[str]:
    """Registry keys of the coronary segments and arteries ``text`` names, with each segment's artery."""
    keys: set[str] = set()
    for kind, key, _ in find_anatomy(text):
        if kind == "segment":
            keys.update((key, SEGMENTS_BY_CODE[key].artery))
        elif kind == "artery":
            keys.add(key)
    return keys


# Severity words outside the CAD-RADS vocabulary, rewritten to it before parsing and embedding, so that
# "a tight LAD lesion" and "severe LAD stenosis" are read and embedded alike. Unambiguous words only:
# "significant" and "non-obstructive" span two CAD-RADS grades and are left as they are.
_SEVERITY_SYNONYMS: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"\b(?:tight|high[- ]grade|critical|sub-?total)\b", re.I), "severe"),
    (re.compile(r"\bintermediate\b", re.I), "moderate"),
    (re.compile(r"\b(?:trivial|trace|minor)\b", re.I), "minimal"),
    (re.compile(r"\b(?:blocked|closed)\b", re.I), "occluded"),
    (re.compile(r"\b(?:blockage|CTO)\b", re.I), "occlusion"),
    (re.compile(r"\bopen\b", re.I), "patent"),
)
# A query is a list of noun phrases ("a tight pLAD lesion, an occluded OM1 and a patent RCA stent") while
# the report parser reads report sentences, so a query is cut into its phrases before it is parsed.
_QUERY_PHRASE = re.compile(r"\s*;\s*|\s*,\s*(?=(?:and\s+)?(?:an?|the|one|two)\b)|"
                           r"\s+(?:and|plus|as well as)\s+(?=(?:an?|the|one|two)\b)", re.I)
_NORMAL_CUE = re.compile(r"\b(?:normal|clean|unremarkable|free of|no\s+(?:\w+\s+){0,2}?(?:plaque|disease|"
                         r"stenos[ie]s|atherosclerosis|cad|findings))\b", re.I)
NORMAL_TERM = "normal"  # the finding term of a report, or query, stating no coronary disease and no stent


def canonical_severity(text: str) -> str:
    """``text`` with severity synonyms replaced by CAD-RADS words ("tight" -> "severe")."""
    for pattern, word in _SEVERITY_SYNONYMS:
        text = pattern.sub(word, text)
    return text


def _parsed_terms(text: str) -> set[str]:
    terms: set[str] = set()
    for f in parse_report(text).positive():
        facts = [fact for fact, stated in (("stent", f.stent), ("restenosis", f.in_stent_restenosis)) if stated]
        if f.stenosis_grade not in (None, "none"):
            facts.append(f.stenosis_grade)
        if f.plaque_type:
            facts.append(f.plaque_type)
        for where in {f.segment, f.artery} - {None}:  # a segment's finding is also its artery's
            terms.update(f"{where}:{fact}" for fact in facts)
    return terms


def finding_terms(text: str) -> frozenset[str]:
    """Canonical terms of the coronary findings a report states, read by the embedded report parser.

    One term per location and fact: ``"pLAD:severe"``, ``"pLAD:mixed"``, ``"OM1:stent"``,
    ``"OM1:restenosis"``, ``"mRCA:occluded"``, each also on its artery (``"LAD:severe"``). Negated
    passages ("no plaque in the LCx") give none; a report stating no finding is ``{"normal"}``.

    Examples::

        >>> sorted(finding_terms("Tight soft plaque in the p-LAD. The RCA is free of plaque."))
        ['LAD:noncalcified', 'LAD:severe', 'pLAD:noncalcified', 'pLAD:severe']
    """
    return frozenset(_parsed_terms(canonical_severity(text))) or frozenset({NORMAL_TERM})


def query_finding_terms(query: str) -> frozenset[str]:
    """The finding terms a query asks for (see :func:`finding_terms`), read phrase by phrase; empty
    when it states none. It asks for ``"normal"`` only when it says so ("normal coronaries", "no
    coronary plaque"), not merely by naming no finding."""
    text = canonical_severity(query)
    terms: set[str] = set()
    for phrase in _QUERY_PHRASE.split(text):
        if phrase and phrase.strip():
            terms |= _parsed_terms(phrase)
    if not terms and _NORMAL_CUE.search(text):
        terms.add(NORMAL_TERM)
    return frozenset(terms)


def finding_agreement(wanted: frozenset[str] | set[str], stated: frozenset[str] | set[str]) -> float:
    """0..1: the share of the ``wanted`` terms a report states (weight 0.7) plus the share of its own
    terms that were asked for (0.3); 1 for a report stating exactly the findings asked about."""
    if not wanted or not stated:
        return 0.0
    shared = len(wanted & stated)
    return 0.7 * shared / len(wanted) + 0.3 * shared / len(stated)


@lru_cache(maxsize=4096)
def _mention_pattern(phrase: str) -> re.Pattern:
    # find_anatomy reports phrases normalised (lower case, punctuation as spaces): match them back
    # in the original text with any run of separators between words.
    words = [re.escape(w) for w in phrase.split()]
    return re.compile(r"(?<![A-Za-z0-9])" + r"[\s_/.]+".join(words) + r"(?![A-Za-z0-9])", re.IGNORECASE)


def canonical_anatomy(text: str) -> str:
    """``text`` with each coronary segment or artery mention replaced by its registry name.

    Examples::

        >>> canonical_anatomy("Tight p-rca lesion, LMCA stent patent.")
        'Tight proximal right coronary artery lesion, left main coronary artery stent patent.'
    """
    mentions = {(kind, key, phrase) for kind, key, phrase in find_anatomy(text) if kind in ("segment", "artery")}
    # Longest phrases first so "proximal lad" is rewritten before a bare "lad" could match inside it.
    for kind, key, phrase in sorted(mentions, key=lambda m: -len(m[2])):
        name = SEGMENTS_BY_CODE[key].name if kind == "segment" else ARTERY_NAMES[key]
        text = _mention_pattern(phrase).sub(name, text)
    return text


CORONARY_WORDS = re.compile(r"\b(?:plaque|stenos[ie]s|narrowing|stent\w*|occlu\w*|CAD-RADS|coronar\w*|"
                             r"calcifi\w*|lesion)\b", re.I)


def embedding_text(text: str) -> str:
    """What is embedded of a report or a query: its coronary sentences (naming a coronary vessel, a
    plaque, stenosis, stent or CAD-RADS) with severity and anatomy canonicalised; all of it when no
    sentence is coronary."""
    sentences = [s.strip() for s in SENTENCE_SPLIT.split(text) if s and s.strip()]
    coronary = [s for s in sentences if CORONARY_WORDS.search(s)
                or any(kind in ("segment", "artery") for kind, _, _ in find_anatomy(s))]
    return canonical_anatomy(canonical_severity(" ".join(coronary) if coronary else text))

