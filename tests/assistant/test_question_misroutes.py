"""Questions a clinician tester saw misrouted, asked here in other words of the same kind."""

import pytest

from cardiovlm.assistant.question import parse_question, understand


@pytest.mark.parametrize("text", [
    "hs-cTnT is 45 ng/L; how likely is a cardiac event within a year?",
    "Her troponin-T came back at 0.03 ng/mL, what is her risk?",
    "With a TnT of 22 pg/mL, is he at high risk of MACE?",
])
def test_a_troponin_t_value_is_refused_not_graded_as_troponin_i(text):
    plan = understand(text)
    assert plan.problem and "troponin T" in plan.problem
    assert all(p.slots.troponin_value is None for p in plan.parts)


@pytest.mark.parametrize("text", [
    "hs-cTnI is 45 ng/L; how likely is a cardiac event within a year?",
    "Her troponin 30 ng/L, what is her MACE risk?",
])
def test_a_troponin_i_or_unnamed_troponin_is_still_read(text):
    plan = understand(text)
    assert plan.problem is None and plan.parts[0].slots.troponin_value in (45.0, 30.0)


@pytest.mark.parametrize(("text", "landmark"), [
    ("Where does the circumflex start?", "lm_bifurcation"),
    ("Where does the left anterior descending artery arise?", "lm_bifurcation"),
    ("Where does the RCA start?", "right_coronary_ostium"),
    ("where does the first diagonal originate", "d1_origin"),
])
def test_where_a_vessel_begins_is_the_landmark_at_its_origin(text, landmark):
    plan = understand(text)
    assert plan.intents == ["locate"] and plan.parts[0].slots.landmark == landmark


def test_the_start_of_a_lesion_is_still_the_lesion_start():
    assert understand("Where does the LAD lesion begin?").parts[0].slots.landmark == "lesion_start"
    assert parse_question("Is there a stenosis at the origin of the LAD?").intent == "stenosis"


@pytest.mark.parametrize(("text", "vessel"), [
    ("Does the LAD narrowing need a stent?", "LAD"),
    ("Is PCI indicated for the RCA lesion?", "RCA"),
    ("Should this stenosis be stented?", None),
    ("Does this plaque require intervention?", None),
])
def test_whether_to_treat_is_answered_with_the_stenosis_and_the_clinicians_decision(text, vessel):
    plan = understand(text)
    assert plan.intents == ["stenosis", "cannot"]
    assert plan.parts[0].slots.vessel == vessel
    parts = parse_question(text).all_parts()
    assert parts[1].cannot_topic == "treatment_decision" and parts[0].task == "stenosis"


@pytest.mark.parametrize("text", ["What size stent does this lesion need?", "Does this lesion need a 20 mm stent?",
                                  "Has the RCA been stented?"])
def test_stent_sizing_and_presence_are_not_treatment_questions(text):
    assert understand(text).intents == ["stent"]


@pytest.mark.parametrize("text", ["Is the heart right-dominant?", "What's the dominance here?",
                                  "Is the circulation codominant?"])
def test_coronary_dominance_is_declined_with_its_reason(text):
    q = parse_question(text)
    assert (q.intent, q.cannot_topic) == ("cannot", "dominance")


def test_the_dominance_reason_names_what_would_answer_it():
    from cardiovlm.assistant.intents import default_matcher

    topic = default_matcher().bank.cannot_topics["dominance"]
    assert "posterior descending" in topic.what and "report" in topic.instead


@pytest.mark.parametrize(("text", "vessel"), [
    ("What diameter is the stent?", None),
    ("How wide is the stent in the circumflex?", "LCx"),
    ("How long was the stent in the LAD?", "LAD"),
])
def test_the_size_of_a_stent_in_place_is_its_state_not_a_sizing(text, vessel):
    q = parse_question(text)
    assert (q.task, q.finding, q.segment or q.artery) == ("stenosis", "stent", vessel)


@pytest.mark.parametrize("text", ["How long should the stent be for the LAD?",
                                  "What length of stent would you pick for this lesion?",
                                  "What size stent for the pLAD lesion?"])
def test_a_stent_to_choose_is_still_sized(text):
    assert parse_question(text).task == "stent_coverage"


@pytest.mark.parametrize("text", [
    "what are you good for?",
    "who put you together",
    "which questions can I put to you",
    "are you a real cardiologist",
])
def test_questions_about_the_assistant_are_answered_as_such(text):
    from cardiovlm.assistant.compose import compose_answer

    q = parse_question(text)
    assert (q.intent, q.task) == ("identity", "about_assistant")
    answer = compose_answer(q, [])
    assert "CardioVLM assistant" in answer and "not for clinical use" in answer
    assert "de-identified" not in answer  # not the patient-identity refusal


