"""The embedded planner's reading of clinical questions: intent by meaning, slots by rule, follow-ups."""

import pytest

from cardiovlm.assistant.question import parse_question


@pytest.mark.parametrize(
    ("text", "intent", "task", "segment", "artery"),
    [
        ("Will a 20 mm stent fully cover the proximal LAD lesion?", "stent", "stent_coverage", "pLAD", None),
        ("What is the calcium score?", "calcium", "calcium_score", None, None),
        ("Agatston?", "calcium", "calcium_score", None, None),
        ("Segment the most calcified artery", "segment", "segment", None, None),
        ("segment the circumflex branch of the left coronary artery", "segment", "segment", None, "LCx"),
        ("How severe is the stenosis in the mid RCA?", "stenosis", "stenosis", "mRCA", None),
        ("what is the length of the RCA lesion", "stenosis", "stenosis", None, "RCA"),
        ("Is there a stent in the RCA?", "stent", "presence", None, "RCA"),
        ("any Ca in LCx?", "calcium", "presence", None, "LCx"),
        ("Is this patient with Troponin-I 40 pg/mL likely to have a MACE within 1 year?", "risk", "risk", None, None),
        ("show me prior reports with LAD stenosis", "reports", "reports", None, "LAD"),
        ("What is the CAD-RADS category?", "cadrads_patient", "cadrads", None, None),
        ("What is the patient's name?", "identity", "patient_identity", None, None),
        ("banana rocket?", "unknown", "unknown", None, None),
    ],
)
def test_intent_and_anatomy(text, intent, task, segment, artery):
    q = parse_question(text)
    assert (q.intent, q.task, q.segment, q.artery) == (intent, task, segment, artery)


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
    assert (follow.intent, follow.segment, follow.stent_length_mm, follow.follow_up) == ("stent", "pLAD", 24.0, True)


def test_vessel_level_follow_up_means_the_whole_artery():
    # "and in the RCA?" after a proximal LAD question asks about every RCA segment, not only the pRCA.
    first = parse_question("How severe is the stenosis in the proximal LAD?")
    for text in ("and the RCA?", "and in the RCA?"):
        follow = parse_question(text, previous=first)
        assert (follow.intent, follow.artery, follow.segment, follow.follow_up) == ("stenosis", "RCA", None, True)
    segment_level = parse_question("and the mid RCA?", previous=first)
    assert segment_level.segment == "mRCA"


def test_question_referring_back_takes_the_previous_anatomy():
    first = parse_question("How severe is the proximal LAD stenosis?")
    follow = parse_question("Will a 20 mm stent fully cover it?", previous=first)
    assert (follow.intent, follow.segment, follow.stent_length_mm, follow.follow_up) == ("stent", "pLAD", 20.0, True)
    other = parse_question("Will a 20 mm stent cover the RCA lesion?", previous=first)
    assert other.artery == "RCA" and other.segment is None


def test_new_question_is_not_a_follow_up():
    first = parse_question("Will a 20 mm stent fully cover the proximal LAD lesion?")
    q = parse_question("What is the calcium score?", previous=first)
    assert q.intent == "calcium" and not q.follow_up


def test_empty_question_is_refused():
    with pytest.raises(ValueError, match="empty"):
        parse_question("   ")


@pytest.mark.parametrize(("text", "sex"), [
    ("What is his MACE risk with a troponin of 30 ng/L?", None),  # a pronoun refers to the patient
    ("her hs-TnI is 12 ng/L, is she above the limit?", None),
    ("Is this Mrs Okoro's scan?", None),  # a title is part of a name
    ("troponin 30 ng/L in a 71 year old man", "male"),
    ("hs-TnT 19 ng/L, 66F", "female"),
    ("sex: F, troponin 40 ng/L", "female"),
])
def test_only_a_stated_sex_is_a_sex(text, sex):
    assert parse_question(text).sex == sex


@pytest.mark.parametrize(("text", "intents"), [
    # adding separators: a semicolon, "also", "plus", "as well as", a new sentence
    ("how narrowed is the RCA; also outline it", ["stenosis", "segment"]),
    ("the calcium score plus the CAD-RADS", ["calcium", "cadrads_patient"]),
    ("Grade the LAD. Then give me the MACE risk.", ["stenosis", "risk"]),
    ("the Agatston score along with the tightest lesion", ["calcium", "stenosis"]),
    ("MACE risk / calcium score", ["risk", "calcium"]),
    ("1) slice thickness 2) patient name", ["study_info", "identity"]),
    ("slice thickness\npatient name", ["study_info", "identity"]),
    ("is the LCx narrowed or calcified?", ["stenosis", "calcium"]),
    # an alternative that asks nothing of its own is the other answer to the same question
    ("will one 24 mm stent cover the pRCA lesion, or do I need two?", ["stent"]),
    # an off-topic part is kept, so the answer names it as not answered
    ("what's the weather and what's the calcium score", ["unknown", "calcium"]),
    # a list of names is one request; a statement of context belongs to the question after it
    ("rank the LAD, the circumflex and the RCA by stenosis", ["stenosis"]),
    ("He has a mid LAD lesion; would a 24 mm stent cover it?", ["stent"]),
])
def test_every_request_of_a_compound_question_is_a_part(text, intents):
    q = parse_question(text)
    assert [p.intent for p in q.all_parts()] == intents


def test_a_statement_of_context_lends_its_anatomy_to_the_question():
    q = parse_question("He has a mid LAD lesion; would a 24 mm stent cover it?")
    assert (q.task, q.segment, q.stent_length_mm) == ("stent_coverage", "mLAD", 24.0)


def test_an_adverb_of_position_follows_up_on_the_same_artery():
    first = parse_question("How tight is the mid LAD?")
    assert parse_question("and proximally?", previous=first).segment == "pLAD"
    assert parse_question("distally?", previous=first).segment == "dLAD"
