"""`ChatRain` beyond the standard suites, on the tiny random model: message translation, streaming metadata,
prompt-based tools, token counting, the self-evaluation prompt, and a scripted `create_agent` loop."""

from __future__ import annotations

import asyncio
import json

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool

from rain_langchain import ChatRain, SelfEvaluationPrompt
from rain_core.exchange import format_prompt
from rain_langchain.chat_models import to_rain_messages
from rain_langchain.tools import call_schema, describe_tools, parse_tool_calls

from lc_budgets import TINY_JUDGE


@tool
def get_weather(location: str) -> str:
    """Get the weather at a location."""
    return f"It's sunny in {location}."


@tool
def dice() -> int:
    """Roll a die."""
    return 4


def test_messages_merge_fold_tools_and_prefill():
    history = [SystemMessage("Be brief."), SystemMessage("Be kind."), HumanMessage("hi"), HumanMessage("there"),
               AIMessage("", tool_calls=[{"name": "get_weather", "args": {"location": "Oslo"}, "id": "c1"}]),
               ToolMessage("sunny", tool_call_id="c1", name="get_weather"),
               ToolMessage("boom", tool_call_id="c2", status="error"), AIMessage("It is")]
    msgs, prefill = to_rain_messages(history)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[0]["content"] == "Be brief.\n\nBe kind." and msgs[1]["content"] == "hi\n\nthere"
    assert json.loads(msgs[2]["content"]) == {"name": "get_weather", "arguments": {"location": "Oslo"}}
    assert msgs[3]["content"] == "Tool result (get_weather): sunny\n\nTool error (c2): boom"
    assert prefill == "It is"
    folded, _ = to_rain_messages(history[:4], system_ok=False)
    assert folded == [{"role": "user", "content": "Be brief.\n\nBe kind.\n\nhi\n\nthere"}]
    native, _ = to_rain_messages(history[4:6] + [HumanMessage("ok")], tool_role_ok=True)
    assert [m["role"] for m in native] == ["assistant", "tool", "user"]


def test_no_call_allowed_asks_for_the_answer_after_tool_results():
    """tool_choice="none" after a tool result restates the user's question: a small model copies its last call
    otherwise, and an agent loops until its recursion limit."""
    history = [HumanMessage("Weather in Oslo?"),
               AIMessage("", tool_calls=[{"name": "get_weather", "args": {"location": "Oslo"}, "id": "c1"}]),
               ToolMessage("sunny", tool_call_id="c1", name="get_weather")]
    msgs, _ = to_rain_messages(history, answer_now=True)
    assert msgs[-1]["content"] == ("Tool result (get_weather): sunny\n\n"
                                   "Using this result, answer in plain text: Weather in Oslo?")
    assert to_rain_messages(history)[0][-1]["content"] == "Tool result (get_weather): sunny"
    asked, _ = to_rain_messages(history[:1], answer_now=True)  # nothing to answer from yet: unchanged
    assert asked == [{"role": "user", "content": "Weather in Oslo?"}]


def test_tool_choice_none_describes_tools_but_parses_no_call(tiny_chat):
    history = [HumanMessage("Weather in Oslo?"),
               AIMessage("", tool_calls=[{"name": "get_weather", "args": {"location": "Oslo"}, "id": "c1"}]),
               ToolMessage("sunny", tool_call_id="c1", name="get_weather")]
    bound = tiny_chat.bind_tools([get_weather], tool_choice="none")
    call = tiny_chat._plan(history, None, dict(bound.kwargs))
    text = format_prompt(tiny_chat.engine.tokenizer, call.prompt, call.prompt_format).text
    assert "get_weather(location: string)" in text and text.count("Using this result, answer") == 1
    assert call.tool_names == [] and not call.prefix


def test_parse_tool_calls():
    text = 'Let me check.\n```json\n{"name": "get_weather", "arguments": {"location": "Paris"}}\n```'
    content, calls = parse_tool_calls(text, ["get_weather"])
    assert content == "Let me check." and calls[0]["args"] == {"location": "Paris"} and calls[0]["id"]
    _, calls = parse_tool_calls('<tool_call>[{"name": "dice", "args": "{}"}]</tool_call>', ["dice"])
    assert calls[0]["name"] == "dice" and calls[0]["args"] == {}
    assert parse_tool_calls('{"name": "other", "arguments": {}}', ["dice"]) == ('{"name": "other", "arguments": {}}', [])
    schema = {"name": "f", "parameters": {"properties": {"a": {"type": "integer"}, "b": {}}, "required": ["b"]}}
    assert "f(a: integer, b: any)" in describe_tools([schema])
    assert call_schema("f", [schema]) == {
        "type": "object", "properties": {"name": {"const": "f"}, "arguments": {"type": "object", **schema["parameters"]}},
        "required": ["name", "arguments"], "additionalProperties": False}


