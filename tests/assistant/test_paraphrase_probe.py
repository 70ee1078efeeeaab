"""Small frozen probes of how the understanding generalises (``paraphrase_probe.yaml``, ``paraphrase_probe_b.yaml``).

Probe A was written before the understanding was tuned against the failure classes it probes (identity
and study questions, compound questions, pronouns, comparisons, follow-ups, cannot-answer); probe B
after that tuning and before any further change, so it was never tuned on. Both are in wordings of
their own and scored exactly as the paraphrase set is (its ``score`` is imported, not copied): an item
is right when its intents and every slot it states are what the plan says, and no other slot is read.

``python tests/assistant/test_paraphrase_probe.py`` prints the accuracy and the misses.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

_spec = importlib.util.spec_from_file_location("_paraphrase_set", Path(__file__).with_name("test_paraphrase_set.py"))
_set = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_set)
score = _set.score


@dataclass(frozen=True)
class Probe:
    path: Path
    before: float  # fraction right before the tuning it was frozen ahead of
    floor: float  # fraction right kept since (a fall below it is a regression)


PROBES = {
    # Frozen before tuning. Before: single 63.3 %, compound 78.6 %, comparison 83.3 %, follow-up 90 %.
    # After: 60 / 60, but three items (p05, p29, p59) came right only after the phrasing bank was widened
    # with phrasings of their kind, so its last points are not independent of the tuning. A fourth, p03
    # (a question about the exam), fell to identity when questions about the assistant were added to the
    # bank and came back after phrasings of its kind ("what is this study") were added: not independent.
    "a": Probe(Path(__file__).with_name("paraphrase_probe.yaml"), before=44 / 60, floor=59 / 60),
    # Written after that tuning and frozen before any further change: never tuned on. The code before
    # the tuning scored 22 / 30 on it, the tuned code 29 / 30.
    "b": Probe(Path(__file__).with_name("paraphrase_probe_b.yaml"), before=22 / 30, floor=29 / 30),
}


@cache
def items(name: str) -> list[dict]:
    return yaml.safe_load(PROBES[name].path.read_text())


@cache
def scores(name: str) -> tuple[dict, ...]:
    return tuple(score(item) for item in items(name))


def accuracy(name: str, kind: str | None = None) -> float:
    rows = [r for r in scores(name) if kind is None or r["kind"] == kind]
    return sum(r["ok"] for r in rows) / len(rows)


def report(name: str) -> str:
    lines = [f"probe {name}: {kind or 'all':<11} n={sum(1 for r in scores(name) if kind is None or r['kind'] == kind):<3} "  # noqa: E501
             f"{accuracy(name, kind):6.1%}" for kind in ("single", "compound", "comparison", "followup", None)]
    lines += [f"{r['id']:4} {r['question'][:60]:60} want {r['want']} got {r['got']}" for r in scores(name)
              if not r["ok"]]
    return "\n".join(lines)


def test_the_probes_cover_the_failure_classes():
    every = [item for name in PROBES for item in items(name)]
    kinds = {item["kind"] for item in every}
    intents = {i for item in every for i in item["intents"]}
    assert len(items("a")) >= 60 and len(items("b")) >= 30
    assert kinds == {"single", "compound", "comparison", "followup"}
    assert {"identity", "study_info", "cannot", "unknown", "risk"} <= intents


@pytest.mark.parametrize("name", sorted(PROBES))
def test_probe_accuracy_does_not_fall_below_the_floor(name):
    assert accuracy(name) >= PROBES[name].floor, report(name)


@pytest.mark.parametrize("name", sorted(PROBES))
def test_no_pronoun_is_read_as_the_patients_sex(name):
    """'his', 'her', 'she' name the patient, not a sex: a sex slot only where the question states one."""
    wrong = [r for r in scores(name) if r["got"][1].get("sex") != r["want"][1].get("sex")]
    assert not wrong, wrong


@pytest.mark.parametrize("name", sorted(PROBES))
def test_no_new_request_carries_the_previous_intent(name):
    assert not [r for r in scores(name) if r["carried_previous"]]


@pytest.mark.parametrize("name", sorted(PROBES))
def test_every_part_of_a_compound_question_is_planned(name):
    """No request of a compound question dropped: each intent asked for has a part of its own."""
    from cardiovlm.assistant.question import understand

    short = [item["id"] for item in items(name) if item["kind"] == "compound"
             and not set(item["intents"]) <= set(understand(item["question"]).intents)]
    assert not short, report(name)


def test_planning_takes_under_50_ms_per_question():
    """The median planning time of the probes' questions on one thread, in CPU time (what an idle
    machine's clock would show; on a shared one the wall clock also counts other processes)."""
    import statistics
    import time

    import torch

    from cardiovlm.assistant import intents
    from cardiovlm.assistant.question import understand
    from cardiovlm.assistant.slots import normalise_clinical

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        understand("warm up")
        cpu = []
        for item in [i for name in PROBES for i in items(name)]:
            intents._CACHE.clear()  # each question new to the process, as in a session
            normalise_clinical.cache_clear()
            prior = item.get("context") or ()
            for text in prior:
                understand(text)
            start = time.thread_time()
            understand(item["question"], prior=prior)
            cpu.append(1000 * (time.thread_time() - start))
    finally:
        torch.set_num_threads(threads)
    assert statistics.median(cpu) <= 50.0, sorted(cpu)


if __name__ == "__main__":
    for name in PROBES:
        print(report(name))
