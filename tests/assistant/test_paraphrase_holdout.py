"""The held-out paraphrase sets (``paraphrase_holdout.yaml``, ``_b.yaml``, ``_c.yaml``): the control.

``paraphrase_set.yaml`` is the set the matcher is tuned on; these three were written by people who had not
read the matcher's phrase lists, that set's questions or the question suite, and nobody tunes on them.
Their accuracy says whether tuning generalises. Items are scored exactly as ``test_paraphrase_set.py``
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

Set B (``paraphrase_holdout_b.yaml``, 190 items: 130 single, 22 compound, 12 comparison, 26 follow-up,
7 of them new requests) was written on 3 Dec by another engineer, equally blind to the matcher, and
frozen (commit d6ebde2) before the matcher was run on it. Measured at main d6ebde2, whose matcher files
were last changed in 21cbea9, ``python tests/assistant/test_paraphrase_holdout.py``:

    set B       single n=130 87.7 %   compound n=22 86.4 %   comparison n=12 83.3 %   followup n=26 84.6 %
                all n=190  intents+slots 86.8 %   intents 88.9 %   slots 96.3 %   (0 of 7 previous-intent)
    set A+B     single n=259 88.0 %   compound n=42 83.3 %   comparison n=22 90.9 %   followup n=47 89.4 %
                all n=370  intents+slots 87.8 %   intents 89.2 %   slots 97.0 %   (0 previous-intent answers)

(Set A measured 88.9 % at the same commit; measured on a copy of that commit, since the working tree
then held another engineer's uncommitted matcher edits, under which B read 89.5 % and A+B 90.5 %.)
Measured again at main 5adba54 (3 Dec, 07:45), after a round of general changes (questions about the
assistant and the images' provenance, show/see requests as segmentation, compound splitting after
"also"/"plus", branch take-off and vessel-end questions, reasoned "cannot" topics) made by an engineer
who opened neither set:

    set A       all n=180  intents+slots 92.2 %   (single 92.2 %, compound 80.0 %, comparison 100 %, followup 100 %)
    set B       all n=190  intents+slots 90.5 %   (single 91.5 %, compound 90.9 %, comparison 83.3 %, followup 88.5 %)
    set A+B     single n=259 91.9 %   compound n=42 85.7 %   comparison n=22 90.9 %   followup n=47 93.6 %
                all n=370  intents+slots 91.4 %   intents 92.7 %   slots 97.3 %   (0 previous-intent answers)

Measured again at main c93bc3d (3 Dec, 08:08), after a second round (misspelt and clipped calcium words,
branch shorthand, cannot topics phrased clinically and joined to a measurable request, in-stent
restenosis, stent sizes written as pairs, sex-only follow-ups). Its engineer opened neither set, but
was given the failure CLASSES of set B (no wordings), and the first round those of set A: both sets
now also judge tuning guided by their own error analysis, so these figures are optimistic, B's most.

    set A       all n=180  intents+slots 93.3 %   (single 93.0 %, compound 85.0 %, comparison 100 %, followup 100 %)
    set B       all n=190  intents+slots 95.8 %   (single 96.2 %, compound 95.5 %, comparison 100 %, followup 92.3 %)
    set A+B     single n=259 94.6 %   compound n=42 90.5 %   comparison n=22 100 %   followup n=47 95.7 %
                all n=370  intents+slots 94.6 %   intents 95.4 %   slots 98.1 %   (0 previous-intent answers)

Set C (``paraphrase_holdout_c.yaml``, 133 items: 93 single, 15 compound, 10 comparison, 15 follow-up,
5 of them new requests) was written on 3 Dec by a third engineer, blind to the matcher and to the items
of sets A and B, and frozen (commit f3103fb) before the matcher was run on it. It has never been
analysed or tuned on: only its per-kind accuracy is printed, never its failures or their classes.
Measured once, at main f3103fb, whose matcher files were last changed in c93bc3d (no uncommitted
matcher edits in the tree), ``python tests/assistant/test_paraphrase_holdout.py``:

    set C       single      n=93   intents+slots  98.9 %   intents  98.9 %   slots 100  %
                compound    n=15   intents+slots 100  %    intents 100  %    slots 100  %
                comparison  n=10   intents+slots  90.0 %   intents  90.0 %   slots  90.0 %
                followup    n=15   intents+slots  86.7 %   intents 100  %    slots  86.7 %
                all         n=133  intents+slots  97.0 %   intents  98.5 %   slots  97.7 %
                (0 of 5 new requests answered with the previous intent)

The floors are a few points below the measured accuracies, so a regression fails and the figures
stay honest; raise them when the held-out accuracy improves, never lower them to pass.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
import yaml

from cardiovlm.assistant.intents import INTENTS
from cardiovlm.tools.core.anatomy import ARTERY_NAMES, SEGMENTS_BY_CODE
from cardiovlm.tools.core.anatomy import LANDMARKS as ANATOMY_LANDMARKS

HOLDOUT_PATH = Path(__file__).with_name("paraphrase_holdout.yaml")
HOLDOUT_B_PATH = Path(__file__).with_name("paraphrase_holdout_b.yaml")
HOLDOUT_C_PATH = Path(__file__).with_name("paraphrase_holdout_c.yaml")
# Set A, set B (written later by another engineer, equally blind to the matcher), their union, and set C
# (written later still, never analysed or tuned on: only its per-kind accuracy is ever printed).
SETS = {"A": (HOLDOUT_PATH,), "B": (HOLDOUT_B_PATH,), "A+B": (HOLDOUT_PATH, HOLDOUT_B_PATH),
        "C": (HOLDOUT_C_PATH,)}
# Sets whose failure classes may be printed; set C's stay unseen so that nobody can tune on them.
ANALYSED = ("A", "B", "A+B")
KINDS = ("single", "compound", "comparison", "followup")
# The registry's landmarks (ostia, annulus, apex, crux, branch origins) and the ends of a lesion.
LANDMARKS = set(ANATOMY_LANDMARKS) | {"lesion_start", "lesion_end"}
TROPONIN_UNITS = {"pg/mL", "ng/L", "ng/mL"}

# Overall fraction correct (intents and slots), a few points below the measurements in the docstring.
OVERALL_FLOOR = 0.90
OVERALL_FLOOR_B = 0.92
OVERALL_FLOOR_UNION = 0.91
OVERALL_FLOOR_C = 0.94
# Per kind on the union (both sets together, n >= 22 per kind), a few points below the measurement.
UNION_KIND_FLOORS = {"single": 0.91, "compound": 0.85, "comparison": 0.95, "followup": 0.92}


def _load_scoring():
    """``test_paraphrase_set.py`` as a module, so both sets are scored by one rule (tests are no package)."""
    path = Path(__file__).with_name("test_paraphrase_set.py")
    spec = importlib.util.spec_from_file_location("_paraphrase_set_scoring", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


scoring = _load_scoring()


@cache
def items(name: str = "A") -> list[dict]:
    return [item for path in SETS[name] for item in yaml.safe_load(path.read_text())]


@cache
def _scored(path: Path) -> tuple[dict, ...]:
    return tuple(scoring.score(item) for item in yaml.safe_load(path.read_text()))


def scores(name: str = "A") -> tuple[dict, ...]:
    """Each set is scored once; the union reuses its parts' scores."""
    return tuple(row for path in SETS[name] for row in _scored(path))