@pytest.mark.parametrize("text", ["what's the patient called?", "who is this scan of", "his MRN please"])
def test_questions_about_the_patient_stay_patient_identity(text):
    q = parse_question(text)
    assert (q.intent, q.task) == ("identity", "patient_identity")


@pytest.mark.parametrize("text", [
    "was a real human scanned here",
    "are these pictures synthetic?",
    "is this study from a phantom or a person",
    "what exactly are these images",
])
def test_what_the_loaded_images_are_is_a_study_question(text):
    assert understand(text).intents == ["study_info"]


@pytest.mark.parametrize(("text", "vessel", "structure"), [
    ("can we look at the non-calcified plaque in the circumflex?", "LCx", "plaque"),
    ("I'd like to view the calcium in the mid RCA", "mRCA", "calcification"),
    ("paint the calcified plaques in red", None, "calcification"),
    ("outline the RCA, which seems calcified", "RCA", None),
    ("draw the LAD, it is full of plaque", "LAD", None),
])
def test_a_display_request_naming_a_finding_is_a_segmentation(text, vessel, structure):
    plan = understand(text)
    assert plan.intents == ["segment"]
    assert (plan.parts[0].slots.vessel, plan.parts[0].slots.structure) == (vessel, structure)


@pytest.mark.parametrize(("text", "intent"), [
    ("show me the calcium score of the LAD", "calcium"),
    ("display the Agatston per vessel", "calcium"),
    ("show me how tight the RCA is", "stenosis"),
])
def test_a_display_request_for_a_number_still_measures(text, intent):
    assert understand(text).intents == [intent]


@pytest.mark.parametrize(("text", "vessel"), [
    ("where does the left anterior descending run out?", "dLAD"),
    ("show me where the right coronary terminates", "dRCA"),
])
def test_where_a_vessel_ends_draws_its_last_segment(text, vessel):
    plan = understand(text)
    assert plan.intents == ["segment"] and plan.parts[0].slots.vessel == vessel


def test_the_end_of_a_lesion_is_still_the_lesion_end():
    plan = understand("where does the plaque in the RCA stop?")
    assert plan.intents == ["locate"] and plan.parts[0].slots.landmark == "lesion_end"


@pytest.mark.parametrize("text", [
    "what artery supplies the posterior descending?",
    "the PDA comes from which vessel here",
])
def test_which_artery_gives_the_pda_is_the_reasoned_dominance_answer(text):
    q = parse_question(text)
    assert (q.intent, q.cannot_topic, q.vessels) == ("cannot", "dominance", [])


@pytest.mark.parametrize(("text", "landmark"), [
    ("at what point does the first diagonal leave the LAD?", "d1_origin"),
    ("mark the centre of the aortic valve annulus", "aortic_annulus_centre"),
    ("can you pinpoint the heart's crux", "crux"),
    ("point at the apex of the heart", "lv_apex"),
])
def test_landmark_wordings_locate_the_landmark(text, landmark):
    plan = understand(text)
    assert plan.intents == ["locate"] and plan.parts[0].slots.landmark == landmark


@pytest.mark.parametrize(("text", "intents"), [
    ("is FFR-CT possible, and also the narrowing of the LAD?", ["cannot", "stenosis"]),
    ("CAC score; plus the D1 lesion severity", ["calcium", "stenosis"]),
    ("where's the annulus and where is the LM bifurcation", ["locate", "locate"]),
    ("Who built you? What does the RCA look like on stenosis?", ["identity", "stenosis"]),
    ("segment the aorta, then mark the apex, then give me the study details",
     ["segment", "locate", "study_info"]),
])
def test_every_part_of_a_compound_question_is_planned(text, intents):
    plan = understand(text)
    assert plan.intents == intents
    if intents == ["locate", "locate"]:
        assert [p.slots.landmark for p in plan.parts] == ["aortic_annulus_centre", "lm_bifurcation"]


def test_two_places_are_both_located_by_the_planner():
    from cardiovlm.assistant.planner import plan_next

    q = parse_question("where is the crux and where is the apex?")
    calls = plan_next(q, [], {"vlm_locate"})
    assert [args["target"] for _, args in calls] == ["crux cordis", "left ventricular apex"]


