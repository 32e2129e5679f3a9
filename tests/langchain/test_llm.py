"""`RainLLM` on the tiny random model: the standard-suite checks mirrored for a text-completion model, plus stops,
per-call options, callbacks and a non-blocked event loop. Random weights: properties only, never content."""

from __future__ import annotations

import asyncio
import time

import pytest
from langchain_core.callbacks import BaseCallbackHandler

from rain_core import ConfigError, Rain
from rain_langchain import RainLLM

from loop_probe import LoopProbe


class Tokens(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.ended = 0

    def on_llm_new_token(self, token: str, **kwargs) -> None:
        self.tokens.append(token)

    def on_llm_end(self, response, **kwargs) -> None:
        self.ended += 1


def test_invoke_returns_only_new_text(tiny_llm):
    result = tiny_llm.generate(["The movie was"])
    generation = result.generations[0][0]
    assert isinstance(generation.text, str) and generation.text
    assert not generation.text.startswith("The movie was")
    assert generation.generation_info["finish_reason"] in ("eos", "stop", "length")
    assert generation.generation_info["rain"]["commits"] >= 1
    usage = result.llm_output["token_usage"]
    assert usage["completion_tokens"] <= 8 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert result.llm_output["model_name"] == "tiny-llama-0"


def test_stream_yields_committed_pieces_and_fires_callbacks(tiny_llm):
    handler = Tokens()
    pieces = list(tiny_llm.stream("The movie was", config={"callbacks": [handler]}, max_new_tokens=30))
    text = [p for p in pieces if p]
    assert len(text) >= 2
    assert handler.tokens == text and handler.ended == 1
    again = tiny_llm.invoke("The movie was", max_new_tokens=30)
    assert "".join(pieces) == again  # same seed: the stream is the generation, piece by piece


def test_batch_over_threads_is_safe(tiny_llm):
    prompts = ["Hello", "The movie was", "Rain falls", "A good day"]
    batched = tiny_llm.batch(prompts, config={"max_concurrency": 4})
    assert batched == [tiny_llm.invoke(p) for p in prompts]  # concurrent sessions, seeded: identical to one by one


async def test_ainvoke_and_astream(tiny_llm):
    text = await tiny_llm.ainvoke("The movie was")
    assert text == tiny_llm.invoke("The movie was")
    handler = Tokens()
    pieces = [p async for p in tiny_llm.astream("The movie was", config={"callbacks": [handler]})]
    assert "".join(pieces) == text
    assert handler.tokens == [p for p in pieces if p]
    assert await tiny_llm.abatch(["Hello", "Hey"]) == tiny_llm.batch(["Hello", "Hey"])


async def test_ainvoke_does_not_block_the_event_loop(tiny_backend):
    # the reference search: a long run of small steps (a lookahead judge at 0.5 would accept the first rollout)
    slow = RainLLM(model=tiny_backend, seed=0, similarity=False, search="reference", max_new_tokens=48,
                   max_iterations=6, min_iterations=4, num_candidates=4,
                   evaluation_prompt=lambda prompt, response: (time.sleep(0.002), 0.5)[1])
    async with LoopProbe() as probe:
        await slow.ainvoke("The movie was")
    assert probe.elapsed > 0.1 and probe.kept_ticking()  # the loop kept ticking while the search ran


async def test_astream_stopped_early_releases_the_model(tiny_llm):
    async for _ in tiny_llm.astream("The movie was", max_new_tokens=32):
        break
    await asyncio.sleep(0)
    for _ in range(1000):  # the worker closes the search at its next piece
        if tiny_llm.engine.backend.open_sessions == 0:
            break
        await asyncio.sleep(0.01)
    assert tiny_llm.engine.backend.open_sessions == 0


def test_stop_is_honoured_in_search_and_text(tiny_llm):
    # the hard vote: the random model's judge then ties every path, so the run with the stop string commits what
    # the free run did up to it (the soft score of a text cut at the stop differs, and may pick another path)
    free = tiny_llm.invoke("The movie was", max_new_tokens=24, soft=False)
    stop = free[3:5]  # a string the unconstrained run writes
    cut = tiny_llm.generate(["The movie was"], stop=[stop], max_new_tokens=24, soft=False).generations[0][0]
    assert stop not in cut.text
    assert free.startswith(cut.text)
    assert cut.generation_info["finish_reason"] == "stop"
    streamed = "".join(tiny_llm.stream("The movie was", stop=[stop], max_new_tokens=24, soft=False))
    assert streamed == cut.text


def test_per_call_options_and_bind(tiny_llm):
    short = tiny_llm.generate(["Hello"], max_new_tokens=3).llm_output["token_usage"]["completion_tokens"]
    assert short <= 3
    bound = tiny_llm.bind(max_tokens=2, Vt=0.5, T=3)
    assert bound.invoke("Hello") == tiny_llm.invoke("Hello", max_new_tokens=2, value_threshold=0.5, max_iterations=3)
    with pytest.raises(ConfigError, match="max_tokenz"):
        tiny_llm.invoke("Hello", max_tokenz=3)


def test_shares_one_engine(tiny_backend):
    a = RainLLM(model=tiny_backend, similarity=False, evaluation_prompt=lambda p, r: 0.0)
    rain = Rain(tiny_backend, evaluator=lambda p, r: 0.0, similarity=False)
    b = RainLLM(model=rain)
    assert a.engine.backend is b.engine.backend is tiny_backend
    assert b.engine is rain
    twin = RainLLM(model=tiny_backend, similarity=False, evaluation_prompt="sentiment", max_new_tokens=2)
    assert twin.engine is RainLLM(model=tiny_backend, similarity=False, evaluation_prompt="sentiment").engine


def test_ls_params(tiny_llm):
    params = tiny_llm._get_ls_params(stop=["x"])
    assert params["ls_provider"] == "rain" and params["ls_model_type"] == "llm"
    assert params["ls_model_name"] == "tiny-llama-0" and params["ls_max_tokens"] == 8


def _guard_judge(prompt: str, response: str) -> float:
    """Rejects any response with an "e" past its first characters: guard mode searches often."""
    return -1.0 if "e" in response[6:] else 1.0


async def test_guard_mode_streams_accepted_text_and_reports_its_counters(tiny_backend):
    from rain_core import RainConfig
    from rain_langchain import ChatRain

    budget = dict(config=RainConfig(max_new_tokens=16, max_iterations=2, min_iterations=1, num_candidates=2),
                  similarity=False, evaluation_prompt=_guard_judge, seed=0, mode="guard")
    llm = RainLLM(model=tiny_backend, **budget)
    result = llm.generate(["The movie was"])
    generation = result.generations[0][0]
    stats = generation.generation_info["rain"]
    assert stats["clauses_drafted"] >= 1 and stats["clauses_rejected"] >= 1 and stats["searches"] >= 1
    assert "e" not in generation.text[6:]
    assert "".join(llm.stream("The movie was")) == generation.text
    assert "".join([p async for p in llm.astream("The movie was")]) == generation.text
    full = RainLLM(model=tiny_backend, **{**budget, "mode": "full"}).generate(["The movie was"])
    assert full.generations[0][0].generation_info["rain"]["clauses_drafted"] == 0  # the faithful search ran
    chat = ChatRain(model=tiny_backend, **budget)
    message = chat.invoke("Hello")
    assert message.response_metadata["rain"]["clauses_drafted"] >= 1
    assert "".join(c.content for c in chat.stream("Hello")) == message.content
