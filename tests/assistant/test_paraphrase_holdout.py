"""The held-out paraphrase set (``paraphrase_holdout.yaml``): the control for the tuned set.

``paraphrase_set.yaml`` is the set the matcher is tuned on; this one was written by someone who had not
read the matcher's phrase lists, that set's questions or the question suite, and nobody tunes on it.
Its accuracy says whether tuning generalises. Items are scored exactly as ``test_paraphrase_set.py``
scores them (its ``score`` is imported, not copied): an item is right when its set of intents and every
slot it states are what ``understand`` plans, and the plan states no other slot.

Measured once, after the set was frozen (commit af77680), at main 62927bb, whose matcher files
(intents, slots, planner, question, phrasing bank) were last changed in 0df42c8, i.e. before the
current tuning round, ``python tests/assistant/test_paraphrase_holdout.py``:

    single      n=129  intents+slots 79.8 % (103)  intents 82.9 %  slots 93.8 %
    compound    n=20   intents+slots 60.0 % (12)   intents 65.0 %  slots 95.0 %
    comparison  n=10   intents+slots 100  % (10)   intents 100  %  slots 100  %
    followup    n=21   intents+slots 95.2 % (20)   intents 95.2 %  slots 100  %
    all         n=180  intents+slots 80.6 % (145)  intents 83.3 %  slots 95.0 %
    no new request answered with the previous intent (0 of 9)

Measured again at main a9e3189 (3 Dec), after a round of general changes (compound splitting, pronouns
never a sex, identity phrasings) made by someone who never opened this set:

    single      n=129  intents+slots 88.4 %   compound 80.0 %   comparison 90.0 %   followup 95.2 %
    all         n=180  intents+slots 88.3 %   intents 88.9 %   slots 97.8 %   (0 previous-intent answers)

The floor is a few points below the measured overall accuracy, so a regression fails and the figure
stays honest; raise it when the held-out accuracy improves, never lower it to pass.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from functools import lru_cache
from pathlib import Path

import yaml

from assistant.intents import INTENTS
from tools.core.anatomy import ARTERY_NAMES, SEGMENTS_BY_CODE

HOLDOUT_PATH = Path(__file__).with_name("paraphrase_holdout.yaml")
KINDS = ("single", "compound", "comparison", "followup")
LANDMARKS = {"left_coronary_ostium", "right_coronary_ostium", "aortic_annulus_centre", "lv_apex", "lm_bifurcation",
             "crux", "lesion_start", "lesion_end"}
TROPONIN_UNITS = {"pg/mL", "ng/L", "ng/mL"}

# Overall fraction correct (intents and slots), a few points below the measurement in the docstring.
OVERALL_FLOOR = 0.85


def _load_scoring():
    """``test_paraphrase_set.py`` as a module, so both sets are scored by one rule (tests are no package)."""
    path = Path(__file__).with_name("test_paraphrase_set.py")
    spec = importlib.util.spec_from_file_location("_paraphrase_set_scoring", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


scoring = _load_scoring()


@lru_cache(maxsize=1)
def items() -> list[dict]:
    return yaml.safe_load(HOLDOUT_PATH.read_text())


@lru_cache(maxsize=1)
def scores() -> tuple[dict, ...]:
    return tuple(scoring.score(item) for item in items())


def accuracy(kind: str | None = None, key: str = "ok") -> float:
    rows = [r for r in scores() if kind is None or r["kind"] == kind]
    return sum(r[key] for r in rows) / len(rows)


def _label_problems(item: dict) -> list[str]:
    """What is wrong with an item's labels against the schema in the set's header (empty when none)."""
    problems = []
    if item.get("kind") not in KINDS:
        problems.append(f"kind {item.get('kind')!r}")
    if not item.get("question") or not item.get("intents"):
        problems.append("question or intents missing")
    problems += [f"intent {i!r}" for i in item.get("intents", ()) if i not in INTENTS]
    if item.get("kind") == "compound" and len(set(item["intents"])) < 2:
        problems.append("a compound item needs two or more intents")
    if item.get("kind") == "followup":
        if not item.get("context") or not item.get("previous_intents"):
            problems.append("a follow-up needs its context and previous_intents")
        problems += [f"previous intent {i!r}" for i in item.get("previous_intents") or () if i not in INTENTS]
    elif item.get("context") or item.get("new_request"):
        problems.append("context / new_request belong to follow-ups only")
    for name, value in (item.get("slots") or {}).items():
        values = value if isinstance(value, list) else [value]
        if name not in scoring.SLOTS:
            problems.append(f"slot {name!r}")
        elif name == "vessel":
            problems += [f"vessel {v!r}" for v in values if v not in SEGMENTS_BY_CODE and v not in ARTERY_NAMES]
        elif name == "landmark":
            problems += [f"landmark {v!r}" for v in values if v not in LANDMARKS]
        elif name == "troponin_unit":
            problems += [f"unit {v!r}" for v in values if v not in TROPONIN_UNITS]
        elif name == "sex":
            problems += [f"sex {v!r}" for v in values if v not in ("male", "female")]
        elif name == "structure":
            for v in values:
                try:
                    scoring._structure_key(str(v))
                except Exception as error:  # the registry's own lookup error, whatever its class  # noqa: BLE001
                    problems.append(f"structure {v!r}: {error}")
        else:
            problems += [f"{name} {v!r}" for v in values if not isinstance(v, (int, float)) or v <= 0]
    return problems


def test_the_labels_follow_the_schema():
    bad = {item.get("id"): problems for item in items() if (problems := _label_problems(item))}
    assert not bad, bad
    ids = [item["id"] for item in items()]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]


def test_the_set_is_large_and_covers_every_intent_and_kind():
    assert len(items()) >= 150
    assert {i for item in items() for i in item["intents"]} == set(INTENTS)
    assert Counter(item["kind"] for item in items()).keys() == set(KINDS)
    assert sum(bool(item.get("new_request")) for item in items()) >= 5


def test_held_out_accuracy_does_not_fall_below_the_measured_floor():
    assert accuracy() >= OVERALL_FLOOR, report()


def test_no_new_request_is_answered_with_the_previous_intent():
    carried = [r["id"] for r in scores() if r["carried_previous"]]
    assert not carried, carried


def report() -> str:
    """Accuracy per kind and the failure classes, by count only (the wordings stay in the set)."""
    lines = []
    for kind in (*KINDS, None):
        rows = [r for r in scores() if kind is None or r["kind"] == kind]
        lines.append(f"{kind or 'all':<11} n={len(rows):<4} intents+slots {accuracy(kind):6.1%}   intents "
                     f"{accuracy(kind, 'intent_ok'):6.1%}   slots {accuracy(kind, 'slots_ok'):6.1%}")
    failed = [r for r in scores() if not r["ok"]]
    lines.append(f"failures: {sum(not r['intent_ok'] for r in failed)} intent, "
                 f"{sum(r['intent_ok'] and not r['slots_ok'] for r in failed)} slots only; "
                 f"new requests answered with the previous intent: {sum(r['carried_previous'] for r in scores())}")
    confusions = Counter((tuple(r["want"][0]), tuple(r["got"][0])) for r in failed if not r["intent_ok"])
    lines.append("intent confusions (want -> got): " + ", ".join(f"{w}->{g} x{n}" for (w, g), n in
                                                                   confusions.most_common(12)))
    slot_misses = Counter(name for r in failed if r["intent_ok"] for name in
                          set(r["want"][1]) ^ set(r["got"][1]) | {n for n in r["want"][1]
                                                                  if r["got"][1].get(n) != r["want"][1][n]})
    lines.append("slots wrong, by slot (intent right): " + ", ".join(f"{n} x{c}" for n, c in slot_misses.most_common()))
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
    # Item wordings only on request: the lead's eyes, not the tuner's.
    if "-v" in sys.argv:
        for r in scores():
            if not r["ok"]:
                print(f"{r['id']:5} {r['question'][:70]:70} want {r['want']} got {r['got']}")