@pytest.mark.parametrize(("text", "topic"), [
    ("could the RCA plaque rupture soon?", "plaque_vulnerability"),
    ("any napkin-ring sign in the LAD plaque", "plaque_vulnerability"),
    ("give me the CT-FFR distal to the mLAD lesion", "ffr"),
    ("what's the LV EF from these images", "ejection_fraction"),
    # asked the way clinicians ask them
    ("is the proximal LAD lesion flow-limiting?", "ffr"),
    ("is the RCA narrowing haemodynamically significant", "ffr"),
    ("is the circ stenosis hemodynamically relevant?", "ffr"),
    ("does the LAD lesion reduce blood flow", "ffr"),
    ("what's the risk this LAD plaque ruptures", "plaque_vulnerability"),
    ("PE?", "pulmonary_embolism"),
    ("can you rule out a pulmonary embolus", "pulmonary_embolism"),
    ("LVEF?", "ejection_fraction"),
    ("EF please", "ejection_fraction"),
])
def test_an_unmeasurable_quantity_is_a_reasoned_cannot(text, topic):
    from cardiovlm.assistant.compose import compose_answer

    q = parse_question(text)
    assert (q.intent, q.cannot_topic) == ("cannot", topic)
    answer = compose_answer(q, [])
    assert answer.startswith("I cannot tell you") and "What would answer it" in answer


def test_the_assistant_and_the_images_are_answered_in_a_session(patient):
    from cardiovlm.assistant.planner import ClinicalPlanner
    from cardiovlm.assistant.session import Session

    session = Session(model=ClinicalPlanner())
    session.use_context(patient)
    about = session.ask("who made you, and what can you do?")
    assert about.tool_calls == [] and "CardioVLM assistant" in about.answer and "I can answer" in about.answer
    real = session.ask("is this scan from a real patient?")
    assert [c.name for c in real.tool_calls] == ["study_info"]
    assert "not recorded with the study" in real.answer and "synthetic phantoms" in real.answer


# ------------------------------------------------- calcium shorthand and misspellings are calcium questions
@pytest.mark.parametrize(("text", "vessel"), [
    ("calc score please", None),
    ("Ca score in the LAD?", "LAD"),
    ("CAC for the circ", "LCx"),
    ("what is the agatson", None),
    ("calcuim score total", None),
    ("how much calc is there in the left main", "LM"),
    ("cac-drs?", None),
    ("overall coronary calcium burden", None),
])
def test_calcium_in_shorthand_or_misspelt_is_a_calcium_question(text, vessel):
    plan = understand(text)
    assert plan.intents == ["calcium"], plan
    assert plan.parts[0].slots.vessel == vessel


def test_a_word_that_contains_a_domain_word_is_not_corrected():
    # "noncalcified" is a word of its own, not a misspelt "calcified": the soft plaque is drawn.
    plan = understand("can I see the noncalcified plaque in the mid LAD")
    assert plan.intents == ["segment"] and plan.parts[0].slots.structure == "plaque"


@pytest.mark.parametrize(("text", "vessel"), [
    ("is the mid LAD lesion flow limiting, and how tight is it?", "mLAD"),
    ("LVEF and the RCA stenosis", "RCA"),
    ("any PE? and how narrow is the circ", "LCx"),
    ("rupture risk of the RCA plaque, plus its percent stenosis", "RCA"),
])
def test_a_cannot_beside_a_stenosis_question_plans_both_parts(text, vessel):
    from cardiovlm.assistant.planner import plan_next

    q = parse_question(text)
    assert sorted(p.intent for p in q.all_parts()) == ["cannot", "stenosis"], q.all_parts()
    stenosis = next(p for p in q.all_parts() if p.intent == "stenosis")
    assert (stenosis.segment or stenosis.artery) == vessel
    assert plan_next(q, [], {"measure_lesion", "stent_coverage"}) == [("measure_lesion", {"vessel": vessel})]


def test_a_plain_stenosis_question_is_not_a_cannot():
    # The control: only the flow words make the cannot; "significant" alone is a CT stenosis grade.
    assert understand("is the mid LAD stenosis significant?").intents == ["stenosis"]


# ------------------------------------------------------ in-stent restenosis and percent wordings are stenosis
@pytest.mark.parametrize(("text", "vessel"), [
    ("any ISR in the LAD stent?", "LAD"),
    ("is there in-stent restenosis of the pRCA stent", "pRCA"),
    ("has the circumflex stent restenosed?", "LCx"),
])
def test_in_stent_restenosis_is_a_stenosis_of_the_stented_segment(text, vessel):
    from cardiovlm.assistant.planner import plan_next

    q = parse_question(text)
    assert q.intent == "stenosis" and (q.segment or q.artery) == vessel
    calls = plan_next(q, [], {"segment_anatomy", "measure_lesion", "stent_coverage"})
    assert ("measure_lesion", {"vessel": vessel}) in calls
    assert ("segment_anatomy", {"target": "stent", "on_artery": vessel}) in calls
    assert not any(name == "stent_coverage" for name, _ in calls)  # nothing is sized


