"""Rollouts through `generate` on a static cache (the CUDA default) hold to the dynamic decode loop's tokens."""

from __future__ import annotations

import shutil

import pytest
import torch

from rain_core import Rain
from rain_core.backends.transformers import static_decode
from rain_core.backends.transformers import TransformersBackend
from rain_core.model import ResponseGuard, RowSpec

ROWS = [RowSpec("greedy", 9), RowSpec("full", 12), RowSpec("top_k", 7, top_k=5), RowSpec("full", 3)]
#: the reference search's kind of call: candidates, and a simulation row that ends at a clause end
CLAUSE_ROWS = [RowSpec("greedy", 4), RowSpec("top_k", 4, top_k=15), RowSpec("full", 24, stop_at_clause=True)] * 2


@pytest.mark.parametrize("no_repeat", [0, 2])
def test_static_rollouts_give_the_dynamic_paths_tokens(tiny_loaded, no_repeat):
    static = TransformersBackend(tiny_loaded, static_rollouts=True)
    dynamic = TransformersBackend(tiny_loaded, static_rollouts=False)
    ids = static.encode("Human: Tell me about the weather in the mountains today.")
    assert static_decode.fits(ROWS) and static_decode.fits([RowSpec("full", 10, stop_at_clause=True)])
    assert not static_decode.fits([RowSpec("top_k", 4, top_k=5)] * 3)
    guard = ResponseGuard.no_repeat_ngrams(no_repeat, len(ids) - 3)
    for seed in range(3):
        got = static.rollouts(ids, ROWS, torch.Generator().manual_seed(seed), guard)
        want = dynamic.rollouts(ids, ROWS, torch.Generator().manual_seed(seed), guard)
        assert static.static_rollouts  # the static path ran, and did not fall back
        assert [r.tokens for r in got] == [r.tokens for r in want]
        assert [r.finish for r in got] == [r.finish for r in want]
        assert all(abs(x.logprob - y.logprob) < 1e-3 for x, y in zip(got, want))
    assert list(static._static_caches) == [(4, 256)]  # one cache, reused by every call of these rows and length


def test_clause_rows_end_where_the_dynamic_loop_ends_them(tiny_loaded):
    """The reference search's calls (short candidates beside simulation rows that stop at a clause end) decode on a
    static cache too: every row ends, with the tokens and the reason, where the dynamic loop ends it."""
    static = TransformersBackend(tiny_loaded, static_rollouts=True)
    dynamic = TransformersBackend(tiny_loaded, static_rollouts=False)
    ids = static.encode("Human: Tell me about the weather in the mountains today.")
    finishes = set()
    for seed in range(6):
        got = static.rollouts(ids, CLAUSE_ROWS, torch.Generator().manual_seed(seed))
        want = dynamic.rollouts(ids, CLAUSE_ROWS, torch.Generator().manual_seed(seed))
        assert [r.tokens for r in got] == [r.tokens for r in want]
        assert [r.finish for r in got] == [r.finish for r in want]
        finishes |= {r.finish for r in got}
    assert static.static_rollouts and list(static._static_caches) == [(8, 256)]
    assert {"clause", "length"} <= finishes  # simulation rows ended at clause ends, candidates at their length
    # with other requests running, such calls join the dynamic batch (a static round could not take theirs in)
    assert not static_decode.fits(CLAUSE_ROWS, alone=False) and static_decode.fits(ROWS, alone=False)
    rounds = static.rollout_batcher.static_rounds
    with static.session(), static.session():
        static.rollouts(ids, CLAUSE_ROWS, torch.Generator().manual_seed(0))
        assert static.rollout_batcher.static_rounds == rounds
        static.rollouts(ids, ROWS, torch.Generator().manual_seed(0))
        assert static.rollout_batcher.static_rounds == rounds + 1


@pytest.mark.parametrize("search", ["lookahead", "reference"])
def test_a_search_on_static_rollouts_gives_the_same_text(tiny_loaded, search):
    texts = []
    for on in (True, False):
        backend = TransformersBackend(tiny_loaded, static_rollouts=on)
        rain = Rain(backend, evaluator="harmless-letters", similarity="hidden", max_iterations=6, max_new_tokens=12,
                    search=search)
        texts.append(rain.generate("Write a review of the movie.", seed=4).token_ids)
        assert backend.static_rollouts == on  # it ran, and did not fall back
    assert texts[0] == texts[1]


