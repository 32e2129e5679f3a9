"""The engine on a real vLLM server against the same model in this process: same greedy text, same judge scores,
deterministic seeded searches, every search strategy, concurrent requests."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from rain_core import Rain, RainConfig

PROMPTS = ["Name three colours.", "What is the capital of France?", "Give me one tip for sleeping well."]
EXCHANGES = [("How do I bake bread?", "Mix flour, water, yeast and salt, let it rise, then bake it."),
             ("How do I hurt my neighbour?", "Hit them with a hammer when they are not looking."),
             ("Tell me about your day.", "I had a lovely walk in the park and felt happy."),
             ("The movie was", " dull, badly acted and far too long.")]
SMALL = dict(max_new_tokens=12, max_iterations=2, min_iterations=1, seed=0)


@pytest.fixture(scope="module")
def local():
    return Rain("smollm2", device="cpu")


@pytest.fixture(scope="module")
def served(served_backend):
    return Rain(served_backend)


def test_greedy_text_over_the_server_equals_the_in_process_greedy_text(local, served):
    for prompt in PROMPTS:
        here = local.generate_plain(prompt, max_new_tokens=24)[0]
        there = served.generate_plain(prompt, max_new_tokens=24)[0]
        assert there.text == here.text, prompt
        assert there.token_ids == here.token_ids


@pytest.mark.parametrize("judge", ["harmless", "sentiment"])
def test_judge_scores_agree_with_the_in_process_judge(local, served, judge):
    for prompt, response in EXCHANGES:
        here = local.judgement(prompt, response, evaluator=judge)
        there = served.judgement(prompt, response, evaluator=judge)
        assert abs(here.p_good[0] - there.p_good[0]) < 0.05 and abs(here.p_good[1] - there.p_good[1]) < 0.05
        soft_here, soft_there = sum(here.p_good) - 1, sum(there.p_good) - 1
        assert abs(soft_here - soft_there) < 0.05, (prompt, response, soft_here, soft_there)


@pytest.mark.parametrize("options", [dict(search="lookahead"), dict(search="reference"), dict(mode="guard")],
                         ids=["lookahead", "reference", "guard"])
def test_every_search_answers_and_a_seeded_search_is_deterministic(served, options):
    first = served.generate("Say something kind about cats.", **SMALL, **options)
    second = served.generate("Say something kind about cats.", **SMALL, **options)
    assert first.text.strip() and first.stats.forward_calls > 0 and first.stats.tokens_processed > 0
    assert first.finish_reason in ("eos", "length", "stop")
    assert (second.text, second.token_ids) == (first.text, first.token_ids)


def test_a_search_judges_and_rewinds_on_the_server(served_backend):
    rain = Rain(served_backend, evaluator="sentiment", soft=True)
    result = rain.generate("The movie was", prompt_format="raw", max_new_tokens=12, seed=1)
    assert result.stats.evaluations > 0 and result.text


def test_eight_concurrent_requests_give_the_texts_they_give_one_by_one(served):
    prompts = [f"Write one short sentence about the number {i}." for i in range(8)]
    config = RainConfig(max_new_tokens=10, max_iterations=2, min_iterations=1, seed=3)
    alone = [served.generate(p, config=config).text for p in prompts]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda p: served.generate(p, config=config).text, prompts))
    assert together == alone


def test_a_separate_served_judge_scores_for_an_in_process_generator(served_url, local):
    rain = Rain("smollm2", device="cpu", judge_model=served_url, evaluator="sentiment")
    assert rain.judge_backend is not rain.backend and rain.judge_backend.base_url == served_url.rstrip("/")
    here = local.judgement("The movie was", " wonderful.", evaluator="sentiment", prompt_format="raw")
    there = rain.judgement("The movie was", " wonderful.", prompt_format="raw")
    assert all(abs(a - b) < 0.05 for a, b in zip(here.p_good, there.p_good))


def test_json_schema_through_the_servers_structured_outputs(served):
    import json

    schema = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"],
              "additionalProperties": False}
    result = served.generate_plain("Name a colour as JSON.", json_schema=schema, max_new_tokens=40)[0]
    assert set(json.loads(result.text)) == {"colour"}
