"""One validation for every surface: each bad input gets the same clear error from the engine, LangChain and
LlamaIndex (fast tier, tiny random model)."""

from __future__ import annotations

import pytest

from rain_core import PromptError, Rain

BUDGET = dict(max_new_tokens=2, max_iterations=1, min_iterations=1)
SETTINGS = dict(similarity=False, evaluation_prompt=lambda prompt, response: 0.0, **BUDGET)


@pytest.fixture(scope="module")
def rain(tiny_backend):
    return Rain(tiny_backend, evaluator=lambda text: 0.0, similarity=False)


def _surfaces(tiny_backend):
    from rain_langchain import ChatRain, RainLLM
    from rain_llamaindex import RainLLM as LlamaRainLLM

    chat = ChatRain(model=tiny_backend, **SETTINGS)
    llm = RainLLM(model=tiny_backend, **SETTINGS)
    li = LlamaRainLLM(model=tiny_backend, **SETTINGS)
    return chat, llm, li


@pytest.mark.parametrize("empty", ["", "   \n"])
def test_an_empty_prompt_is_refused_the_same_way_everywhere(tiny_backend, rain, empty):
    from llama_index.core.base.llms.types import ChatMessage

    chat, llm, li = _surfaces(tiny_backend)
    calls = {"Rain.generate": lambda: rain.generate(empty, **BUDGET),
             "Rain.generate(messages)": lambda: rain.generate([{"role": "user", "content": empty}], **BUDGET),
             "Rain.generate_plain": lambda: rain.generate_plain(empty, max_new_tokens=2),
             "ChatRain.invoke": lambda: chat.invoke(empty),
             "ChatRain.invoke(system only)": lambda: chat.invoke([("system", "Be brief."), ("human", empty)]),
             "RainLLM.invoke": lambda: llm.invoke(empty),
             "LlamaIndex complete": lambda: li.complete(empty),
             "LlamaIndex chat": lambda: li.chat([ChatMessage(role="user", content=empty)])}
    for name, call in calls.items():
        with pytest.raises(PromptError, match="The prompt is empty; pass some text to respond to.") as caught:
            call()
        assert caught.type is PromptError, name


def test_an_unknown_message_role_is_refused_naming_the_accepted_ones(tiny_backend, rain):
    from langchain_core.messages import ChatMessage

    chat, _, _ = _surfaces(tiny_backend)
    expected = r"Unknown message role 'wizard'; the accepted roles are system, user, assistant, tool\."
    with pytest.raises(PromptError, match=expected):
        rain.generate([{"role": "wizard", "content": "Hello"}], **BUDGET)
    with pytest.raises(PromptError, match=expected):
        chat.invoke([ChatMessage(role="wizard", content="Hello")])
    # LangChain's own role names are translated, not refused
    assert chat.invoke([ChatMessage(role="human", content="Hello")]).content is not None


def test_a_budget_too_large_for_the_context_names_max_new_tokens(tiny_backend, rain):
    """The prompt fits; the setting does not: the error blames max_new_tokens and says how much fits."""
    from rain_core import ConfigError

    prompt = "How are you today?"
    room = tiny_backend.context_window - len(rain.tokenizer(
        rain.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                           add_generation_prompt=True), add_special_tokens=False)["input_ids"]) - 32
    for call in (lambda: rain.generate(prompt, max_new_tokens=10**9), lambda: rain.generate_plain(prompt, max_new_tokens=10**9)):
        with pytest.raises(ConfigError, match=rf"max_new_tokens=1000000000 is too large .* at most {room} new tokens fit"):
            call()
    assert rain._prepare(prompt, rain.resolve_config(None, {"max_new_tokens": room}), None)  # exactly the room fits
