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


@pytest.mark.parametrize("bad, named", [(dict(max_tokens=-1), "max_new_tokens=-1"),
                                        (dict(value_threshold=2), "value_threshold=2"),
                                        (dict(config=None, num_candidates=0), "num_candidates=0")])
def test_settings_are_checked_when_the_object_is_built(tiny_backend, bad, named):
    """LangChain's RainLLM and ChatRain refuse a bad setting at construction, as LlamaIndex's RainLLM does, with the
    same error (RainConfig's own check)."""
    from rain_core import ConfigError
    from rain_langchain import ChatRain, RainLLM
    from rain_llamaindex import RainLLM as LlamaRainLLM

    for cls in (ChatRain, RainLLM, LlamaRainLLM):
        kwargs = dict(bad)
        if cls is LlamaRainLLM and "max_tokens" in kwargs:
            kwargs["max_new_tokens"] = kwargs.pop("max_tokens")
        with pytest.raises(ConfigError, match=named):
            cls(model=tiny_backend, **kwargs)


def test_min_iterations_above_max_iterations_fixes_the_budget(rain):
    """Allowed and documented (docs/configuration.md): min_iterations is a floor, so each commit runs exactly
    min_iterations iterations here (min_visits=6 cannot be passed in 3 visits, so nothing stops early)."""
    result = rain.generate("How are you?", max_new_tokens=3, min_iterations=3, max_iterations=1, seed=0)
    assert result.stats.inner_iterations == 3 * result.stats.commits


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, tiny_loaded):
    """The tiny model saved as a local model folder, so the CLI can load it by path."""
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_loaded.model.save_pretrained(folder)
    tiny_loaded.tokenizer.save_pretrained(folder)
    return folder


def test_cli_unreadable_evaluator_file_names_it_and_exits_2_with_a_json_error(tiny_folder, tmp_path, capsys):
    import json

    from rain_core.cli import main

    bad = tmp_path / "judge.txt"
    bad.write_bytes(b"## instructions\nJudge the caf\xe9 reply.\n")  # Latin-1, not UTF-8
    code = main(["generate", "Hi", "--model", str(tiny_folder), "--evaluator", str(bad), "--json",
                 "--max-new-tokens", "2"])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err
    assert err.startswith(f"error: Evaluation prompt file {bad} is not valid UTF-8 (byte 0xe9")
    error = json.loads(out.strip().splitlines()[-1])  # stdout carries the error for a script reading JSON
    assert error == {"error": err[len("error: "):].strip(), "type": "EvaluatorError"}


def test_cli_without_json_keeps_stdout_empty_on_error(tiny_folder, capsys):
    from rain_core.cli import main

    assert main(["generate", "   ", "--model", str(tiny_folder), "--evaluator", "sentiment"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "error: The prompt is empty; pass some text to respond to.\n"
