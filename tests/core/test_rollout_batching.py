"""Concurrent rollout calls decoding as one batch (rain_core.backends.transformers.rollouts): each call gets what it gets alone."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from rain_core import Rain
from rain_core.backends.transformers import TransformersBackend
from rain_core.model import RowSpec
from rain_core.backends.transformers.rollouts import DecodeBatch, RolloutJob
from test_concurrency import concurrent_token_ids

PROMPTS = ("How are you today?", "Write a review of the movie.", "Tell me a story", "Rain")


def _job(backend: TransformersBackend, groups, seed: int) -> RolloutJob:
    entries = [backend._prefix(ids) for ids, _ in groups]
    return RolloutJob([(list(ids), rows) for ids, rows in groups], entries, torch.Generator().manual_seed(seed),
                      None, backend._session())


def _alone(backend: TransformersBackend, groups, seed: int):
    return backend.rollouts_many(groups, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("late_prefix", ["shorter", "longer"])
def test_a_call_joining_a_running_decode_gets_what_it_gets_alone(tiny_loaded, late_prefix):
    """Call B joins after call A has decoded three steps; B's prefix is shorter than A's rows by then (B is padded)
    or longer (A's rows are padded). Both calls' tokens equal their solo runs, with their own generators."""
    backend = TransformersBackend(tiny_loaded, batch_rollouts=False)
    a = backend.encode("Human: Tell me about the weather in the mountains today.")
    b = backend.encode("Rain") if late_prefix == "shorter" else backend.encode(
        "Human: Write a long review of the movie you saw last night, with the actors' names and the plot.")
    groups_a = [(a, [RowSpec("full", 12), RowSpec("greedy", 12), RowSpec("full", 5)])]
    groups_b = [(b, [RowSpec("full", 9), RowSpec("top_k", 9, top_k=5)]), (a, [RowSpec("full", 6)])]
    want_a, want_b = _alone(backend, groups_a, 1), _alone(backend, groups_b, 2)

    batch = DecodeBatch(backend)
    job_a, job_b = _job(backend, groups_a, 1), _job(backend, groups_b, 2)
    batch.admit(job_a)
    for _ in range(3):
        batch.step()
    batch.admit(job_b)
    while not batch.empty:
        batch.step()
    assert job_a.done and job_b.done
    assert batch.merged_forwards > 0  # the two calls really shared forwards
    for want, got in ((want_a, job_a.results), (want_b, job_b.results)):
        flat = [r for group in want for r in group]
        assert [r.tokens for r in got] == [r.tokens for r in flat]
        assert all(abs(x.logprob - y.logprob) < 1e-3 for x, y in zip(got, flat))
        assert [r.finish for r in got] == [r.finish for r in flat]


def test_forwards_of_a_shared_decode_are_counted_per_session(tiny_loaded):
    """Each session counts one forward per step its rows took part in and only its own rows' tokens."""
    backend = TransformersBackend(tiny_loaded, batch_rollouts=False)
    ids = backend.encode("Human: How are you?")
    groups = [(ids, [RowSpec("greedy", 6), RowSpec("greedy", 6)])]
    with backend.session() as solo, backend.using(solo):
        _alone(backend, groups, 0)
    with backend.session() as first:
        with backend.using(first):
            job_1 = _job(backend, groups, 0)
    with backend.session() as second:
        with backend.using(second):
            job_2 = _job(backend, [(ids, [RowSpec("greedy", 6)])], 0)
    calls = (first.forward_calls, first.tokens_processed, second.forward_calls, second.tokens_processed)
    batch = DecodeBatch(backend)
    batch.admit(job_1)
    batch.admit(job_2)
    while not batch.empty:
        batch.step()
    assert first.forward_calls - calls[0] == 5 and first.tokens_processed - calls[1] == 10  # 5 steps of 2 rows
    assert second.forward_calls - calls[2] == 5 and second.tokens_processed - calls[3] == 5
    assert batch.forwards == 5 and batch.merged_forwards == 5


def _slowed(backend: TransformersBackend, seconds: float) -> None:
    """Make every decode forward take a little longer, so that concurrent calls surely meet in the batcher."""
    forward = backend._step_forward

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return forward(*args, **kwargs)

    backend._step_forward = slow


def hold_first_call(backend: TransformersBackend, method: str, calls: int, timeout: float = 5.0) -> None:
    """From now on, the first call of ``backend.<method>`` (a decode forward, a static round) waits until ``calls``
    rollout calls have reached the batcher (or ``timeout`` passes): concurrent requests then surely meet, however
    busy the machine is."""
    original = getattr(backend, method)
    batcher = backend.rollout_batcher
    base = batcher.calls if batcher is not None else 0
    state = {"held": batcher is None}

    def held(*args, **kwargs):
        if not state["held"]:
            state["held"] = True
            deadline = time.monotonic() + timeout
            while batcher.calls - base < calls and time.monotonic() < deadline:
                time.sleep(0.001)
        return original(*args, **kwargs)

    setattr(backend, method, held)


@pytest.mark.parametrize("search, mode, static", [("lookahead", "full", False), ("reference", "full", False),
                                                  ("lookahead", "guard", False), ("lookahead", "full", True)])
def test_concurrent_requests_sharing_rollouts_give_the_serial_texts(tiny_loaded, search, mode, static):
    """With ``static``, as on CUDA: calls that fit decode in static rounds (several calls per round when they meet),
    the others in the dynamic batch."""
    backend = TransformersBackend(tiny_loaded, batch_rollouts=True, static_rollouts=static)
    _slowed(backend, 0.002)
    rain = Rain(backend, evaluator="harmless-letters", similarity="hidden", max_iterations=6, max_new_tokens=10,
                search=search, mode=mode, guard_threshold=0.5)
    serial = [rain.generate(p, seed=i).token_ids for i, p in enumerate(PROMPTS)]
    assert backend.rollout_batcher is not None and backend.rollout_batcher.joined == 0  # one at a time: nobody met
    # guard mode drafts outside the batcher: only its searches' calls come, so wait for a second one only
    hold_first_call(backend, "try_static" if static else "_step_forward", 2 if mode == "guard" else len(PROMPTS))
    assert concurrent_token_ids(rain, PROMPTS) == serial
    batcher = backend.rollout_batcher
    assert batcher.joined > 0  # calls met: in a running dynamic batch, or (static) in one static round
    assert (batcher.static_rounds > 0) if static else (batcher.merged_forwards > 0)
    assert backend.open_sessions == 0


def test_a_failing_forward_fails_every_call_in_the_batch_and_the_batcher_recovers(tiny_loaded):
    backend = TransformersBackend(tiny_loaded, batch_rollouts=True)
    ids = [backend.encode(p) for p in PROMPTS[:3]]
    rows = [RowSpec("greedy", 8)]
    want = [_alone(backend, [(i, rows)], 0) for i in ids]
    forward = backend._step_forward
    calls = {"n": 0}
    started = threading.Event()

    def broken(*args, **kwargs):
        calls["n"] += 1
        started.set()
        time.sleep(0.05)
        if calls["n"] == 3:
            raise RuntimeError("device lost")
        return forward(*args, **kwargs)

    backend._step_forward = broken

    def one(i: int):
        if i:
            started.wait()
        try:
            return _alone(backend, [(ids[i], rows)], 0)
        except RuntimeError as exc:
            return str(exc)

    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(one, range(3)))
    assert "device lost" in outcomes  # the calls decoding at the failure got the error, in their own threads
    assert backend.rollout_batcher.batch.empty
    backend._step_forward = forward
    assert [_alone(backend, [(i, rows)], 0) for i in ids] == want  # and the batcher serves calls again

