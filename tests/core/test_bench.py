"""`rain bench`'s concurrency figures: what they count, and the flag's validation."""

from __future__ import annotations

import argparse
import time

import pytest

from rain_core import Rain
from rain_core.backends.transformers import TransformersBackend
from rain_core.bench import BENCH_PROMPTS, concurrency_levels, concurrent_throughput, serial_throughput
from rain_core.cli import _request_counts
from test_rollout_batching import hold_first_call


def _rain(tiny_loaded, shared: bool) -> Rain:
    backend = TransformersBackend(tiny_loaded, batch_rollouts=shared)
    forward = backend._step_forward

    def slow(*args, **kwargs):  # a little slower per decode step, so that concurrent requests surely meet
        time.sleep(0.002)
        return forward(*args, **kwargs)

    backend._step_forward = slow
    return Rain(backend, evaluator="harmless-letters", similarity="hidden", max_iterations=4, max_new_tokens=8)


def test_concurrent_requests_share_forwards_and_count_what_they_commit(tiny_loaded):
    shared, unshared = _rain(tiny_loaded, True), _rain(tiny_loaded, False)
    alone = [shared.generate(p, seed=i) for i, p in enumerate(("How are you today?", "Tell me a story") * 2)]
    hold_first_call(shared.backend, "_step_forward", 4)  # the four requests surely meet, however busy the machine
    figures = {name: concurrent_throughput(rain, 4, prompts=("How are you today?", "Tell me a story"))
               for name, rain in (("shared", shared), ("unshared", unshared))}
    for got in figures.values():
        assert got["requests"] == 4 and got["finished"] == 4
        assert got["tokens"] == sum(len(r.token_ids) for r in alone)  # seeded: what each request commits alone
        assert got["tokens_per_s"] > 0
    assert figures["shared"]["merged_rollout_forwards"] > 0 and figures["unshared"]["merged_rollout_forwards"] is None
    assert figures["shared"]["model_calls"] < figures["unshared"]["model_calls"]  # shared forwards count once


def test_a_time_cap_stops_requests_and_counts_their_committed_tokens(tiny_loaded):
    rain = _rain(tiny_loaded, True)
    got = concurrent_throughput(rain, 2, seconds=0.0, max_new_tokens=40)
    assert got["finished"] == 0 and got["requests"] == 2  # every request stopped at its first progress report
    got = serial_throughput(rain, 3, seconds=0.0, max_new_tokens=40)
    assert got["finished"] == 0  # the first request stopped at its first report, and no other started


def test_levels_report_throughput_relative_to_one_at_a_time(tiny_loaded):
    rain = _rain(tiny_loaded, True)
    report = concurrency_levels(rain, [1, 2])
    serial, levels = report["one_at_a_time"], report["levels"]
    assert serial["requests"] == 4  # each bench prompt once
    assert serial["tokens"] == sum(len(rain.generate(p, seed=i).token_ids) for i, p in enumerate(BENCH_PROMPTS))
    assert [level["requests"] for level in levels] == [1, 2]
    for level in levels:
        assert level["speedup_vs_one_at_a_time"] == round(level["tokens_per_s"] / serial["tokens_per_s"], 2)


def test_request_counts_flag():
    assert _request_counts("1,4,16") == (1, 4, 16)
    for bad in ("0,4", "four", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="request counts"):
            _request_counts(bad)
    with pytest.raises(ValueError, match="at least 1"):
        concurrent_throughput(None, 0)  # type: ignore[arg-type]
