"""Intent by meaning: a question's nearest phrasings in a bank, embedded with the offline MiniLM.

The phrasing bank (``phrasing_bank.yaml`` beside this module) lists varied ways to ask for each
intent. Bank and question are masked the same way (:func:`cardiovlm.assistant.slots.mask_for_embedding`)
and embedded with the bundled ``all-MiniLM-L6-v2`` (:mod:`cardiovlm.tools.core.embeddings`, never downloaded).
A phrasing's similarity to the question mixes the embeddings' cosine with a word TF-IDF cosine
(weight ``1 - embedding_weight``), so a rare domain word the small sentence model blurs ("reports",
"FFR", "MRN") still counts. An intent's score is the mean similarity of its ``top_k`` nearest
phrasings, so one odd phrasing cannot decide alone; a best score under ``min_similarity`` is "unknown".

The bank's embeddings are computed once per process and cached on disk under a key of the bank's
content and the model, so planning a question embeds only the question (about 15 ms on one CPU
thread; several clauses of a compound question go in one batch).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import yaml

from cardiovlm.assistant.slots import mask_for_embedding

Intent = Literal["study_info", "segment", "calcium", "stenosis", "cadrads_patient", "stent", "risk", "reports",
                 "locate", "identity", "cannot", "unknown"]
INTENTS: tuple[str, ...] = Intent.__args__  # type: ignore[attr-defined]

# Intents whose bank phrasings are grouped by topic: the nearest phrasing's topic is part of the reading.
TOPIC_INTENTS = ("cannot", "identity")

BANK_PATH = Path(__file__).with_name("phrasing_bank.yaml")


@dataclass(frozen=True)
class MatcherConfig:
    top_k: int = 3  # an intent scores the mean similarity of its k nearest phrasings
    embedding_weight: float = 0.7  # the rest is word TF-IDF similarity (best leave-one-out accuracy on the bank)
    min_similarity: float = 0.4  # a best score at or above this is understood
    # A weaker best score still counts when it clearly leads every other intent: a terse question with
    # one decisive word ("DOB please") matches its own phrasing only, and nothing else at all.
    clear_similarity: float = 0.3
    clear_margin: float = 0.1
    cache_dir: Path | None = None  # where bank embeddings are kept; None: the settings' cache_dir (CARDIOVLM_CACHE_DIR)


@dataclass(frozen=True)
class Phrasing:
    text: str
    intent: str
    topic: str | None  # "cannot": which unmeasurable quantity (keys of cannot_topics); "identity": whose


@dataclass(frozen=True)
class CannotTopic:
    what: str
    why: str
    instead: str


@dataclass(frozen=True)
class IntentMatch:
    """The matcher's reading of one text."""

    intent: str
    score: float  # mean similarity of the intent's nearest phrasings (cosine, -1..1)
    scores: dict[str, float]  # every intent's score
    nearest: str  # nearest bank phrasing of the chosen intent
    topic: str | None = None  # topic of the nearest phrasing ("cannot": the quantity; "identity": patient or assistant)

    def ranked(self) -> list[tuple[str, float]]:
        return sorted(self.scores.items(), key=lambda kv: -kv[1])


@dataclass(frozen=True)
class PhrasingBank:
    phrasings: tuple[Phrasing, ...]
    cannot_topics: dict[str, CannotTopic]
    digest: str


def load_bank(path: Path = BANK_PATH) -> PhrasingBank:
    """Read and check the bank: every intent of the vocabulary has phrasings, every topic a reason."""
    raw = path.read_bytes()
    data = yaml.safe_load(raw)
    phrasings: list[Phrasing] = []
    for intent, entries in data["intents"].items():
        if intent not in INTENTS:
            raise ValueError(f"phrasing bank {path}: unknown intent {intent!r}")
        if isinstance(entries, dict):
            for topic, texts in entries.items():
                phrasings += [Phrasing(str(t), intent, topic) for t in texts]
        else:
            phrasings += [Phrasing(str(t), intent, None) for t in entries]
    topics = {k: CannotTopic(**v) for k, v in data.get("cannot_topics", {}).items()}
    missing = set(INTENTS) - {p.intent for p in phrasings}
    if missing:
        raise ValueError(f"phrasing bank {path}: no phrasings for {sorted(missing)}")
    unexplained = {p.topic for p in phrasings if p.topic and p.intent == "cannot"} - set(topics)
    if unexplained:
        raise ValueError(f"phrasing bank {path}: cannot topics without a reason: {sorted(unexplained)}")
    return PhrasingBank(tuple(phrasings), topics, hashlib.sha256(raw).hexdigest()[:16])