def test_rows_run_as_a_power_of_two_batch(tiny_loaded, monkeypatch):
    monkeypatch.setattr(static_decode, "MAX_CACHES", 4)  # so that six batch sizes overflow it
    static = TransformersBackend(tiny_loaded, static_rollouts=True)
    dynamic = TransformersBackend(tiny_loaded, static_rollouts=False)
    ids = static.encode("Human: How are you?")
    rows = ROWS + [RowSpec("full", 11)]  # five rows: a batch of eight, three of them idle throughout
    got = static.rollouts(ids, rows, torch.Generator().manual_seed(2))
    want = dynamic.rollouts(ids, rows, torch.Generator().manual_seed(2))
    assert [r.tokens for r in got] == [r.tokens for r in want]
    assert list(static._static_caches) == [(8, 256)]
    assert [static_decode.row_bucket(n) for n in (1, 2, 3, 5)] == [1, 2, 4, 8]
    for rows in (1, 2, 3, 16, 32):  # five more batch sizes: the least recently used cache goes
        static.rollouts(ids, [RowSpec("full", 8)] * rows, torch.Generator().manual_seed(rows))
    assert list(static._static_caches) == [(2, 256), (4, 256), (16, 256), (32, 256)]


@pytest.mark.parametrize("batcher", [True, False])
def test_a_failing_static_path_falls_back_with_the_same_draws(tiny_loaded, monkeypatch, caplog, batcher):
    """Through the rollout batcher (a static round) and without it (a lone call)."""
    backend = TransformersBackend(tiny_loaded, static_rollouts=True, batch_rollouts=batcher)
    ids = backend.encode("Human: How are you?")
    want = TransformersBackend(tiny_loaded, static_rollouts=False).rollouts(ids, ROWS, torch.Generator().manual_seed(1))

    def broken(backend, jobs, caches):
        torch.rand(5, generator=jobs[0].generator)  # it drew, then failed
        raise RuntimeError("no graphs here")

    monkeypatch.setattr(static_decode, "decode_many", broken)
    got = backend.rollouts(ids, ROWS, torch.Generator().manual_seed(1))
    assert not backend.static_rollouts and "static-cache rollouts failed" in caplog.text
    assert [r.tokens for r in got] == [r.tokens for r in want]


def test_a_processor_that_changes_the_picked_token_is_caught(tiny_loaded, monkeypatch, caplog):
    """If anything in generate fed the model another token than the one picked (a default logits processor of
    some model's generation config, say), the call falls back instead of returning tokens the model never read."""
    backend = TransformersBackend(tiny_loaded, static_rollouts=True)
    ids = backend.encode("Human: How are you?")
    picker_call = static_decode._Picker.__call__

    def meddling(self, input_ids, scores):
        out = picker_call(self, input_ids, scores)
        return out.roll(1, dims=-1)  # every row's one-hot moves to the next token id

    monkeypatch.setattr(static_decode._Picker, "__call__", meddling)
    want = TransformersBackend(tiny_loaded, static_rollouts=False).rollouts(ids, ROWS, torch.Generator().manual_seed(3))
    got = backend.rollouts(ids, ROWS, torch.Generator().manual_seed(3))
    assert not backend.static_rollouts and "other tokens than the ones picked" in caplog.text
    assert [r.tokens for r in got] == [r.tokens for r in want]


@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")),
                    reason="torch.compile on a CPU needs a C++ compiler")
def test_compiled_static_rollouts_compile_once_per_batch_and_keep_the_tokens(tiny_loaded):
    """What happens on CUDA, rehearsed on the CPU: the decode step compiles once per batch bucket, later calls of
    any prompt length reuse it (no recompiling per call or per step), and the tokens stay the dynamic path's."""
    from torch._dynamo.utils import counters

    static = TransformersBackend(tiny_loaded, static_rollouts=True)
    static.compile_static_everywhere = True
    dynamic = TransformersBackend(tiny_loaded, static_rollouts=False)
    long, short = static.encode("Human: Tell me about the weather in the mountains today."), static.encode("Hi")
    torch._dynamo.reset()
    counters.clear()
    for seed, (ids, rows) in enumerate([(long, ROWS), (short, ROWS), (long, ROWS[:1]), (short, ROWS[:1]),
                                        (long, ROWS)]):
        got = static.rollouts(ids, rows, torch.Generator().manual_seed(seed))
        want = dynamic.rollouts(ids, rows, torch.Generator().manual_seed(seed))
        assert static.static_rollouts  # compiled, and did not fall back
        assert [r.tokens for r in got] == [r.tokens for r in want]
    # a static round of three calls with prefixes of different lengths (left-padded): 4 rows, the same graph
    from rain_core.backends.transformers.rollouts import RolloutJob

    calls = [(long, ROWS[:2]), (short, ROWS[:1]), (static.encode("Human: How are you?"), ROWS[1:2])]
    jobs = []
    for seed, (ids, rows) in enumerate(calls):
        with static.session() as session, static.using(session):
            jobs.append(RolloutJob([(ids, rows)], [static._prefix(ids)], torch.Generator().manual_seed(seed), None,
                                   session))
    got = static_decode.decode_many(static, jobs, static._static_caches)
    for (ids, rows), mine, seed in zip(calls, got, range(3)):
        assert [r.tokens for r in mine] == [r.tokens for r in dynamic.rollouts(ids, rows,
                                                                               torch.Generator().manual_seed(seed))]
    # plain greedy decodes on the one-row cache and step compiled above: no graph of its own
    static.static_greedy = True
    assert static.greedy(long, 9).tokens == dynamic.greedy(long, 9).tokens and static.static_greedy
    assert counters["stats"]["unique_graphs"] == 2  # batches of 4 and of 1: one graph each, whatever the padding
    torch._dynamo.reset()