def test_a_forced_call_opens_with_what_its_schema_fixes(tiny_chat):
    """The grammar writes the name and, when the first argument is a required string, its key and opening quote."""
    text_arg = {"name": "g", "parameters": {"properties": {"city": {"type": "string"}}, "required": ["city"]}}
    call = tiny_chat._plan([HumanMessage("Weather?")], None, {"tools": [text_arg], "tool_choice": "g"})
    assert call.prefix == '{"name": "g", "arguments": {"city": "' and call.prompt.endswith(call.prefix)
    assert call.constraint is not None and call.constraint.prefix == call.prefix
    optional_first = {"name": "f", "parameters": {"properties": {"a": {"type": "integer"}, "b": {}}, "required": ["b"]}}
    call = tiny_chat._plan([HumanMessage("Go")], None, {"tools": [optional_first], "tool_choice": "f"})
    assert call.prefix == '{"name": "f", "arguments": {"'  # "a" may come first or be left out: the model chooses



def test_trailing_ai_message_is_continued(tiny_chat):
    reply = tiny_chat.invoke([HumanMessage("Hello"), AIMessage("The movie was")])
    assert isinstance(reply, AIMessage) and reply.content
    assert not reply.content.startswith("The movie was")


def test_stream_usage_once_and_metadata(tiny_chat):
    chunks = list(tiny_chat.stream("Hello"))
    assert len(chunks) >= 2
    with_usage = [c for c in chunks if c.usage_metadata]
    assert len(with_usage) == 1 and with_usage[0] is chunks[-1]
    assert chunks[-1].chunk_position == "last"
    full = sum(chunks[1:], chunks[0])
    assert full.response_metadata["model_name"] == "tiny-llama-0"
    assert full.response_metadata["finish_reason"] in ("eos", "stop", "length")
    assert full.content == tiny_chat.invoke("Hello").content


async def test_astream_matches_invoke(tiny_chat):
    chunks = [c async for c in tiny_chat.astream("Hello")]
    assert "".join(c.content for c in chunks) == tiny_chat.invoke("Hello").content
    assert sum(1 for c in chunks if c.usage_metadata) == 1


def test_token_counting_uses_own_tokenizer(tiny_chat, tiny_loaded):
    assert tiny_chat.get_token_ids("The movie was great") == tiny_loaded.tokenizer.encode("The movie was great")
    assert tiny_chat.get_num_tokens("The movie was great") == len(tiny_chat.get_token_ids("The movie was great"))
    plain = tiny_chat.get_num_tokens_from_messages([HumanMessage("Hello")])
    assert tiny_chat.get_num_tokens_from_messages([HumanMessage("Hello")], tools=[get_weather]) > plain


def test_forced_call_of_a_tool_without_arguments(tiny_chat):
    reply = tiny_chat.bind_tools([dice], tool_choice="dice").invoke("Roll it")
    assert reply.tool_calls[0]["name"] == "dice" and reply.tool_calls[0]["args"] == {}
    assert reply.response_metadata["finish_reason"] == "tool_calls"
    with pytest.raises(ValueError, match="names no bound tool"):
        tiny_chat.bind_tools([dice], tool_choice="nope")


def test_forced_call_is_not_cut_by_a_short_answer_budget(tiny_chat):
    from rain_langchain.chat_models import FORCED_CALL_TOKENS

    bound = tiny_chat.bind_tools([get_weather], tool_choice="any")
    forced = tiny_chat._plan([HumanMessage("Weather in Oslo?")], None, dict(bound.kwargs))
    assert tiny_chat.call_config(None, {}).max_new_tokens < FORCED_CALL_TOKENS == forced.config.max_new_tokens
    free = tiny_chat._plan([HumanMessage("Weather in Oslo?")], None,
                           dict(tiny_chat.bind_tools([get_weather]).kwargs))
    assert free.config.max_new_tokens == tiny_chat.call_config(None, {}).max_new_tokens  # answers keep the user's budget


