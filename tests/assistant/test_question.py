"""The embedded planner's reading of clinical questions."""

import pytest

from assistant.question import parse_question


@pytest.mark.parametrize(
    ("text", "intent", "segment", "artery"),
    [
        ("Will a 20 mm stent fully cover the proximal LAD lesion?", "stent_coverage", "pLAD", None),
        ("What is the calcium score?", "calcium_score", None, None),
        ("Agatston?", "calcium_score", None, None),
        ("Segment the most calcified artery", "segment", None, None),
        ("segment the circumflex branch of the left coronary artery", "segment", None, "LCx"),
        ("How severe is the stenosis in the mid RCA?", "stenosis", "mRCA", None),
        ("what is the length of the RCA lesion", "stenosis", None, "RCA"),
        ("Is there a stent in the RCA?", "presence", None, "RCA"),
        ("any Ca in LCx?", "presence", None, "LCx"),
        ("Is this patient with Troponin-I 40 pg/mL likely to have a MACE within 1 year?", "risk", None, None),
        ("show me prior reports with LAD stenosis", "reports", None, "LAD"),
        ("banana rocket?", "unknown", None, None),
    ],
)
def test_intent_and_anatomy(text, intent, segment, artery):
    q = parse_question(text)
    assert (q.intent, q.segment, q.artery) == (intent, segment, artery)


def test_numbers_with_units():
    q = parse_question("Would a 3.0 x 24 mm stent cover the pLAD lesion?")
    assert (q.stent_length_mm, q.stent_diameter_mm) == (24.0, 3.0)
    q = parse_question("hs-cTnI 0.04 ng/mL, what is her risk of MACE?")
    assert (q.troponin_value, q.troponin_unit) == (0.04, "ng/mL")


def test_yes_no_questions_are_marked():
    assert parse_question("Will a 20 mm stent cover the proximal LAD lesion?").is_yes_no
    assert not parse_question("What is the calcium score?").is_yes_no


def test_follow_up_keeps_lesion_and_changes_stent_length():
    first = parse_question("Will a 20 mm stent fully cover the proximal LAD lesion?")
    follow = parse_question("what about a 24 mm one?", previous=first)
    assert (follow.intent, follow.segment, follow.stent_length_mm, follow.follow_up) == (
        "stent_coverage", "pLAD", 24.0, True)


def test_follow_up_moves_to_the_same_position_on_another_artery():
    first = parse_question("How severe is the stenosis in the proximal LAD?")
    follow = parse_question("and the RCA?", previous=first)
    assert (follow.intent, follow.segment) == ("stenosis", "pRCA")


def test_question_referring_back_takes_the_previous_anatomy():
    first = parse_question("How severe is the proximal LAD stenosis?")
    follow = parse_question("Will a 20 mm stent fully cover it?", previous=first)
    assert (follow.intent, follow.segment, follow.stent_length_mm, follow.follow_up) == (
        "stent_coverage", "pLAD", 20.0, True)
    other = parse_question("Will a 20 mm stent cover the RCA lesion?", previous=first)
    assert other.artery == "RCA" and other.segment is None


def test_new_question_is_not_a_follow_up():
    first = parse_question("Will a 20 mm stent fully cover the proximal LAD lesion?")
    q = parse_question("What is the calcium score?", previous=first)
    assert q.intent == "calcium_score" and not q.follow_up


def test_empty_question_is_refused():
    with pytest.raises(ValueError, match="empty"):
        parse_question("   ")
