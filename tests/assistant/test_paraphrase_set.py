"""The frozen paraphrase test set (``paraphrase_set.yaml``), scored on the typed plan of ``understand``.

The set was written by someone who had not read the phrasing bank, and frozen before tuning. An item
is right when its set of intents and every slot it states are what the plan says, and the plan states
no other slot (a slot read into a question that does not state it is an error too). Follow-ups are
resolved against their context; a follow-up marked ``new_request`` must not carry the previous intent.

The floors below are the accuracies last measured (at or above the targets: 95 % overall and on
single questions, 90 % compound, no follow-up answered with the previous intent); the remaining
misses are listed by ``python tests/assistant/test_paraphrase_set.py -v``.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from cardiovlm.assistant.question import QuestionPlan, understand
from cardiovlm.tools.core.anatomy import resolve_structure_or_segment

SET_PATH = Path(__file__).with_name("paraphrase_set.yaml")
SLOTS = ("vessel", "structure", "stent_length_mm", "stent_diameter_mm", "troponin_value", "troponin_unit", "sex",
         "landmark")
FINDINGS = {"calcification": "calcification", "calcium": "calcification", "calcified plaque": "calcification",
            "plaque": "plaque", "soft plaque": "plaque", "non-calcified plaque": "plaque", "stent": "stent"}

# Measured floors (fraction correct) per kind; raise them when the understanding improves.
FLOORS = {"single": 0.99, "compound": 1.0, "comparison": 1.0, "followup": 1.0}
OVERALL_FLOOR = 0.995  # measured 99.5 %; the target is 95 %


def _structure_key(name: str) -> str:
    """A structure as the set writes it ('left ventricle', 'calcification') as the registry key."""
    if name in FINDINGS:
        return FINDINGS[name]
    return resolve_structure_or_segment(name)[1]


def _norm(name: str, value):
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    if name == "structure":
        values = [_structure_key(str(v)) for v in values]
    elif name in ("stent_length_mm", "stent_diameter_mm", "troponin_value"):
        values = [float(v) for v in values]
    else:
        values = [str(v) for v in values]
    values = list(dict.fromkeys(values))
    return values[0] if len(values) == 1 else values


def predicted_slots(plan: QuestionPlan) -> dict:
    """The slots of a plan merged over its parts (several values become a list, in order)."""
    merged: dict[str, list] = defaultdict(list)
    for part in plan.parts:
        s = part.slots
        for name in SLOTS:
            if name == "vessel":
                values = s.vessels or ([s.vessel] if s.vessel else [])
            elif name == "structure":
                values = s.structures or ([s.structure] if s.structure else [])
            else:
                value = getattr(s, name)
                values = [] if value is None else [value]
            merged[name] += [v for v in values if v not in merged[name]]
    return {name: _norm(name, values) for name, values in merged.items() if values}


def expected_slots(item: dict) -> dict:
    return {name: _norm(name, value) for name, value in (item.get("slots") or {}).items()
            if value is not None and value != []}


@lru_cache(maxsize=1)
def items() -> list[dict]:
    return yaml.safe_load(SET_PATH.read_text())


def score(item: dict) -> dict:
    plan = understand(item["question"], prior=item.get("context") or ())
    got_intents, want_intents = set(plan.intents), set(item["intents"])
    got_slots, want_slots = predicted_slots(plan), expected_slots(item)
    carried = bool(item.get("new_request")) and bool(
        set(item.get("previous_intents") or ()) & got_intents - want_intents)
    return {"id": item["id"], "kind": item["kind"], "question": item["question"],
            "intent_ok": got_intents == want_intents, "slots_ok": got_slots == want_slots,
            "ok": got_intents == want_intents and got_slots == want_slots, "carried_previous": carried,
            "got": (sorted(got_intents), got_slots), "want": (sorted(want_intents), want_slots)}


@lru_cache(maxsize=1)
def scores() -> tuple[dict, ...]:
    return tuple(score(item) for item in items())


def accuracy(kind: str | None = None, key: str = "ok") -> float:
    rows = [r for r in scores() if kind is None or r["kind"] == kind]
    return sum(r[key] for r in rows) / len(rows)


def test_the_set_is_large_and_covers_every_intent():
    from cardiovlm.assistant.intents import INTENTS

    assert len(items()) >= 300
    assert {i for item in items() for i in item["intents"]} == set(INTENTS)


@pytest.mark.parametrize("kind", sorted(FLOORS))
def test_accuracy_does_not_fall_below_the_measured_floor(kind):
    assert accuracy(kind) >= FLOORS[kind], report()


def test_overall_accuracy_meets_the_target():
    assert accuracy() >= OVERALL_FLOOR, report()


def test_no_new_request_is_answered_with_the_previous_intent():
    carried = [r for r in scores() if r["carried_previous"]]
    assert not carried, carried


def report() -> str:
    lines = []
    for kind in ("single", "compound", "comparison", "followup", None):
        rows = [r for r in scores() if kind is None or r["kind"] == kind]
        lines.append(f"{kind or 'all':<11} n={len(rows):<4} intents+slots {accuracy(kind):6.1%}   intents "
                     f"{accuracy(kind, 'intent_ok'):6.1%}   slots {accuracy(kind, 'slots_ok'):6.1%}")
    lines.append(f"new requests answered with the previous intent: {sum(r['carried_previous'] for r in scores())}")
    confusions = Counter((tuple(r["want"][0]), tuple(r["got"][0])) for r in scores() if not r["intent_ok"])
    lines.append("intent confusions (want -> got): " + ", ".join(f"{w}->{g} x{n}" for (w, g), n in
                                                                   confusions.most_common(12)))
    return "\n".join(lines)


def planning_times() -> dict[str, tuple[float, float]]:
    """Median and 95th percentile planning time per question (ms) on one thread: wall clock and CPU time.

    Each question is planned as a session would: its earlier turns already seen, its own text new.
    CPU time is what an idle machine's wall clock would show; on a shared machine the wall clock
    also counts the time other processes hold the cores.
    """
    import statistics
    import time

    import torch

    torch.set_num_threads(1)

    from cardiovlm.assistant import intents
    from cardiovlm.assistant.slots import normalise_clinical

    understand("warm up")
    wall, cpu = [], []
    for item in items():
        intents._CACHE.clear()  # nothing remembered from the scoring run
        normalise_clinical.cache_clear()
        prior = item.get("context") or ()
        for text in prior:
            understand(text)
        start, start_cpu = time.perf_counter(), time.thread_time()
        understand(item["question"], prior=prior)
        wall.append(1000 * (time.perf_counter() - start))
        cpu.append(1000 * (time.thread_time() - start_cpu))
    return {name: (statistics.median(v), sorted(v)[int(0.95 * len(v))]) for name, v in (("wall", wall), ("cpu", cpu))}


if __name__ == "__main__":
    print(report())
    if "--latency" in sys.argv:
        for name, (median, p95) in planning_times().items():
            print(f"planning time per question ({name}): median {median:.1f} ms, p95 {p95:.1f} ms")
    if "-v" in sys.argv:
        for r in scores():
            if not r["ok"]:
                print(f"{r['id']:5} {r['question'][:70]:70} want {r['want']} got {r['got']}")
