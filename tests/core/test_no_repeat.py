"""The no-repeat n-gram guard: it shapes every distribution the search and plain decoding draw from, and it only
counts n-grams inside the response (a prompt may repeat whatever it likes)."""

from __future__ import annotations

import pytest
import torch

from rain_core import ConfigError, Rain, RainConfig
from rain_core.model import ResponseGuard


def _repeats(tokens: list[int], n: int) -> bool:
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


def test_guard_bans_only_ngrams_seen_in_the_response():
    guard = ResponseGuard.no_repeat_ngrams(2, start=2)
    logits = torch.zeros(2, 10)
    out = guard.apply([[5, 6, 1, 2, 5], [5, 6, 5, 6, 5]], logits)  # the first two tokens are the prompt
    assert torch.isfinite(out[0]).all()  # [5, 6] is in the prompt only: 6 may follow 5
    assert out[1, 6] == -torch.inf and torch.isfinite(out[1, :6]).all()  # [5, 6] is in the response: banned
    assert torch.equal(logits, torch.zeros(2, 10))  # the caller's logits are left alone
    assert ResponseGuard.no_repeat_ngrams(0, start=0) is None


def test_plain_and_rain_decoding_never_repeat_an_ngram(tiny_backend):
    rain = Rain(tiny_backend, evaluator=lambda text: 0.0, similarity=False, prompt_format="raw")
    free = rain.generate_plain("the cat", max_new_tokens=40)[0].token_ids
    assert _repeats(free, 1)  # left alone the tiny random model reuses tokens, so the guard below has work to do
    guarded = rain.generate_plain("the cat", max_new_tokens=40, no_repeat_ngram_size=1)[0].token_ids
    assert len(guarded) == 40 and not _repeats(guarded, 1)
    sampled = rain.generate_plain("the cat", sample=True, num_samples=3, max_new_tokens=30, no_repeat_ngram_size=1,
                                  seed=0)
    assert all(not _repeats(r.token_ids, 1) for r in sampled)
    searched = rain.generate("the cat", max_new_tokens=24, max_iterations=3, min_iterations=2, num_candidates=3,
                             no_repeat_ngram_size=1, seed=0)
    assert len(searched.token_ids) == 24 and not _repeats(searched.token_ids, 1)
    unguarded = rain.generate("the cat", max_new_tokens=24, max_iterations=3, min_iterations=2, num_candidates=3,
                              seed=0)
    assert _repeats(unguarded.token_ids, 1)


def test_invalid_size_is_named():
    with pytest.raises(ConfigError, match="no_repeat_ngram_size"):
        RainConfig(no_repeat_ngram_size=-1)
