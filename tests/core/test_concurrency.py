"""Concurrent generations on one loaded model: each gets what it gets alone, and an abandoned one harms nobody."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import torch

from rain_core import Rain
from rain_core.backend import RowSpec, TransformersBackend
from test_search import _judge_positive

BUDGET = dict(max_iterations=8, min_iterations=4, max_new_tokens=10)
PROMPTS = ("How are you today?", "Write a review of the movie.", "Tell me a story")


def _rain(backend) -> Rain:
    return Rain(backend, evaluator="harmless-letters", similarity="hidden", **BUDGET)


def test_concurrent_seeded_requests_give_the_serial_texts(tiny_backend):
    rain = _rain(tiny_backend)
    serial = [rain.generate(p, seed=i).token_ids for i, p in enumerate(PROMPTS)]
    barrier = threading.Barrier(len(PROMPTS))

    def one(i: int) -> list[int]:
        barrier.wait()  # start together, so the searches really interleave
        return rain.generate(PROMPTS[i], seed=i).token_ids

    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        assert list(pool.map(one, range(len(PROMPTS)))) == serial
    assert tiny_backend.open_sessions == 0


def test_a_request_abandoned_mid_stream_leaves_the_others_and_the_model_usable(tiny_backend):
    rain = _rain(tiny_backend)
    expected = rain.generate(PROMPTS[1], seed=3).token_ids
    started = threading.Event()
    outcome: dict[str, list[int]] = {}

    def other() -> None:
        started.wait()
        outcome["other"] = rain.generate(PROMPTS[1], seed=3).token_ids

    worker = threading.Thread(target=other)
    worker.start()
    stream = rain.stream(PROMPTS[0], seed=0, max_new_tokens=40)
    next(stream)
    started.set()
    next(stream)
    stream.close()  # the consumer walks away mid-generation
    worker.join(timeout=120)
    assert outcome["other"] == expected
    assert tiny_backend.open_sessions == 0
    assert rain.generate(PROMPTS[1], seed=3).token_ids == expected


def test_step_batcher_merges_decode_steps_of_different_prefixes(tiny_loaded):
    """Two prefixes of different lengths decoded in one padded batch give each what it gets alone."""
    backend = TransformersBackend(tiny_loaded, batch_steps=True)
    a = backend.encode("Human: How are you today?")
    b = backend.encode("Rain")
    rows = [RowSpec("greedy", 8)] * 2
    alone = [backend.rollouts(ids, rows, torch.Generator().manual_seed(0)) for ids in (a, b)]
    together = backend.rollouts_many([(a, rows), (b, rows)], torch.Generator().manual_seed(0))
    for solo, joint in zip(alone, together):
        assert [r.tokens for r in solo] == [r.tokens for r in joint]
        assert all(abs(x.logprob - y.logprob) < 1e-3 for x, y in zip(solo, joint))

    barrier = threading.Barrier(2)

    def decode(ids: list[int]) -> list[list[int]]:
        barrier.wait()
        return [r.tokens for r in backend.rollouts(ids, rows, torch.Generator().manual_seed(0))]

    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(decode, (a, b)))
    assert got == [[r.tokens for r in solo] for solo in alone]
    assert backend.batcher is not None and backend.batcher.steps > 0


def test_requests_sharing_decode_forwards_give_the_serial_texts(tiny_loaded):
    """With the step batcher on (the CUDA default), concurrent requests' decode steps run as merged forwards."""
    backend = TransformersBackend(tiny_loaded, batch_steps=True)
    rain = _rain(backend)
    serial = [rain.generate(p, seed=i).token_ids for i, p in enumerate(PROMPTS)]
    barrier = threading.Barrier(len(PROMPTS))

    def one(i: int) -> list[int]:
        barrier.wait()
        return rain.generate(PROMPTS[i], seed=i).token_ids

    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        assert list(pool.map(one, range(len(PROMPTS)))) == serial
