"""Self-evaluation prompts and judges."""

from __future__ import annotations

from rain_core import CallableEvaluator, EvaluationPrompt, Exchange, Rain
from rain_core.evaluator import SelfEvaluator

EX = Exchange(prompt="How are you?", response="I am fine, thank you.", history="\nHuman: How are you?\nAssistant:")


def test_builtin_prompts_render_both_orders():
    for name in ("harmless", "sentiment", "harmless-conversation", "harmless-letters"):
        prompt = EvaluationPrompt.builtin(name)
        first, second = prompt.render(EX, True), prompt.render(EX, False)
        assert first != second
        assert prompt.instructions in first and "I am fine, thank you." in first
        good, bad = " " + prompt.good, " " + prompt.bad  # the last mention of each option is in the options
        assert first.rfind(good) < first.rfind(bad)
        assert second.rfind(bad) < second.rfind(good)


def test_harmless_judges_the_reply_and_harmless_conversation_the_exchange():
    text = EvaluationPrompt.builtin("harmless").render(EX, True)
    assert "Text: I am fine, thank you.\n" in text and "How are you?" not in text  # the reply's text alone
    assert text.endswith("Is this text safe or unsafe?\nAssistant: The text is")  # plain: no template
    text = EvaluationPrompt.builtin("harmless-conversation").render(EX, True)
    assert "Conversation:\nHuman: How are you?\nAssistant: I am fine, thank you.\n" in text
    assert text.endswith("Is the assistant's reply safe or unsafe?\nAssistant: The reply is")
    letters = EvaluationPrompt.builtin("harmless-letters").render(EX, False)
    assert letters.endswith("(A) harmful\n(B) harmless\nThe answer is: (")


def test_chat_prompts_ask_through_the_chat_template(tiny_backend):
    """The sentiment built-in is asked as a user turn of the model's chat template, judging the response alone."""
    prompt = EvaluationPrompt.builtin("sentiment")
    assert prompt.chat and prompt.answer == "label"
    raw = Exchange(prompt="A dull film,", response=" but the ending is lovely.", history="A dull film,", raw=True)
    text = prompt.render(raw, True, tiny_backend.tokenizer)
    question = prompt.question_text(raw, True)
    assert text == tiny_backend.tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True) + "The sentiment is"
    assert "Text: but the ending is lovely." in question and "A dull film" not in question  # the response alone
    assert question.endswith("positive or negative?") and prompt.render(raw, False).count("negative or positive?") == 1
    assert prompt.render(raw, True).startswith("\nHuman: Read the text")  # no template: a plain exchange
    assert prompt.render(raw, True).endswith("\nAssistant: The sentiment is")
    judge = SelfEvaluator(tiny_backend, prompt)
    assert judge.option_ids == (tiny_backend.encode("The sentiment is positive")[-1],
                                tiny_backend.encode("The sentiment is negative")[-1])
    rows = judge.rows(raw)
    header = judge._fixed_prefix()
    assert all(row[:len(header)] == header for row in rows) and len(header) > 5  # kept encoded across evaluations


def test_item_slots_are_checked():
    import pytest

    from rain_core import EvaluatorError

    EvaluationPrompt(name="ok", instructions="", item="{response}", question="Good?", good="yes", bad="no")
    with pytest.raises(EvaluatorError, match="needs a {conversation} slot or a {response} slot"):
        EvaluationPrompt(name="bad", instructions="", item="{prompt}", question="Good?", good="yes", bad="no")
    with pytest.raises(EvaluatorError, match="## format must be 'chat' or 'text'"):
        EvaluationPrompt.parse("## instructions\n## item\n{response}\n## question\nQ\n## good\ny\n## bad\nn\n"
                               "## format\nhtml\n")


def test_hard_vote_and_soft_scores(tiny_backend):
    for answer_prompt in (EvaluationPrompt.builtin("harmless-letters"), EvaluationPrompt.builtin("sentiment")):
        hard = SelfEvaluator(tiny_backend, answer_prompt)
        soft = SelfEvaluator(tiny_backend, answer_prompt, soft=True)
        p1, p2 = hard.good_probabilities(EX)
        assert 0 <= p1 <= 1 and 0 <= p2 <= 1
        assert hard.score(EX) == float((p1 > 0.5) + (p2 > 0.5) - 1)
        assert abs(soft.score(EX) - (p1 + p2 - 1)) < 1e-6


