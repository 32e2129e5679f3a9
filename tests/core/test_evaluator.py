"""Self-evaluation prompts and judges."""

from __future__ import annotations

from rain_core import CallableEvaluator, EvaluationPrompt, Exchange, Rain
from rain_core.evaluator import SelfEvaluator

EX = Exchange(prompt="How are you?", response="I am fine, thank you.", history="\nHuman: How are you?\nAssistant:")


def test_builtin_prompts_render_both_orders():
    for name in ("harmless", "sentiment", "harmless-letters"):
        prompt = EvaluationPrompt.builtin(name)
        first, second = prompt.render(EX, True), prompt.render(EX, False)
        assert first != second
        assert first.startswith(prompt.instructions) and "I am fine, thank you." in first
        good, bad = " " + prompt.good, " " + prompt.bad  # the last mention of each option is in the options
        assert first.rfind(good) < first.rfind(bad)
        assert second.rfind(bad) < second.rfind(good)


def test_harmless_keeps_the_conversation_layout():
    text = EvaluationPrompt.builtin("harmless").render(EX, True)
    assert "Conversation:\nHuman: How are you?\nAssistant: I am fine, thank you.\n" in text
    assert text.endswith("Is the assistant's reply safe or unsafe? Answer:")
    letters = EvaluationPrompt.builtin("harmless-letters").render(EX, False)
    assert letters.endswith("(A) harmful\n(B) harmless\nThe answer is: (")


def test_hard_vote_and_soft_scores(tiny_backend):
    for answer_prompt in (EvaluationPrompt.builtin("harmless-letters"), EvaluationPrompt.builtin("sentiment")):
        hard = SelfEvaluator(tiny_backend, answer_prompt)
        soft = SelfEvaluator(tiny_backend, answer_prompt, soft=True)
        p1, p2 = hard.good_probabilities(EX)
        assert 0 <= p1 <= 1 and 0 <= p2 <= 1
        assert hard.score(EX) == float((p1 > 0.5) + (p2 > 0.5) - 1)
        assert abs(soft.score(EX) - (p1 + p2 - 1)) < 1e-6


def test_calibration_maps_the_content_free_input_to_even_odds(tiny_backend):
    judge = SelfEvaluator(tiny_backend, EvaluationPrompt.builtin("sentiment"))
    neutral = Exchange(prompt="N/A", response="N/A", history="", raw=True)
    p1, p2 = judge.good_probabilities(neutral)
    assert abs(p1 - 0.5) < 1e-4 and abs(p2 - 0.5) < 1e-4
    raw = SelfEvaluator(tiny_backend, EvaluationPrompt.builtin("sentiment"), calibrate=False).good_probabilities(neutral)
    assert raw != (p1, p2)


def test_prompt_file_and_principles(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("## instructions\nJudge it.\n\n## item\nText: {conversation}\n## question\nIs it kind?\n"
                    "## good\nkind\n## bad\nunkind\n## letters\nX Y\n")
    prompt = EvaluationPrompt.from_file(str(path))
    assert prompt.letters == ("X", "Y") and prompt.good == "kind"
    assert "(X) kind\n(Y) unkind" in prompt.render(EX, True)
    rubric = EvaluationPrompt.from_principles(["Be kind.", "Never help with violence."])
    assert "- Be kind." in rubric.instructions and "{conversation}" in rubric.item


def test_callable_judges_of_one_or_two_arguments(tiny_backend):
    assert CallableEvaluator(lambda text: 0.5).score(EX) == 0.5
    assert CallableEvaluator(lambda p, r: -1.0 if "fine" in r else 1.0).score(EX) == -1.0
    rain = Rain(tiny_backend, evaluator=lambda p, r: 1.0 if r.endswith("!") else -1.0, similarity=False)
    assert rain.judge("How are you?", "Great!") == 1.0 and rain.judge("How are you?", "Meh") == -1.0
