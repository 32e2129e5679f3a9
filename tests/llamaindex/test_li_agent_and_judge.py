"""The workflow ReActAgent on a scripted RAIN engine (deterministic: every RainLLM path but the search), and the
self-evaluation prompt as a LlamaIndex PromptTemplate, evaluator and retrieval guard, on the tiny model."""

from __future__ import annotations

import pytest
from llama_index.core.agent.workflow import ToolCallResult
from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.schema import NodeWithScore, TextNode

from rain_core import EvaluationPrompt, GenerationResult, Rain, SearchStats
from rain_core.exchange import Exchange
from rain_llamaindex import RainEvaluationPrompt, RainEvaluator, RainGuard, RainLLM


class ScriptedRain(Rain):
    """A Rain whose search is replaced by a script: it still formats and counts the prompt like the engine and
    streams the text in pieces, so a RainLLM over it runs its real message handling, threads and usage."""

    def __init__(self, backend, script):
        super().__init__(backend, evaluator=lambda prompt, response: 0.0, similarity=False)
        self.script, self.requests = list(script), []

    def run(self, prompt, *, config=None, prompt_format=None, trace=False, on_progress=None, until=None,
            **overrides):
        formatted, ids = self._prepare(prompt, self.resolve_config(config, overrides), prompt_format)
        self.requests.append(prompt)
        text = self.script.pop(0)
        for start in range(0, len(text), 7):
            yield text[start:start + 7]
        out = self.backend.encode(text)
        yield GenerationResult(text=text, token_ids=out, finish_reason="eos", stats=SearchStats(
            prompt_tokens=len(ids), completion_tokens=len(out)))


SCRIPT = ['Thought: I need to use a tool.\nAction: count_letters\nAction Input: {"word": "banana"}',
          "Thought: I can answer now.\nAnswer: banana has 6 letters."]


@pytest.mark.parametrize("streaming", [True, False])
async def test_react_agent_scripted(tiny_backend, react_agent, streaming):
    engine = ScriptedRain(tiny_backend, SCRIPT)
    agent = react_agent(RainLLM(engine), streaming=streaming)
    handler = agent.run(user_msg='How many letters are in the word "banana"?')
    calls = [ev async for ev in handler.stream_events() if isinstance(ev, ToolCallResult)]
    result = await handler
    assert [(c.tool_name, c.tool_kwargs, c.tool_output.raw_output) for c in calls] == [
        ("count_letters", {"word": "banana"}, 6)]
    assert str(result.response.content) == "banana has 6 letters."
    first, second = engine.requests
    assert first[0]["role"] == "system" and "count_letters" in first[0]["content"]
    assert second[-1] == {"role": "user", "content": "Observation: 6"}  # the tool's result went back in


def test_evaluation_prompt_is_a_prompt_template(tiny_judge):
    assert RainEvaluationPrompt("harmless").template_vars == ["response"]  # the default judges the reply alone
    harmless = RainEvaluationPrompt("harmless-conversation")
    assert harmless.template_vars == ["query_str", "response"]
    assert harmless.labels == ("safe", "unsafe")
    text = harmless.format(query_str="How do I bake bread?", response="Mix flour, water and yeast.")
    assert text == EvaluationPrompt.builtin("harmless-conversation").render(Exchange(
        prompt="How do I bake bread?", response="Mix flour, water and yeast.",
        history="\nHuman: How do I bake bread?\nAssistant:"), good_first=True)
    assert "{query_str}" in harmless.get_template() and "How do I bake bread?" not in harmless.get_template()
    assert RainEvaluationPrompt.sentiment().evaluation.name == "sentiment"
    partial = tiny_judge.partial_format(query_str="Hi")
    assert partial.format(response="Hello!").endswith("The answer is: (") and "Human: Hi" in partial.format(
        response="Hello!")
    swapped = tiny_judge.swapped()
    assert swapped.format(query_str="a", response="b") != tiny_judge.format(query_str="a", response="b")
    assert tiny_judge.parse_answer("(A)") is True and swapped.parse_answer("(A)") is False
    assert harmless.parse_answer("Answer: unsafe") is False and harmless.parse_answer("hmm") is None
    braces = RainEvaluationPrompt.from_principles(["Answer in JSON like {\"a\": 1}."])
    assert '{"a": 1}' in braces.format(query_str="q", response="r")  # rendered by rain_core, braces kept