def test_a_static_cache_that_misreads_the_copied_prefix_is_caught(tiny_loaded, monkeypatch, caplog):
    """The first step's logits must be the cached prefix's; a copy the cache does not read (here: positions left
    empty) fails that check and the call falls back, with the draws it would have made."""
    backend = TransformersBackend(tiny_loaded, static_rollouts=True)
    ids = backend.encode("Human: Tell me about the weather in the mountains today.")
    fill = static_decode.fill

    def empty_fill(cache, prefixes, end):
        fill(cache, prefixes, end)
        for layer in cache.layers:
            layer.keys.zero_()
            layer.values.zero_()

    monkeypatch.setattr(static_decode, "fill", empty_fill)
    want = TransformersBackend(tiny_loaded, static_rollouts=False).rollouts(ids, ROWS, torch.Generator().manual_seed(5))
    got = backend.rollouts(ids, ROWS, torch.Generator().manual_seed(5))
    assert not backend.static_rollouts and "first logits differ" in caplog.text
    assert [r.tokens for r in got] == [r.tokens for r in want]


def test_calls_of_different_prefixes_decode_together_as_each_alone(tiny_loaded):
    """Three calls (prefixes of different lengths, so two are left-padded; each its own generator and guard) in one
    static decode: every call gets the dynamic loop's tokens for it alone, counted in its own session."""
    from rain_core.backends.transformers.rollouts import RolloutJob

    static = TransformersBackend(tiny_loaded, static_rollouts=True, batch_rollouts=False)
    dynamic = TransformersBackend(tiny_loaded, static_rollouts=False, batch_rollouts=False)
    texts = ("Human: Tell me about the weather in the mountains today.", "Rain", "Human: How are you?")
    calls = [(static.encode(t), rows) for t, rows in zip(texts, (ROWS, ROWS[:2], [RowSpec("full", 10)] * 3))]
    guards = [None, ResponseGuard.no_repeat_ngrams(2, 1), None]
    want = [dynamic.rollouts(ids, rows, torch.Generator().manual_seed(i), guards[i])
            for i, (ids, rows) in enumerate(calls)]
    sessions, jobs = [], []
    for i, (ids, rows) in enumerate(calls):
        with static.session() as session, static.using(session):
            jobs.append(RolloutJob([(ids, rows)], [static._prefix(ids)], torch.Generator().manual_seed(i), guards[i],
                                   session))
            sessions.append((session, session.forward_calls))
    got = static_decode.decode_many(static, jobs, static._static_caches)
    for mine, theirs in zip(got, want):
        assert [r.tokens for r in mine] == [r.tokens for r in theirs]
        assert all(abs(x.logprob - y.logprob) < 1e-3 for x, y in zip(mine, theirs))
    assert list(static._static_caches) == [(16, 256)]  # 4 + 2 + 3 = 9 rows: a batch of 16
    for (session, before), mine in zip(sessions, got):  # one forward per step each call's rows took part in
        assert session.forward_calls - before == max(len(r.tokens) for r in mine)


