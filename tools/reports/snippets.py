"""The quoted part of a hit: the report sentences that best match a query, verbatim."""

from __future__ import annotations

import re
from functools import lru_cache

from cardiovlm.tools.core.anatomy import find_anatomy
from cardiovlm.tools.reports.terms import CORONARY_WORDS, SENTENCE_SPLIT

SNIPPET_SENTENCES = 2  # sentences quoted per hit: enough for a finding and its qualifier

_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_STOPWORDS = frozenset(
    "a an and any are as at be by ct did does for from had has have he her his in is it its of on or "
    "prior previous scan she study the their there this to was were what when which with we where "
    "cta ccta coronary angiography angiogram report reporting showing showed shows saw old earlier".split())


@lru_cache(maxsize=16384)  # report sentences recur (templates, the same report hit again): read each once
def _terms(text: str) -> frozenset[str]:
    """Content words plus registry keys of the anatomy named, so 'proximal LAD' matches 'pLAD'."""
    lowered = text.lower()
    words = {w for w in _WORD.findall(lowered) if w not in _STOPWORDS and len(w) > 1}
    words.update(f"@{key}" for _, key, _ in find_anatomy(text))
    return frozenset(words)


def best_snippet(document: str, query: str, max_sentences: int = SNIPPET_SENTENCES) -> str:
    """The sentence(s) of ``document`` sharing the most terms with ``query``, in report order.

    Lexical overlap with anatomy synonyms resolved through the registry, rather than a second
    embedding pass per sentence: it keeps a query well under the 50 ms budget and the quote exact.
    A query sharing no term ("what did the prior say?") gets the first coronary sentences, not a
    header line such as "Study date: ...".
    """
    sentences = [s.strip() for s in SENTENCE_SPLIT.split(document) if s and s.strip()]
    if not sentences:
        return ""
    query_terms = _terms(query)
    scored = sorted(range(len(sentences)), key=lambda i: (-len(query_terms & _terms(sentences[i])), i))
    chosen = sorted(i for i in scored[:max_sentences] if len(query_terms & _terms(sentences[i])) > 0)
    if not chosen:
        chosen = [i for i, s in enumerate(sentences) if CORONARY_WORDS.search(s)][:max_sentences] or [0]
    return " ".join(sentences[i] for i in chosen)
