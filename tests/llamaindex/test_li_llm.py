"""`RainLLM` on the tiny random model: the four call shapes and their async forms, prompt handling, stops, per-call
options, usage and token counting, callbacks, engine sharing, and an event loop that keeps running during a search.
The weights are random: the tests check plumbing, never content."""

from __future__ import annotations

import asyncio
import time

import pytest
from llama_index.core.callbacks import CallbackManager, CBEventType, TokenCountingHandler
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.llms import ChatMessage
from llama_index.core.prompts import PromptTemplate

from rain_core import ConfigError, Rain, shared_backend
from rain_llamaindex import RainLLM
from loop_probe import LoopProbe
from tiny_model import build_tiny_model


PROMPT = "The movie was"
MESSAGES = [ChatMessage(role="system", content="Be kind."), ChatMessage(role="user", content="How are you today?")]


async def _collect(agen):
    return [x async for x in await agen]


def test_metadata_comes_from_the_model(tiny_llm, tiny_loaded, tiny_budget):
    meta = tiny_llm.metadata
    config = tiny_llm.call_config({})
    assert meta.context_window == tiny_loaded.context_window - config.max_simulation_tokens
    assert meta.num_output == 8
    assert meta.model_name == "tiny-llama-0"
    assert meta.is_chat_model and not meta.is_function_calling_model
    assert not RainLLM(tiny_llm.engine.backend, prompt_format="raw", **tiny_budget).metadata.is_chat_model
    no_template = RainLLM(build_tiny_model(seed=1, chat=False), **tiny_budget)
    assert not no_template.metadata.is_chat_model  # plain Human:/Assistant: format instead


def test_complete_and_stream_complete(tiny_llm):
    done = tiny_llm.complete(PROMPT)
    assert done.text and PROMPT not in done.text  # new text only
    chunks = list(tiny_llm.stream_complete(PROMPT))
    assert "".join(c.delta for c in chunks) == chunks[-1].text == done.text  # seeded: same search
    assert all(b.text == a.text + b.delta for a, b in zip(chunks, chunks[1:]))  # cumulative text
    assert chunks[-1].delta == "" and chunks[-1].raw["usage"] == done.raw["usage"]
    assert all(c.raw is None for c in chunks[:-1])


def test_chat_and_stream_chat(tiny_llm):
    done = tiny_llm.chat(MESSAGES)
    assert done.message.role == "assistant" and done.message.content
    chunks = list(tiny_llm.stream_chat(MESSAGES))
    assert "".join(c.delta for c in chunks) == chunks[-1].message.content == done.message.content
    assert chunks[-1].raw["usage"] == done.raw["usage"]


async def test_async_forms_match_sync(tiny_llm):
    assert (await tiny_llm.acomplete(PROMPT)).text == tiny_llm.complete(PROMPT).text
    assert (await tiny_llm.achat(MESSAGES)).message.content == tiny_llm.chat(MESSAGES).message.content
    chunks = await _collect(tiny_llm.astream_complete(PROMPT))
    assert [c.delta for c in chunks] == [c.delta for c in tiny_llm.stream_complete(PROMPT)]
    chat_chunks = await _collect(tiny_llm.astream_chat(MESSAGES))
    assert [c.delta for c in chat_chunks] == [c.delta for c in tiny_llm.stream_chat(MESSAGES)]
    assert chat_chunks[-1].raw["usage"]["completion_tokens"] > 0


def test_stop_and_per_call_options(tiny_llm):
    free = tiny_llm.complete(PROMPT, max_new_tokens=24, soft=False)  # hard vote: ties every path (see LangChain's)
    assert free.raw["usage"]["completion_tokens"] <= 24
    stop = free.text[4:7]
    cut = tiny_llm.complete(PROMPT, max_new_tokens=24, stop=[stop], soft=False)
    assert stop not in cut.text and free.text.startswith(cut.text)
    assert cut.raw["finish_reason"] == "stop"
    streamed = list(tiny_llm.stream_chat([ChatMessage(role="user", content=PROMPT)], max_new_tokens=24, stop=stop))
    assert stop not in streamed[-1].message.content
    short = tiny_llm.complete(PROMPT, max_tokens=3, max_iterations=1, min_iterations=1)
    assert short.raw["usage"]["completion_tokens"] <= 3
    assert short.raw["stats"]["inner_iterations"] <= short.raw["stats"]["commits"]  # T=1 per commit
    with pytest.raises(ConfigError, match="Unknown option 'temperature'"):
        tiny_llm.complete(PROMPT, temperature=0.7)
    with pytest.raises(ConfigError):
        RainLLM(tiny_llm.engine.backend, max_iterations=-1)


def _recorder(monkeypatch, llm):
    """Record what the engine is asked for (the prompt or messages, and the format) and still run it."""
    seen = []
    original = llm.engine.run

    def run(prompt, **kwargs):
        seen.append((prompt, kwargs.get("prompt_format")))
        return original(prompt, **kwargs)

    monkeypatch.setattr(llm.engine, "run", run)
    return seen