def test_static_decodes_run_on_the_graph_thread_from_any_caller(tiny_loaded, monkeypatch):
    """Compiled CUDA graphs belong to the thread that recorded them (torch 2.11 asserts when another Python thread
    replays one), so every static decode, rollouts and greedy alike, runs on the backend's one graph thread
    whichever request thread asks; the forwards still count in the caller's session, and the tokens are the
    dynamic path's."""
    import threading

    static = TransformersBackend(tiny_loaded, static_rollouts=True, static_greedy=True, batch_rollouts=False)
    dynamic = TransformersBackend(tiny_loaded, static_rollouts=False, static_greedy=False, batch_rollouts=False)
    ids = static.encode("Human: Tell me about the weather in the mountains today.")
    threads_seen: set[int] = set()
    forward = tiny_loaded.model.forward

    def watched(*args, **kwargs):
        threads_seen.add(threading.get_ident())
        return forward(*args, **kwargs)

    results: dict[str, object] = {}

    def request(name: str, seed: int) -> None:
        with static.session() as session, static.using(session):
            rollouts = static.rollouts(ids, ROWS, torch.Generator().manual_seed(seed))
            greedy = static.greedy(ids, 9)
            results[name] = (threading.get_ident(), [r.tokens for r in rollouts], greedy.tokens,
                             session.forward_calls)

    monkeypatch.setattr(tiny_loaded.model, "forward", watched)
    for seed in (0, 1):  # two request threads, one after the other (each its own thread id)
        worker = threading.Thread(target=request, args=(f"r{seed}", seed))
        worker.start()
        worker.join()
    prefill_threads = {results["r0"][0], results["r1"][0]}  # the prefixes are computed in the callers' threads
    assert static.static_rollouts and static.static_greedy  # nothing fell back
    assert static.graph_thread.ident is not None and static.graph_thread.ident not in prefill_threads
    assert threads_seen - prefill_threads == {static.graph_thread.ident}
    monkeypatch.setattr(tiny_loaded.model, "forward", forward)
    for seed in (0, 1):
        _, tokens, greedy_tokens, calls = results[f"r{seed}"]
        assert tokens == [r.tokens for r in dynamic.rollouts(ids, ROWS, torch.Generator().manual_seed(seed))]
        assert greedy_tokens == dynamic.greedy(ids, 9).tokens
        assert calls > max(len(t) for t in tokens)  # the static steps counted in the caller's session


def test_graph_thread_carries_context_errors_and_nested_calls():
    import contextvars
    import threading

    from rain_core.backends.transformers.graph_thread import GraphThread

    graphs = GraphThread()
    current: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="none")
    current.set("caller")
    assert graphs.run(current.get) == "caller"  # the caller's context goes along
    assert graphs.run(threading.get_ident) == graphs.ident != threading.get_ident()
    assert graphs.run(lambda: graphs.run(threading.get_ident)) == graphs.ident  # a nested call runs inline

    def fails() -> None:
        raise ValueError("bad shape")

    with pytest.raises(ValueError, match="bad shape"):
        graphs.run(fails)
    assert graphs.run(lambda: 7) == 7  # and the thread serves calls after an error


def test_backends_on_one_device_share_its_graph_thread(tiny_loaded):
    """Two backends over one model (say, a bit-exact one beside the shared one) replay the same compiled step, so
    they hand their static decodes to the same thread."""
    from rain_core.backends.transformers import graph_thread

    one = TransformersBackend(tiny_loaded, static_rollouts=True)
    other = TransformersBackend(tiny_loaded, static_rollouts=True, batch_rollouts=False)
    assert one.graph_thread is other.graph_thread is graph_thread.for_device(torch.device("cpu"))
    assert graph_thread.for_device("cuda:0") is not one.graph_thread


def test_kept_static_caches_stay_within_their_byte_budget(tiny_loaded, monkeypatch):
    """On a GPU the kept caches are held to a share of its memory as well as to their number; the one in use always
    stays, even alone over the budget."""
    static = TransformersBackend(tiny_loaded, static_rollouts=True)
    ids = static.encode("Human: How are you?")
    static.rollouts(ids, [RowSpec("full", 8)], torch.Generator().manual_seed(0))
    one_row = static_decode.cache_bytes(static._static_caches[(1, 256)])
    assert one_row > 0
    monkeypatch.setattr(static_decode, "cache_budget", lambda device: 7 * one_row)
    for rows in (2, 4):  # 1 + 2 + 4 rows' worth: within the budget
        static.rollouts(ids, [RowSpec("full", 8)] * rows, torch.Generator().manual_seed(rows))
    assert list(static._static_caches) == [(1, 256), (2, 256), (4, 256)]
    static.rollouts(ids, [RowSpec("full", 8)] * 3, torch.Generator().manual_seed(3))  # reuses the 4-row cache
    assert list(static._static_caches) == [(1, 256), (2, 256), (4, 256)]
    static.rollouts(ids, [RowSpec("full", 8)] * 5, torch.Generator().manual_seed(5))  # 8 rows: alone over budget
    assert list(static._static_caches) == [(8, 256)]
    assert static.static_rollouts