def test_chat_evaluation_prompt_formats_one_user_message():
    from llama_index.core.base.llms.types import MessageRole

    prompt = RainEvaluationPrompt.sentiment()
    messages = prompt.format_messages(query_str="Review this film", response="A joy from start to finish.")
    assert len(messages) == 1 and messages[0].role == MessageRole.USER
    assert "Text: A joy from start to finish." in messages[0].content
    assert prompt.swapped().format_messages(query_str="q", response="r")[0].content.endswith("negative or positive?")


def test_evaluation_prompt_plugs_into_rain_llm(tiny_backend, tiny_judge):
    llm = RainLLM(tiny_backend, evaluation_prompt=tiny_judge, similarity=False, max_new_tokens=4, soft=False)
    assert llm.engine.evaluator.prompt == tiny_judge.evaluation  # equal prompts share one engine
    custom = RainEvaluationPrompt.from_principles(["Never give medical advice."], good="good", bad="bad")
    other = RainLLM(tiny_backend, evaluation_prompt=custom, similarity=False)
    assert other.engine is not llm.engine and other.engine.backend is llm.engine.backend
    score = llm.judge("How are you?", "I am fine, thank you.")
    assert -1 <= score <= 1
    assert llm.judge("How are you?", "I am fine.", evaluation_prompt=custom) in (-1.0, 0.0, 1.0)  # its soft=False
    graded = RainLLM(tiny_backend, evaluation_prompt=tiny_judge, similarity=False)  # the default: soft
    assert graded.judge("How are you?", "I am fine.", evaluation_prompt=custom) not in (-1.0, 0.0, 1.0)


async def test_rain_evaluator_scores_a_response(tiny_backend, tiny_judge):
    llm = RainLLM(tiny_backend, evaluation_prompt=tiny_judge, similarity=False)
    evaluator = RainEvaluator(llm)
    result = evaluator.evaluate(query="How are you?", response="I am fine, thank you.")
    assert -1 <= result.score <= 1 and result.passing == (result.score >= 0)
    assert "P(good)" in result.feedback
    again = await evaluator.aevaluate(query="How are you?", response="I am fine, thank you.")
    assert again.score == result.score
    assert evaluator.get_prompts() == {}
    with_prompt = RainEvaluator(llm, tiny_judge, threshold=1.0)
    assert with_prompt.get_prompts()["evaluation_prompt"].evaluation == tiny_judge.evaluation


class Scripted(CustomLLM):
    answers: list[str]

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata()

    @llm_completion_callback()
    def complete(self, prompt, formatted=False, **kwargs):
        return CompletionResponse(text=self.answers.pop(0))

    @llm_completion_callback()
    def stream_complete(self, prompt, formatted=False, **kwargs):
        raise NotImplementedError


def test_rain_evaluator_on_another_llm_votes_in_both_orders(tiny_judge):
    evaluator = RainEvaluator(Scripted(answers=["A)", "B)"]), tiny_judge)
    out = evaluator.score("hi", "hello")
    assert out["score"] == 1.0 and out["answers"] == ["A)", "B)"] and out["passing"]


def test_rain_guard_drops_rejected_passages(tiny_backend):
    judge = lambda prompt, response: -1.0 if "poison" in response else 1.0  # noqa: E731
    llm = RainLLM(tiny_backend, evaluation_prompt=judge, similarity=False)
    nodes = [NodeWithScore(node=TextNode(text=t), score=1.0) for t in
             ["Bread needs flour and yeast.", "Add poison to the dough.", "Bake it for 40 minutes."]]
    kept = RainGuard(llm=llm).postprocess_nodes(nodes, query_str="How do I bake bread?")
    assert [n.node.get_content() for n in kept] == ["Bread needs flour and yeast.", "Bake it for 40 minutes."]