@pytest.mark.parametrize("text", ["quantify the narrowing in the mid RCA", "what percent is the mid RCA narrowed",
                                  "what % stenosis does the mid RCA have"])
def test_quantifying_a_narrowing_is_stenosis_not_segmentation(text):
    plan = understand(text)
    assert plan.intents == ["stenosis"] and plan.parts[0].slots.vessel == "mRCA"


# ------------------------------------------------------------------------ slots in clinical shorthand
@pytest.mark.parametrize("text", ["would a 3.0 by 18 cover the pLAD lesion", "18 mm x 3 mm stent for the pLAD?",
                                  "3x18mm stent in the pLAD ok?"])
def test_a_stent_size_pair_is_diameter_and_length(text):
    from cardiovlm.assistant.planner import plan_next

    q = parse_question(text)
    assert (q.intent, q.stent_diameter_mm, q.stent_length_mm) == ("stent", 3.0, 18.0)
    assert plan_next(q, [], {"stent_coverage"}) == [
        ("stent_coverage", {"vessel": "pLAD", "stent_length_mm": 18.0, "stent_diameter_mm": 3.0})]


@pytest.mark.parametrize(("text", "value", "unit", "sex"), [
    ("TnI 40 ng/L 67M, MACE risk?", 40.0, "ng/L", "male"),
    ("trop 40 ng/L, 58F: risk?", 40.0, "ng/L", "female"),
    ("hs-TnI 52ng/L 71F what's her risk", 52.0, "ng/L", "female"),
])
def test_a_troponin_before_age_and_sex_shorthand_keeps_value_unit_and_sex(text, value, unit, sex):
    slots = understand(text).parts[0].slots
    assert (slots.troponin_value, slots.troponin_unit, slots.sex) == (value, unit, sex)


@pytest.mark.parametrize(("text", "vessel"), [
    ("narrowing in the diag?", "D1"), ("is diag 1 stenosed", "D1"), ("how bad is the first diag", "D1"),
    ("stenosis of the second diag", "D2"), ("is the OM narrowed", "OM1"), ("plaque in OM 2?", "OM2"),
])
def test_branch_shorthand_names_the_branch(text, vessel):
    assert understand(text).parts[0].slots.vessel == vessel


def test_a_word_starting_like_a_branch_is_no_branch():
    assert understand("what is the diagnosis for the RCA lesion").parts[0].slots.vessel == "RCA"


# --------------------------------------------------------------------------------------- follow-ups
@pytest.mark.parametrize("reply", ["she's female", "male", "the patient is female", "it's a man"])
def test_a_reply_giving_only_the_sex_continues_the_troponin_question(reply):
    plan = understand(reply, prior=["hs-troponin I 45 ng/L, what is the MACE risk?"])
    assert plan.intents == ["risk"] and plan.follow_up
    slots = plan.parts[0].slots
    assert (slots.troponin_value, slots.troponin_unit) == (45.0, "ng/L") and slots.sex in ("male", "female")


@pytest.mark.parametrize("reply", ["what about a 24?", "and a 24?", "how about 24 mm"])
def test_a_new_length_after_a_stent_question_keeps_the_stent_question(reply):
    plan = understand(reply, prior=["will a 3.0 x 18 mm stent cover the mid LAD lesion?"])
    assert plan.intents == ["stent"]
    slots = plan.parts[0].slots
    assert (slots.vessel, slots.stent_length_mm, slots.stent_diameter_mm) == ("mLAD", 24.0, 3.0)


@pytest.mark.parametrize("reply", ["female, 58", "58F", "the patient is a 70 year old man"])
def test_an_age_beside_the_sex_is_not_a_new_troponin(reply):
    plan = understand(reply, prior=["trop 55 ng/L, what's the risk?"])
    assert plan.intents == ["risk"]
    assert plan.parts[0].slots.troponin_value == 55.0 and plan.parts[0].slots.sex is not None


def test_a_bare_number_alone_is_still_a_new_troponin():
    # The control: without a sex or an age word the number replaces the troponin value.
    assert understand("what about 80?", prior=["trop 55 ng/L, what's the risk?"]).parts[0].slots.troponin_value == 80.0