def accuracy(kind: str | None = None, key: str = "ok", name: str = "A") -> float:
    rows = [r for r in scores(name) if kind is None or r["kind"] == kind]
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


@pytest.mark.parametrize("name", ["A", "B", "C"])
def test_the_labels_follow_the_schema(name):
    bad = {item.get("id"): problems for item in items(name) if (problems := _label_problems(item))}
    assert not bad, bad


def test_ids_are_unique_across_the_three_sets():
    ids = [item["id"] for name in ("A+B", "C") for item in items(name)]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]


@pytest.mark.parametrize("name", ["A", "B"])
def test_the_set_is_large_and_covers_every_intent_and_kind(name):
    assert len(items(name)) >= 150
    assert {i for item in items(name) for i in item["intents"]} == set(INTENTS)
    assert Counter(item["kind"] for item in items(name)).keys() == set(KINDS)
    assert sum(bool(item.get("new_request")) for item in items(name)) >= 5


def test_set_c_is_large_and_covers_every_intent_and_kind():
    assert len(items("C")) >= 120
    assert {i for item in items("C") for i in item["intents"]} == set(INTENTS)
    assert Counter(item["kind"] for item in items("C")).keys() == set(KINDS)
    assert sum(bool(item.get("new_request")) for item in items("C")) >= 5