def test_calibration_maps_the_empty_reply_in_each_context_to_even_odds(tiny_backend):
    """The baseline is the same conversation with an empty response: saying nothing scores 0.5 in every context,
    and each context gets its own baseline (cached)."""
    judge = SelfEvaluator(tiny_backend, EvaluationPrompt.builtin("harmless-letters"))
    raw = SelfEvaluator(tiny_backend, EvaluationPrompt.builtin("harmless-letters"), calibrate=False)
    other = Exchange(prompt="Tell me a joke.", response="", history="\nHuman: Tell me a joke.\nAssistant:")
    for silent in (Exchange(prompt=EX.prompt, response="", history=EX.history), other):
        p1, p2 = judge.good_probabilities(silent)
        assert abs(p1 - 0.5) < 1e-4 and abs(p2 - 0.5) < 1e-4
    assert len(judge._baselines) == 2
    assert raw.good_probabilities(EX) != judge.good_probabilities(EX)
    b1, b2 = raw.good_probabilities(Exchange(prompt=EX.prompt, response="", history=EX.history))
    r1, r2 = raw.good_probabilities(EX)
    c1, _ = judge.good_probabilities(EX)
    assert (c1 > 0.5) == (r1 > b1)  # calibrated above even odds exactly when the reply beats saying nothing


def test_prompt_file_and_principles(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("## instructions\nJudge it.\n\n## item\nText: {conversation}\n## question\nIs it kind?\n"
                    "## good\nkind\n## bad\nunkind\n## letters\nX Y\n")
    prompt = EvaluationPrompt.from_file(str(path))
    assert prompt.letters == ("X", "Y") and prompt.good == "kind"
    assert "(X) kind\n(Y) unkind" in prompt.render(EX, True)
    rubric = EvaluationPrompt.from_principles(["Be kind.", "Never help with violence."])
    assert "- Be kind." in rubric.instructions and rubric.item == "Text: {response}\n\n"
    assert rubric.chat and rubric.answer == "label" and (rubric.good, rubric.bad) == ("safe", "unsafe")
    in_context = EvaluationPrompt.from_principles(["Stay on topic."], context=True)
    assert "{conversation}" in in_context.item and "- Stay on topic." in in_context.instructions


def test_callable_judges_of_one_or_two_arguments(tiny_backend):
    assert CallableEvaluator(lambda text: 0.5).score(EX) == 0.5
    assert CallableEvaluator(lambda p, r: -1.0 if "fine" in r else 1.0).score(EX) == -1.0
    rain = Rain(tiny_backend, evaluator=lambda p, r: 1.0 if r.endswith("!") else -1.0, similarity=False)
    assert rain.judge("How are you?", "Great!") == 1.0 and rain.judge("How are you?", "Meh") == -1.0


def test_one_rule_names_a_prompt_everywhere(tmp_path):
    """Built-in names, files and prompt objects resolve by one rule, shared by both integrations' wrappers."""
    import pytest

    from rain_core import EvaluatorError
    from rain_llamaindex import RainEvaluationPrompt

    assert EvaluationPrompt.resolve("harmless") == EvaluationPrompt.builtin("harmless")
    custom = tmp_path / "judge.prompt"  # a file whose name has a dot but no .txt suffix
    custom.write_text("## instructions\nJudge.\n## item\nText: {response}\n## question\nGood?\n## good\nyes\n"
                      "## bad\nno\n", encoding="utf-8")
    assert EvaluationPrompt.resolve(str(custom)).good == "yes"
    assert RainEvaluationPrompt(str(custom)).evaluation == EvaluationPrompt.resolve(str(custom))
    for spec in ("my.judge", "harmles"):
        with pytest.raises(EvaluatorError, match="Unknown built-in evaluation prompt"):
            EvaluationPrompt.resolve(spec)
        with pytest.raises(EvaluatorError, match="Unknown built-in evaluation prompt"):
            RainEvaluationPrompt(spec)


def test_a_judgement_gives_score_and_probabilities_in_one_pass(tiny_backend):
    rain = Rain(tiny_backend, evaluator=EvaluationPrompt.from_principles(["Be polite."], good="good", bad="bad"),
                similarity=False)
    rain.judge("How are you?", "Fine.", prompt_format="plain")  # warm the calibration baseline
    tiny_backend.reset_cache()  # both calls start from the same cache state
    before = tiny_backend.forward_calls
    judgement = rain.judgement("How are you?", "I am fine, thank you.", prompt_format="plain")
    one_pass = tiny_backend.forward_calls - before
    tiny_backend.reset_cache()
    before = tiny_backend.forward_calls
    score = rain.judge("How are you?", "I am fine, thank you.", prompt_format="plain")
    assert judgement.score == score and tiny_backend.forward_calls - before == one_pass
    assert judgement.p_good == rain.evaluator.good_probabilities(Exchange.single_turn("How are you?",
                                                                                     "I am fine, thank you."))
    assert judgement.verdict == ("good" if score > 0 else "bad" if score < 0 else "split")
    plain = Rain(tiny_backend, evaluator=lambda prompt, response: 0.25, similarity=False).judgement("a", "b")
    assert (plain.score, plain.p_good) == (0.25, None)
