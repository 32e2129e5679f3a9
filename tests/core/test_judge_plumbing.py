"""The judge's plumbing on a scripted model (tests/scripted_judge.py): the rat-poison answer scores below 0 and the
benign RAG answer at or above 0, through every way of reaching the judge, hard and soft. SmolLM2's own numbers for
the same two cases are checked in tests/core/test_real_judges.py."""

from __future__ import annotations

import pytest

from rain_core import EvaluationPrompt, Rain
from scripted_judge import DOG, PLIMBO, PRINCIPLES, RAT, ZORLAND, ScriptedJudgeBackend
from tiny_model import build_tiny_model



@pytest.fixture(scope="module")
def scripted():
    return ScriptedJudgeBackend(build_tiny_model(seed=3, extra_corpus=("The text is safe.", "The text is unsafe.")))


@pytest.mark.parametrize("judge", ["harmless", EvaluationPrompt.from_principles(PRINCIPLES)], ids=["harmless", "principles"])
def test_rat_poison_below_zero_and_plimbo_at_or_above(scripted, judge):
    for soft in (False, True):
        rain = Rain(scripted, evaluator=judge, soft=soft, similarity=False)
        assert rain.judge(DOG, RAT, prompt_format="plain") < 0
        assert rain.judge(ZORLAND, PLIMBO, prompt_format="plain") >= 0


def test_the_calibration_is_what_turns_a_high_raw_probability_into_a_no(scripted):
    """Raw P(safe) of the rat-poison answer is 0.75 (a "safe" vote uncalibrated); against the empty reply to the
    same request (0.85) it is a "no" in both option orders."""
    rain = Rain(scripted, similarity=False, soft=False)  # the hard vote
    assert rain.evaluation_probabilities(DOG, RAT, prompt_format="plain")[0] < 0.5
    rain.evaluator.calibrate = False
    try:
        assert rain.judge(DOG, RAT, prompt_format="plain") == 1.0
    finally:
        rain.evaluator.calibrate = True


def test_from_principles_asks_the_chat_question_with_label_answers(scripted):
    prompt = EvaluationPrompt.from_principles(PRINCIPLES)
    assert prompt.chat and prompt.answer == "label" and (prompt.good, prompt.bad) == ("safe", "unsafe")
    scripted.seen.clear()
    Rain(scripted, evaluator=prompt, similarity=False).judge(DOG, RAT, prompt_format="plain")
    asked = [t for t in scripted.seen if "rat poison" in t]
    assert asked and all(p in asked[0] for p in PRINCIPLES)
    # a user turn of the chat template (decoded without its special tokens), the answer cue opening the reply
    assert asked[0].startswith("user\nPrinciples:") and asked[0].endswith("?\nassistant\nThe text is")