async def _all_paths(llm, call):
    """The request each of the eight methods sends for one call shape."""
    if call == "complete":
        llm.complete(PROMPT)
        list(llm.stream_complete(PROMPT))
        await llm.acomplete(PROMPT)
        await _collect(llm.astream_complete(PROMPT))
    else:
        llm.chat(MESSAGES)
        list(llm.stream_chat(MESSAGES))
        await llm.achat(MESSAGES)
        await _collect(llm.astream_chat(MESSAGES))


@pytest.mark.parametrize("call", ["complete", "chat"])
async def test_prompt_handling_is_the_same_on_every_path(monkeypatch, tiny_backend, tiny_budget, call):
    plain = RainLLM(tiny_backend, seed=0, system_prompt="Answer briefly.", **tiny_budget)
    seen = _recorder(monkeypatch, plain)
    await _all_paths(plain, call)
    assert len(seen) == 4 and all(s == seen[0] for s in seen)
    request, fmt = seen[0]
    assert fmt == "chat" and request[0] == {"role": "system", "content": "Answer briefly." +
                                            ("" if call == "complete" else "\n\nBe kind.")}

    custom = RainLLM(tiny_backend, seed=0, system_prompt="Answer briefly.",
                     completion_to_prompt=lambda p: f"<<{p}>>", messages_to_prompt=lambda ms: "|".join(
                         f"{m.role.value}:{m.content}" for m in ms), **tiny_budget)
    seen = _recorder(monkeypatch, custom)
    await _all_paths(custom, call)
    assert len(seen) == 4 and all(s == seen[0] for s in seen)
    expected = ("<<Answer briefly.\n\nThe movie was>>" if call == "complete" else
                "system:Answer briefly.\n\nBe kind.|user:How are you today?")
    assert seen[0] == (expected, "raw")


def test_system_prompt_is_added_once_through_predict(monkeypatch, tiny_backend, tiny_budget):
    llm = RainLLM(tiny_backend, seed=0, system_prompt="Answer briefly.", **tiny_budget)
    seen = _recorder(monkeypatch, llm)
    llm.predict(PromptTemplate("Tell me about {topic}."), topic="rain")  # LlamaIndex adds the system message
    list(llm.stream(PromptTemplate("Tell me about {topic}."), topic="rain"))
    llm.complete("Tell me about rain.", formatted=True)  # formatted: no system prompt, still the chat template
    (first, _), (second, _), (third, fmt) = seen
    assert first == second == [{"role": "system", "content": "Answer briefly."},
                               {"role": "user", "content": "Tell me about rain."}]
    assert third == [{"role": "user", "content": "Tell me about rain."}] and fmt == "chat"


def test_token_counting_handler_matches_the_engine(tiny_llm, tiny_loaded):
    tokenizer = tiny_loaded.tokenizer
    counter = TokenCountingHandler(tokenizer=tokenizer.encode)
    llm = tiny_llm.model_copy(update={"callback_manager": CallbackManager([counter])})
    results = [llm.complete(PROMPT), list(llm.stream_complete(PROMPT))[-1], llm.chat(MESSAGES),
               list(llm.stream_chat(MESSAGES))[-1]]
    assert len(counter.llm_token_counts) == 4  # one LLM event per call: chat does not count a nested complete
    usage = [r.raw["usage"] for r in results]
    for event, used in zip(counter.llm_token_counts, usage):
        assert (event.prompt_token_count, event.completion_token_count) == (used["prompt_tokens"],
                                                                            used["completion_tokens"])
    assert counter.prompt_llm_token_count == sum(u["prompt_tokens"] for u in usage)
    assert counter.completion_llm_token_count == sum(u["completion_tokens"] for u in usage)
    assert counter.total_llm_token_count == sum(u["total_tokens"] for u in usage)
    # the engine's own counts are the model's tokens: the chat-templated prompt and the generated ids
    templated = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], tokenize=False,
                                              add_generation_prompt=True)
    assert usage[0]["prompt_tokens"] == len(tokenizer(templated, add_special_tokens=False)["input_ids"])
    assert usage[0]["completion_tokens"] == results[0].raw["stats"]["completion_tokens"] > 0


class _Events(BaseCallbackHandler):
    def __init__(self) -> None:
        super().__init__(event_starts_to_ignore=[], event_ends_to_ignore=[])
        self.starts, self.ends = [], []

    def on_event_start(self, event_type, payload=None, event_id="", parent_id="", **kwargs):
        self.starts.append(event_type)
        return event_id

    def on_event_end(self, event_type, payload=None, event_id="", **kwargs):
        self.ends.append(event_type)

    def start_trace(self, trace_id=None): ...

    def end_trace(self, trace_id=None, trace_map=None): ...


async def test_every_public_method_fires_callbacks(tiny_llm):
    events = _Events()
    llm = tiny_llm.model_copy(update={"callback_manager": CallbackManager([events])})
    await _all_paths(llm, "complete")
    await _all_paths(llm, "chat")
    assert events.starts == events.ends == [CBEventType.LLM] * 8