def test_the_held_out_sets_together_reach_the_target_size():
    assert len(items("A+B")) >= 300


def test_held_out_accuracy_does_not_fall_below_the_measured_floor():
    assert accuracy() >= OVERALL_FLOOR, report()


def test_set_b_accuracy_does_not_fall_below_its_measured_floor():
    assert accuracy(name="B") >= OVERALL_FLOOR_B, report("B")


def test_set_c_accuracy_does_not_fall_below_its_measured_floor():
    assert accuracy(name="C") >= OVERALL_FLOOR_C, report("C")


@pytest.mark.parametrize("kind", [None, *KINDS])
def test_union_accuracy_per_kind_does_not_fall_below_the_measured_floor(kind):
    floor = OVERALL_FLOOR_UNION if kind is None else UNION_KIND_FLOORS[kind]
    assert accuracy(kind, name="A+B") >= floor, report("A+B")


@pytest.mark.parametrize("name", ["A", "B", "C"])
def test_no_new_request_is_answered_with_the_previous_intent(name):
    carried = [r["id"] for r in scores(name) if r["carried_previous"]]
    # Set C's failures stay unnamed: a count, never the items.
    assert not carried, carried if name in ANALYSED else f"{len(carried)} new requests carried the previous intent"


def report(name: str = "A") -> str:
    """Accuracy per kind and, for an analysed set, the failure classes by count (the wordings stay in the set)."""
    lines = [f"set {name}"]
    for kind in (*KINDS, None):
        rows = [r for r in scores(name) if kind is None or r["kind"] == kind]
        lines.append(f"{kind or 'all':<11} n={len(rows):<4} intents+slots {accuracy(kind, name=name):6.1%}   "
                     f"intents {accuracy(kind, 'intent_ok', name):6.1%}   "
                     f"slots {accuracy(kind, 'slots_ok', name):6.1%}")
    if name not in ANALYSED:
        lines.append(f"new requests answered with the previous intent: "
                     f"{sum(r['carried_previous'] for r in scores(name))}")
        return "\n".join(lines)
    failed = [r for r in scores(name) if not r["ok"]]
    lines.append(f"failures: {sum(not r['intent_ok'] for r in failed)} intent, "
                 f"{sum(r['intent_ok'] and not r['slots_ok'] for r in failed)} slots only; "
                 f"new requests answered with the previous intent: {sum(r['carried_previous'] for r in scores(name))}")
    confusions = Counter((tuple(r["want"][0]), tuple(r["got"][0])) for r in failed if not r["intent_ok"])
    lines.append("intent confusions (want -> got): " + ", ".join(f"{w}->{g} x{n}" for (w, g), n in
                                                                   confusions.most_common(12)))
    slot_misses = Counter(slot for r in failed if r["intent_ok"] for slot in
                          set(r["want"][1]) ^ set(r["got"][1]) | {n for n in r["want"][1]
                                                                  if r["got"][1].get(n) != r["want"][1][n]})
    lines.append("slots wrong, by slot (intent right): " + ", ".join(f"{n} x{c}" for n, c in slot_misses.most_common()))
    return "\n".join(lines)


if __name__ == "__main__":
    for set_name in SETS:
        print(report(set_name), end="\n\n")
    # Item wordings only on request: the lead's eyes, not the tuner's.
    if "-v" in sys.argv:
        for r in scores("A+B"):
            if not r["ok"]:
                print(f"{r['id']:5} {r['question'][:70]:70} want {r['want']} got {r['got']}")