def test_model_override_must_name_this_model(tiny_chat):
    assert tiny_chat.invoke("Hello", model="tiny-llama-0").content
    with pytest.raises(ValueError, match="cannot switch"):
        tiny_chat.invoke("Hello", model="gpt-4o")


def test_chat_evaluation_prompt_is_one_human_message():
    """A ``chat`` judge prompt (the sentiment built-in) reaches a chat model as a human turn, its template added there."""
    prompt = SelfEvaluationPrompt.sentiment()
    messages = prompt.format_prompt(input="Review this film", output="A joy from start to finish.").to_messages()
    assert len(messages) == 1 and isinstance(messages[0], HumanMessage)
    assert "Text: A joy from start to finish." in messages[0].content
    assert messages[0].content.endswith("positive or negative?")
    assert prompt.parse_answer("The sentiment is Negative.") is False


def test_self_evaluation_prompt_as_template_and_judge(tiny_chat):
    prompt = TINY_JUDGE  # lettered options
    text = prompt.invoke({"input": "hi", "output": "hello"}).to_string()
    assert "Human: hi" in text and text.endswith(prompt.evaluation.answer_cue)
    good, bad = prompt.labels
    assert f"(A) {good}\n(B) {bad}" in text
    assert f"(A) {bad}\n(B) {good}" in prompt.swapped().format(input="hi", output="hello")
    assert prompt.parse_answer("A)") is True and prompt.swapped().parse_answer("A)") is False
    rubric = SelfEvaluationPrompt.from_principles(["Never insult the user."])
    question = rubric.invoke({"input": "hi", "output": "hello"}).to_messages()[0].content  # a chat question
    assert "- Never insult the user." in question and question.endswith("Is this text safe or unsafe?")
    assert rubric.parse_answer("The text is unsafe.") is False and rubric.swapped().parse_answer("safe") is True
    assert SelfEvaluationPrompt.harmless().parse_answer(" unsafe") is False
    verdict = prompt.as_judge(tiny_chat).invoke({"input": "hi", "output": "hello"})
    assert -1 <= verdict["score"] <= 1 and len(verdict["p_good"]) == 2
    chain_answer = (prompt | tiny_chat).invoke({"input": "hi", "output": "hello"})  # the question, asked as a prompt
    assert isinstance(chain_answer, AIMessage)
    scripted = GenericFakeChatModel(messages=iter([AIMessage("(A)"), AIMessage("(B)")]))
    text_verdict = prompt.as_judge(scripted).invoke(("hi", "hello"))
    assert text_verdict["score"] == 1.0 and text_verdict["verdict"] == "good"  # good in both orders


def test_evaluation_prompt_plugs_into_the_model(tiny_backend):
    judge = SelfEvaluationPrompt.from_principles(["Be polite."], good="good", bad="bad")  # tiny tokenizer: distinct
    chat = ChatRain(model=tiny_backend, evaluation_prompt=judge, similarity=False, max_tokens=4, max_iterations=2,
                    min_iterations=1)
    assert chat.engine.evaluator.prompt == judge.evaluation
    assert chat.invoke("Hello").response_metadata["rain"]["evaluations"] >= 1


class ScriptedToolModel(GenericFakeChatModel):
    """A deterministic stand-in for a model that calls a tool, then answers (for the agent loop's wiring)."""

    def bind_tools(self, tools, **kwargs):
        return self


def test_create_agent_loop_scripted():
    from langchain.agents import create_agent

    model = ScriptedToolModel(messages=iter([
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"location": "Oslo"}, "id": "c1"}]),
        AIMessage("It's sunny in Oslo.")]))
    state = create_agent(model, tools=[get_weather]).invoke({"messages": [HumanMessage("Weather in Oslo?")]})
    tool_messages = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert tool_messages[0].content == "It's sunny in Oslo."
    assert state["messages"][-1].content == "It's sunny in Oslo."


def test_chat_batch_over_threads(tiny_chat):
    replies = tiny_chat.batch(["Hello", "Hey", "Hi"], config={"max_concurrency": 3})
    assert [r.content for r in replies] == [tiny_chat.invoke(p).content for p in ["Hello", "Hey", "Hi"]]
    assert asyncio.run(tiny_chat.abatch(["Hello"]))[0].content == replies[0].content