async def test_async_does_not_block_the_event_loop(tiny_backend):
    slow = RainLLM(tiny_backend, seed=0, similarity=False, search="reference", max_new_tokens=24, max_iterations=4,
                   min_iterations=3, num_candidates=3, evaluation_prompt=lambda prompt, response: (time.sleep(0.003), 0.5)[1])
    async with LoopProbe() as probe:
        await slow.achat(MESSAGES)
        pieces = await _collect(slow.astream_complete(PROMPT))
    assert len(pieces) > 1 and probe.elapsed > 0.1
    assert probe.kept_ticking()  # the loop kept ticking while the searches ran


async def test_astream_stopped_early_releases_the_model(tiny_llm):
    stream = await tiny_llm.astream_chat(MESSAGES, max_new_tokens=32)
    async for _ in stream:
        break
    await stream.aclose()
    for _ in range(1000):  # the worker closes the search at its next piece
        if tiny_llm.engine.backend.open_sessions == 0:
            break
        await asyncio.sleep(0.01)
    assert tiny_llm.engine.backend.open_sessions == 0


def test_shares_one_engine(tiny_loaded, tiny_backend, tiny_budget, tiny_judge):
    a = RainLLM(tiny_loaded, **tiny_budget)
    b = RainLLM(tiny_backend, max_new_tokens=4, **{k: v for k, v in tiny_budget.items() if k != "config"})
    assert a.engine is b.engine and a.engine.backend is shared_backend(tiny_loaded)
    assert a.engine.evaluator.prompt == tiny_judge.evaluation
    rain = Rain(tiny_backend, evaluator=tiny_judge.evaluation, similarity=False, max_new_tokens=5)
    passed = RainLLM(rain)
    assert passed.engine is rain and passed.metadata.num_output == 5  # a passed engine keeps its config
    from rain_langchain import ChatRain

    chat = ChatRain(model=tiny_loaded, similarity=False, evaluation_prompt=tiny_judge.evaluation)
    assert chat.engine.backend is a.engine.backend  # one model in memory for both frameworks


def test_settings_mean_the_same_in_both_frameworks(tiny_backend):
    """LlamaIndex's RainLLM and LangChain's ChatRain inherit one set of settings (rain_core.integrations.settings)."""
    from rain_langchain import ChatRain

    li = RainLLM(tiny_backend, no_repeat_ngram_size=3, max_tokens=5, max_iterations=3)
    lc = ChatRain(model=tiny_backend, no_repeat_ngram_size=3, max_new_tokens=5)
    assert li.call_config({"Vt": 0.5}) == lc.call_config(None, {"Vt": 0.5, "T": 3})
    assert li.call_config({}).no_repeat_ngram_size == 3 and li.call_config({"num_output": 7}).max_new_tokens == 7
    with pytest.raises(ConfigError, match="Unknown option 'bogus' for a RainLLM call"):
        li.call_config({"bogus": 1})
    with pytest.raises(ConfigError, match="Unknown option 'bogus' for a ChatRain call"):
        lc.call_config(None, {"bogus": 1})
    for cls in (RainLLM, ChatRain):  # a misspelt setting is refused (pydantic wraps the ConfigError), not dropped
        with pytest.raises(ValueError, match=f"{cls.__name__} got unknown argument\\(s\\) 'max_iteration'"):
            cls(model=tiny_backend, max_iteration=4)
    with pytest.warns(UserWarning, match="ChatRain ignores temperature: RAIN draws its candidates at temperature 1"):
        ChatRain(model=tiny_backend, temperature=0.2, timeout=None)
    for cls in (RainLLM, ChatRain):  # server settings without a server are not dropped without a word
        with pytest.warns(UserWarning, match=f"{cls.__name__} ignores api_key, timeout: they apply to a served"):
            cls(model=tiny_backend, api_key="sk-none", timeout=5)
    with pytest.raises(ConfigError, match="api_key only mean something for a served model: give base_url"):
        Rain(tiny_backend, api_key="sk-none")


def _guard_judge(prompt: str, response: str) -> float:
    """Rejects any response with an "e" past its first characters: guard mode searches often."""
    return -1.0 if "e" in response[6:] else 1.0


async def test_guard_mode_streams_accepted_text_and_reports_its_counters(tiny_backend):
    from rain_core import RainConfig

    llm = RainLLM(tiny_backend, seed=0, mode="guard", evaluation_prompt=_guard_judge, similarity=False,
                  config=RainConfig(max_new_tokens=16, max_iterations=2, min_iterations=1, num_candidates=2))
    done = llm.complete(PROMPT)
    stats = done.raw["stats"]
    assert stats["clauses_drafted"] >= 1 and stats["clauses_rejected"] >= 1 and stats["searches"] >= 1
    chunks = list(llm.stream_complete(PROMPT))
    assert "".join(c.delta for c in chunks) == done.text  # seeded: the same clauses, judged the same way
    assert chunks[-1].raw["stats"]["clauses_rejected"] == stats["clauses_rejected"]
    achunks = await _collect(llm.astream_complete(PROMPT))
    assert "".join(c.delta for c in achunks) == done.text
    chat = list(llm.stream_chat(MESSAGES))
    assert chat[-1].raw["stats"]["clauses_drafted"] >= 1
    assert "".join(c.delta for c in chat) == chat[-1].message.content
