"""The KV-cache machinery gives exactly what a from-scratch forward pass gives."""

from __future__ import annotations

import torch

from rain_core.backends.transformers import kv
from rain_core.model import RowSpec


def test_cached_logits_equal_full_recomputation(tiny_backend):
    backend = tiny_backend
    backend.reset_cache()
    ids = backend.encode("The movie was great, and the cast was wonderful. I loved it!")
    # Warm the store with a shorter prefix and a diverging sibling, so the lookups below reuse and crop caches.
    backend.next_token_logprobs(ids[:5])
    backend.next_token_logprobs(ids[:8] + [7, 9, 11])
    for cut in (6, 9, len(ids)):
        cached = backend.next_token_logprobs(ids[:cut])
        full = torch.log_softmax(backend.full_logits(ids[:cut])[-1], -1)
        assert torch.allclose(cached, full, atol=1e-4), cut


def test_forked_cache_is_independent(tiny_backend):
    backend = tiny_backend
    ids = backend.encode("Rain falls on the quiet town.")
    _, cache = backend._forward(torch.tensor([ids]), None, keep_last=True)
    before = [layer.keys.clone() for layer in cache.layers]
    twin = kv.fork(cache)
    backend._forward(torch.tensor([[5, 6, 7]]), twin, keep_last=True)
    assert kv.seq_len(twin) == len(ids) + 3
    assert kv.seq_len(cache) == len(ids)
    assert all(torch.equal(a, layer.keys) for a, layer in zip(before, cache.layers))
    cropped = kv.crop(twin, 4)
    assert kv.seq_len(cropped) == 4 and kv.seq_len(twin) == len(ids) + 3


def test_batched_greedy_rows_match_step_by_step_greedy(tiny_backend):
    backend = tiny_backend
    backend.reset_cache()
    ids = backend.encode("Human: How are you today?")
    gen = torch.Generator().manual_seed(0)
    rows = backend.rollouts(ids, [RowSpec("greedy", 6)] + [RowSpec("full", 6)] * 3, gen)
    expected, state = [], list(ids)
    for _ in range(len(rows[0].tokens)):
        token = int(torch.argmax(backend.full_logits(state)[-1]))
        expected.append(token)
        state.append(token)
    assert rows[0].tokens == expected
    logprob = sum(float(torch.log_softmax(backend.full_logits(ids + expected[:i])[-1], -1)[t])
                  for i, t in enumerate(expected))
    assert abs(rows[0].logprob - logprob) < 1e-3
    assert all(1 <= len(r.tokens) <= 6 for r in rows)


def test_last_token_logprobs_of_diverging_rows(tiny_backend):
    backend = tiny_backend
    shared = backend.encode("Question: Is this review positive or negative?")
    rows = [shared + backend.encode(" yes it is"), shared + backend.encode(" no")]
    got = backend.last_token_logprobs(rows)
    for row, out in zip(rows, got):
        assert torch.allclose(out, torch.log_softmax(backend.full_logits(row)[-1], -1), atol=1e-4)


def test_clause_rows_stop_at_clause_end(tiny_backend):
    backend = tiny_backend
    gen = torch.Generator().manual_seed(3)
    rows = backend.rollouts(backend.encode("Hello"), [RowSpec("full", 40, stop_at_clause=True)] * 4, gen)
    for row in rows:
        text = backend.tokenizer.decode(row.tokens)
        if row.finish == "clause":
            assert text[-1] in ",.?:;\n"
        assert row.finish in ("clause", "eos", "length")


def test_static_cache_greedy_matches_the_dynamic_path(tiny_loaded):
    """The CUDA fast path for plain greedy decoding (transformers' static cache), exercised on CPU."""
    from rain_core.backends.transformers import TransformersBackend

    fast = TransformersBackend(tiny_loaded, static_greedy=True)
    slow = TransformersBackend(tiny_loaded, static_greedy=False)
    ids = fast.encode("Human: How are you today?")
    got, want = fast.greedy(ids, 12), slow.greedy(ids, 12)
    assert fast.static_greedy  # it ran, and did not fall back
    assert got.tokens == want.tokens and got.finish == want.finish


def test_static_greedy_reuses_the_one_row_static_cache(tiny_loaded):
    """Plain greedy and one-row static rollouts of the same length bucket decode on one kept cache (a CUDA graph is
    recorded for a cache's addresses: a fresh cache per call would record it again every call)."""
    import torch

    from rain_core.backends.transformers import TransformersBackend
    from rain_core.model import RowSpec

    fast = TransformersBackend(tiny_loaded, static_greedy=True, static_rollouts=True)
    slow = TransformersBackend(tiny_loaded, static_greedy=False, static_rollouts=False)
    ids = fast.encode("Human: How are you today?")
    first = fast.greedy(ids, 12)
    cache = fast._static_caches[(1, 256)]
    fast.rollouts(ids, [RowSpec("full", 10)], torch.Generator().manual_seed(0))
    again = fast.greedy(fast.encode("Human: Tell me a story about a cat."), 9)
    assert list(fast._static_caches) == [(1, 256)] and fast._static_caches[(1, 256)] is cache
    assert first.tokens == slow.greedy(ids, 12).tokens
    assert again.tokens == slow.greedy(slow.encode("Human: Tell me a story about a cat."), 9).tokens
    assert fast.static_greedy and fast.static_rollouts
