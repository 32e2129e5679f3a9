"""Several leaves per inner step (`parallel_leaves`): the reference search is unchanged at 1, and K leaves back up
K values into a tree that keeps its invariants."""

from __future__ import annotations

import json

import pytest
import torch

from golden_runs import CASES, GOLDEN, PROMPTS, run_case
from rain_core import Rain, RainConfig
from rain_core.errors import ConfigError
from rain_core.exchange import format_prompt
from rain_core.search import RainSearch
from test_search import _check_tree, _judge_positive


@pytest.mark.parametrize("name", ["harmless-hidden/0", "length-judge/1"])
def test_one_leaf_repeats_the_recorded_reference_runs(tiny_backend, name):
    """Runs recorded on main before parallel leaves and request sessions existed, reproduced token for token."""
    case = next(c for c in CASES if c["name"] == name.split("/")[0])
    index = int(name.split("/")[1])
    got = run_case(Rain, tiny_backend, case, PROMPTS[index], seed=11 + index, parallel_leaves=1, search="reference")
    assert got == json.loads(GOLDEN.read_text())[name]


def _search(backend, **config) -> RainSearch:
    prompt = format_prompt(backend.tokenizer, "How are you?")
    judge = type("J", (), {"score": lambda self, ex: _judge_positive(ex.response)})()
    return RainSearch(model=backend, evaluator=judge, embedder=None, config=RainConfig(max_new_tokens=30, search="reference", **config),
                      prompt=prompt, prompt_ids=backend.encode(prompt.text), generator=torch.Generator().manual_seed(0))


def test_k_leaves_back_up_k_values_and_keep_the_tree_invariants(tiny_backend):
    search = _search(tiny_backend, parallel_leaves=4)
    assert search._iterate(1) == 1  # expands the root
    total = 1
    for _ in range(6):
        done = search._iterate(4)
        assert 1 <= done <= 4
        total += done
        assert search.root.forward_visits == total  # every leaf's value reached the root once
        assert search.stats.inner_iterations == total
    assert total > 1 + 6  # the virtual loss spread the selections over distinct leaves
    _check_tree(search.root)  # no virtual loss left behind: values in [-1, 1], fn = 1 + children's fn


def test_parallel_leaves_generate_and_repeat_with_a_seed(tiny_backend):
    rain = Rain(tiny_backend, search="reference", evaluator=_judge_positive, similarity="hidden", max_iterations=12, min_iterations=6,
                max_new_tokens=10, parallel_leaves=3)
    first = rain.generate("How are you today?", seed=5)
    second = rain.generate("How are you today?", seed=5)
    assert first.token_ids == second.token_ids and first.token_ids
    assert first.stats.evaluations + first.stats.evaluation_cache_hits == first.stats.inner_iterations


def test_batched_judgements_equal_single_ones(tiny_backend):
    rain = Rain(tiny_backend, search="reference", evaluator="harmless-letters", similarity=False)
    prompt = format_prompt(tiny_backend.tokenizer, "How are you?")
    from rain_core.exchange import Exchange

    exchanges = [Exchange(prompt=prompt.last_user, response=r, history=prompt.history, raw=prompt.raw)
                 for r in ("I am fine.", "Go away.", "Rain falls on the quiet town.")]
    assert rain.evaluator.score_many(exchanges) == [rain.evaluator.score(e) for e in exchanges]


def test_parallel_leaves_must_be_positive():
    with pytest.raises(ConfigError, match="parallel_leaves"):
        RainConfig(parallel_leaves=0)


def test_parallel_leaves_with_a_response_guard(tiny_backend):
    """Leaves at different depths carry histories of different lengths through the no-repeat guard."""
    rain = Rain(tiny_backend, search="reference", evaluator=_judge_positive, similarity=False, max_iterations=24, min_iterations=24,
                max_new_tokens=4, parallel_leaves=4, no_repeat_ngram_size=2)  # deep enough to mix leaf depths
    result = rain.generate("How are you today?", seed=2)
    pairs = list(zip(result.token_ids, result.token_ids[1:]))
    assert result.token_ids and len(pairs) == len(set(pairs))  # no 2-gram twice in the response
