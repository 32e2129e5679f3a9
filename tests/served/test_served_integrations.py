"""LangChain's ChatRain and LlamaIndex's RainLLM over the real served model: invoke, stream and async, with the
texts the in-process engine writes for the same seeded request."""

from __future__ import annotations

import pytest

OPTIONS = dict(max_new_tokens=10, max_iterations=2, min_iterations=1, seed=0)
PROMPT = "Say something nice about tea."


@pytest.fixture(scope="module")
def chat(served_url):
    from rain_langchain import ChatRain

    return ChatRain(base_url=served_url, timeout=120, **OPTIONS)


@pytest.fixture(scope="module")
def li_llm(served_url):
    from rain_llamaindex import RainLLM

    return RainLLM(base_url=served_url, timeout=120, **OPTIONS)


def test_chatrain_invokes_streams_and_runs_async_over_the_server(chat):
    text = chat.invoke(PROMPT).content
    assert text.strip()
    assert chat.engine.backend.base_url.startswith("http://127.0.0.1")
    assert "".join(chunk.content for chunk in chat.stream(PROMPT)) == text


async def test_chatrain_async_paths_over_the_server(chat):
    text = chat.invoke(PROMPT).content
    assert (await chat.ainvoke(PROMPT)).content == text
    assert "".join([chunk.content async for chunk in chat.astream(PROMPT)]) == text


async def test_an_abandoned_async_stream_leaves_the_model_usable(chat):
    stream = chat.astream("Write a long story about a dragon.", max_new_tokens=40)
    async for _ in stream:
        break
    await stream.aclose()
    assert (await chat.ainvoke(PROMPT)).content == chat.invoke(PROMPT).content


def test_llamaindex_rainllm_completes_streams_and_runs_async_over_the_server(li_llm):
    text = li_llm.complete(PROMPT).text
    assert text.strip()
    assert "".join(r.delta for r in li_llm.stream_complete(PROMPT)) == text


async def test_llamaindex_async_paths_over_the_server(li_llm):
    text = li_llm.complete(PROMPT).text
    assert (await li_llm.acomplete(PROMPT)).text == text
    gen = await li_llm.astream_complete(PROMPT)
    assert "".join([r.delta async for r in gen]) == text


def test_the_served_integration_writes_what_the_in_process_one_writes(chat):
    from rain_langchain import ChatRain

    local = ChatRain(model="smollm2", device="cpu", **OPTIONS)
    assert chat.invoke("Name a fruit.", search="reference").content == local.invoke("Name a fruit.",
                                                                                   search="reference").content
