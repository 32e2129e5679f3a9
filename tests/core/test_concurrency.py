"""Concurrent generations on one loaded model: each gets what it gets alone, and an abandoned one harms nobody."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from rain_core import Rain
from rain_core.backends.transformers import kv
from rain_core.backends.transformers import TransformersBackend
from rain_core.model import RowSpec
from test_search import _judge_positive

BUDGET = dict(max_iterations=8, min_iterations=4, max_new_tokens=10)
PROMPTS = ("How are you today?", "Write a review of the movie.", "Tell me a story")


def _rain(backend) -> Rain:
    return Rain(backend, evaluator="harmless-letters", similarity="hidden", **BUDGET)


def concurrent_token_ids(rain: Rain, prompts: tuple[str, ...]) -> list[list[int]]:
    """``prompts`` generated at the same time from threads (started together, so the searches interleave), seed i
    for prompt i."""
    barrier = threading.Barrier(len(prompts))

    def one(i: int) -> list[int]:
        barrier.wait()
        return rain.generate(prompts[i], seed=i).token_ids

    with ThreadPoolExecutor(len(prompts)) as pool:
        return list(pool.map(one, range(len(prompts))))


def test_concurrent_seeded_requests_give_the_serial_texts(tiny_backend):
    rain = _rain(tiny_backend)
    serial = [rain.generate(p, seed=i).token_ids for i, p in enumerate(PROMPTS)]
    assert concurrent_token_ids(rain, PROMPTS) == serial
    assert tiny_backend.open_sessions == 0


@pytest.mark.parametrize("shared_rollouts", [False, True])
def test_a_request_abandoned_mid_stream_leaves_the_others_and_the_model_usable(tiny_loaded, shared_rollouts):
    """Also with concurrent rollouts decoding as one batch (the CUDA default): the batch is left empty."""
    backend = TransformersBackend(tiny_loaded, batch_rollouts=shared_rollouts)
    rain = _rain(backend)
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
    assert backend.open_sessions == 0
    assert backend.rollout_batcher is None or backend.rollout_batcher.batch.empty
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
    """With the step batcher on (opt-in), concurrent requests' decode steps run as merged forwards."""
    backend = TransformersBackend(tiny_loaded, batch_steps=True)
    rain = _rain(backend)
    serial = [rain.generate(p, seed=i).token_ids for i, p in enumerate(PROMPTS)]
    assert concurrent_token_ids(rain, PROMPTS) == serial


def test_prefills_through_the_batcher_equal_a_from_scratch_forward(tiny_loaded):
    """Prefix extensions and the judge's right-padded rows, run as step-batcher jobs (``batch_prefill``)."""
    backend = TransformersBackend(tiny_loaded, batch_steps=True, batch_prefill=True)
    ids = backend.encode("The movie was great, and the cast was wonderful. I loved it!")
    for cut in (5, 9, len(ids)):  # the first runs from scratch, the others extend a stored prefix
        cached = backend.next_token_logprobs(ids[:cut])
        assert torch.allclose(cached, torch.log_softmax(backend.full_logits(ids[:cut])[-1], -1), atol=1e-4)
    shared = backend.encode("Question: Is this review positive or negative?")
    rows = [shared + backend.encode(" yes it is"), shared + backend.encode(" no")]
    for row, out in zip(rows, backend.last_token_logprobs(rows)):
        assert torch.allclose(out, torch.log_softmax(backend.full_logits(row)[-1], -1), atol=1e-4)


def test_merged_prefills_and_steps_of_concurrent_requests(tiny_loaded):
    """Jobs of different widths and cache lengths (some without a cache) in one forward give what each gets alone."""
    from rain_core.backends.transformers.batching import StepJob

    backend = TransformersBackend(tiny_loaded, batch_steps=True, batch_prefill=True)
    a, b = backend.encode("Human: How are you today?"), backend.encode("Rain falls on the quiet town.")
    _, cache_a = backend._forward(torch.tensor([a]), None, keep_last=True)

    def jobs() -> list[StepJob]:  # every job gets its own fork: a forward extends the cache it is given
        return [StepJob(torch.tensor([[5]]), kv.fork(cache_a)),  # a decode step after a cached prefix
                StepJob(torch.tensor([b]), None),  # a prefill from scratch
                StepJob(torch.tensor([[7, 8, 9], [10, 0, 0]]), kv.repeat(cache_a, 2), lengths=[3, 1])]  # judge rows

    alone = []
    for job in jobs():
        backend.batcher._run([job])
        alone.append(job.result)
    together = jobs()
    backend.batcher._run(together)
    assert backend.batcher.merged_forwards == 1
    for job, (want, want_cache) in zip(together, alone):
        got, got_cache = job.result
        assert torch.allclose(got, want, atol=1e-4)
        assert got_cache.get_seq_length() == want_cache.get_seq_length()
        for layer, ref in zip(got_cache.layers, want_cache.layers):  # the split cache holds what the row computed
            assert torch.allclose(layer.keys, ref.keys, atol=1e-4)