class IntentMatcher:
    """Nearest-phrasing intent matcher over a :class:`PhrasingBank`."""

    def __init__(self, bank: PhrasingBank | None = None, config: MatcherConfig | None = None, model=None):
        self.bank = bank or load_bank()
        self.config = config or MatcherConfig()
        if model is None:
            from cardiovlm.tools.core.embeddings import load_model

            model = load_model()
        self.model = model
        self.labels = np.array([p.intent for p in self.bank.phrasings])
        self.vectors = self._bank_vectors()
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        self.bank_words = self.tfidf.fit_transform([mask_for_embedding(p.text) for p in self.bank.phrasings])

    def _cache_file(self) -> Path:
        from cardiovlm.tools.core.settings import get_settings

        root = self.config.cache_dir or get_settings().cache_dir
        from cardiovlm.tools.core.embeddings import MODEL_NAME

        # The key covers the masking too: a change to it changes what the bank's phrasings embed as.
        masked = "\n".join(mask_for_embedding(p.text) for p in self.bank.phrasings)
        key = hashlib.sha256((self.bank.digest + masked).encode()).hexdigest()[:16]
        return root / f"intent_bank_{MODEL_NAME}_{key}.npy"

    def _bank_vectors(self) -> np.ndarray:
        path = self._cache_file()
        if path.is_file():
            vectors = np.load(path)
            if vectors.shape[0] == len(self.bank.phrasings):
                return vectors
        vectors = self.embed([p.text for p in self.bank.phrasings])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, vectors)
            tmp.replace(path)
        except OSError:  # a read-only home only costs the bank's embedding time at start-up
            pass
        return vectors

    def embed(self, texts: list[str]) -> np.ndarray:
        masked = [mask_for_embedding(t) for t in texts]
        return np.asarray(self.model.encode(masked, normalize_embeddings=True, batch_size=64), dtype=np.float32)

    def match_many(self, texts: list[str]) -> list[IntentMatch]:
        """The intent of each text, embedded in one batch."""
        if not texts:
            return []
        w = self.config.embedding_weight
        words = (self.tfidf.transform([mask_for_embedding(t) for t in texts]) @ self.bank_words.T).toarray()
        sims = w * (self.embed(texts) @ self.vectors.T) + (1 - w) * words
        return [self._match(row) for row in sims]

    def match(self, text: str) -> IntentMatch:
        return self.match_many([text])[0]

    def decide(self, scores: dict[str, float]) -> str:
        """The intent of the highest score if it is understood (see :class:`MatcherConfig`), else "unknown"."""
        best = max(scores, key=scores.__getitem__)
        if scores[best] >= self.config.min_similarity:
            return best
        runner_up = max((v for k, v in scores.items() if k != best), default=-1.0)
        if scores[best] >= self.config.clear_similarity and scores[best] - runner_up >= self.config.clear_margin:
            return best
        return "unknown"

    def _match(self, sims: np.ndarray) -> IntentMatch:
        scores: dict[str, float] = {}
        for intent in INTENTS:
            own = sims[self.labels == intent]
            k = min(self.config.top_k, own.size)
            scores[intent] = float(np.sort(own)[-k:].mean())
        best = max(scores, key=scores.__getitem__)
        order = np.argsort(-sims)
        nearest = next(i for i in order if self.labels[i] == best)
        intent = self.decide(scores)
        phrasing = self.bank.phrasings[nearest]
        return IntentMatch(intent=intent, score=scores[best], scores=scores, nearest=phrasing.text,
                           topic=phrasing.topic if best in TOPIC_INTENTS else None)


@lru_cache(maxsize=1)
def default_matcher() -> IntentMatcher:
    """The process-wide matcher on the shipped bank (bank embeddings computed or read once)."""
    return IntentMatcher()


_CACHE: dict[str, IntentMatch] = {}
_CACHE_SIZE = 4096


def match_texts(texts: list[str]) -> list[IntentMatch]:
    """:meth:`IntentMatcher.match_many` with the default matcher, remembered per text: a session
    re-reads its earlier questions to resolve follow-ups, and those must cost nothing. The texts
    not seen before are embedded in one batch."""
    known = {t: _CACHE[t] for t in texts if t in _CACHE}
    new = list(dict.fromkeys(t for t in texts if t not in known))
    if new:
        if len(_CACHE) + len(new) > _CACHE_SIZE:
            _CACHE.clear()
        fresh = dict(zip(new, default_matcher().match_many(new)))
        _CACHE.update(fresh)
        known.update(fresh)  # read from here: another session's thread may clear the cache meanwhile
    return [known[t] for t in texts]


def match_cached(text: str) -> IntentMatch:
    return match_texts([text])[0]
