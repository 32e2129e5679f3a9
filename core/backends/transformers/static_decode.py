"""Rollouts through transformers' `generate` on a static KV cache: on a GPU, each decode step one CUDA graph.

The search's own decode loop (rollouts.py) runs the model eagerly on dynamic caches, so on a GPU every step pays
a Python launch per layer and per kernel: at 7.4B that is ~25 ms a step where the weights take ~3 ms to read. On a
static cache, `generate` compiles the decode step and replays it as a CUDA graph (transformers' auto-compile; plain
greedy measured 10 ms a step this way on an H200). This module runs a rollout call there, keeping what makes it a
RAIN rollout: rows sample with the call's own generator, in row order, only while they run (a `LogitsProcessor`
does the picking and hands `generate` a one-hot score, so `generate`'s own greedy step takes that token), the
call's guard shapes each row's distribution, and each row stops on EOS, its own length or a clause end (a
`StoppingCriteria` reports the rows that ended). A row's log-probability is summed as the dynamic path sums it.

The static cache starts from the session's cached prefix: its positions are copied into every row (`fill`), so
`generate` runs only the prefix's last token before decoding, and a long prompt (a RAG context) is not prefilled
again per row; the first step's logits are checked against the cached prefix's, so a cache that reads the copy
differently (another transformers version) is caught rather than decoded from.

What it covers: calls whose rows all continue one prefix and run long (`fits`), on a model whose static cache has
plain layers; several such calls (concurrent requests, gathered by the rollout batcher) decode together, their
prefixes left-padded (`decode_many`); rows run as a power-of-two batch, so a search compiles a few graphs, not one
per width. Plain greedy decoding (`greedy`) runs here too. The caches are kept and reused (`take_cache`, `evict`):
a CUDA graph is recorded for a cache's addresses. The backend runs all of it on its graph thread
(graph_thread.py). Anything else, or any failure (the backend then switches the path off with a warning and
restores the call's generator), uses the dynamic path. Off by default on a CPU, where there are no graphs to gain;
tests turn it on there to hold it to the dynamic path's tokens.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Sequence

import torch

from ...model import Rollout, RowSpec
from .rollouts import finish_of, pick_rows

if TYPE_CHECKING:
    from .backend import TransformersBackend
    from .rollouts import RolloutJob

#: static caches are allocated in multiples of this many positions, so calls of similar length reuse one graph
CACHE_BUCKET = 256


#: static caches kept for reuse, at most this many (the least recently used go first). Enough for every row bucket
#: a static round of concurrent requests uses (1 to 64 rows) and one more: a cache dropped and allocated again has
#: new addresses, and the compiled step's CUDA graph is recorded again for them
MAX_CACHES = 8

#: and together at most this share of the GPU's memory (at 7.4B a 16-row, 1,024-position cache holds 2 GB; at 32B,
#: 4 GB), the one in use always kept
MAX_CACHE_SHARE = 0.1

#: calls whose rows may run this many tokens or more take this path (`generate`'s set-up and its eager first step
#: are worth paying only then)
MIN_TOKENS = 8


def fits(rows: "Sequence[RowSpec]", alone: bool = True) -> bool:
    """Whether a call of ``rows`` (all continuing one prefix) is worth a static decode: some row may run long.

    Complete responses (the lookahead search, guard mode's replacements) qualify. So does the reference search's
    iteration (candidates beside a simulation row that runs to a clause end, up to ``max_simulation_tokens``), but
    only for a request running ``alone``: a static round cannot take calls that arrive while it decodes, and the
    reference search's many short calls from concurrent requests share far more forwards by joining the dynamic
    batch (measured on the CPU: 16 such requests ran 4× the forwards per token in static rounds). A call of short
    rows only (one-token candidates, the last tokens of a response) never does."""
    if not rows or max(r.max_tokens for r in rows) < MIN_TOKENS:
        return False
    return alone or not any(r.stop_at_clause for r in rows)


def length_bucket(positions: int) -> int:
    """The static cache length for ``positions``: the next multiple of ``CACHE_BUCKET``, so that calls of similar
    length share a cache and its graph."""
    return -(-positions // CACHE_BUCKET) * CACHE_BUCKET


def row_bucket(rows: int) -> int:
    """The batch a call of ``rows`` rows runs as: the next power of two, so that a search whose calls vary in width
    compiles a handful of graphs, not one per width (the extra rows are idle from the start)."""
    return 1 << max(0, rows - 1).bit_length()


class _Picker:
    """The sampling of one or more rollout calls inside `generate`: picks each running row's token with its call's
    generator (each call's rows in row order, as the dynamic loop does), records it, and tells `generate` which rows
    have ended. Rows beyond the calls' own (padding to the batch bucket) are idle from the start."""

    def __init__(self, backend: "TransformersBackend", jobs: "Sequence[RolloutJob]") -> None:

        self.backend = backend
        self.jobs = list(jobs)
        self.spans: list[tuple[int, int]] = []  # each call's rows
        self.specs: list[RowSpec] = []
        self.prefixes: list[list[int]] = []
        for job in self.jobs:
            specs = list(job.groups[0][1])
            self.spans.append((len(self.specs), len(self.specs) + len(specs)))
            self.specs += specs
            self.prefixes += [list(job.groups[0][0])] * len(specs)
        self.results: list[Rollout] = [Rollout(tokens=[], logprob=0.0, finish="length") for _ in self.specs]
        self.running = list(range(len(self.specs)))
        self.checked = False  # whether the first step's logits were compared with the cached prefixes'

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """The logits processor: a one-hot score per row (the picked token; ended rows get any, generate pads)."""
        backend = self.backend
        if not self.checked:  # each copied prefix reads as the session's: the same next-token logits
            self.checked = True
            for job, (start, _) in zip(self.jobs, self.spans):
                expected = job.entries[0].logits.float()
                got = scores[start].float().to(expected.device)
                if float((got - expected).abs().max()) > 0.1 * (float(expected.abs().max()) + 1.0):
                    raise RuntimeError("the static cache's first logits differ from the cached prefix's")
        out = torch.full_like(scores, float("-inf"))  # idle rows (ended, or padding to the bucket) take token 0
        still: list[int] = []
        for job, (start, stop) in zip(self.jobs, self.spans):
            active = [i for i in self.running if start <= i < stop]
            if not active:
                continue
            index = torch.tensor(active, device=scores.device)
            chosen, picked = pick_rows(backend, job, scores.index_select(0, index),
                                       [self.prefixes[i] + self.results[i].tokens for i in active],
                                       [self.specs[i] for i in active])
            for pos, (i, token) in enumerate(zip(active, chosen.tolist())):
                result = self.results[i]
                result.tokens.append(token)
                result.logprob += picked[pos]
                ending = finish_of(backend, self.specs[i], result.tokens)
                if ending is None:
                    still.append(i)
                else:
                    result.finish = ending
            out[index, chosen.to(scores.device)] = 0.0
        self.running = still
        return out

    def ended(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """The stopping criterion: True for every row that has ended (generate pads it from then on)."""
        done = torch.ones(input_ids.shape[0], dtype=torch.bool)
        done[self.running] = False
        return done.to(input_ids.device)


def fill(cache: Any, prefixes: "Sequence[tuple[Any, int, int, int]]", end: int) -> None:
    """Copy cached prefixes into the static ``cache``: for each ``(dynamic batch-1 cache, length, first row,
    last row)``, its first ``length`` positions go to those rows, right-aligned to end at position ``end`` (rows of
    shorter prefixes are left-padded; their attention mask hides the padding). `generate` then runs only what
    follows position ``end`` (it reads the cache's length to know where to start)."""
    from transformers.cache_utils import StaticLayer

    first_cache = prefixes[0][0]
    if len(cache.layers) != len(first_cache.layers) or any(type(layer) is not StaticLayer for layer in cache.layers):
        raise NotImplementedError("only plain static layers can start from a copied prefix")
    if not all(getattr(layer, "is_initialized", False) for layer in cache.layers):
        raise RuntimeError("the static cache must be initialised before it is filled")
    for index, layer in enumerate(cache.layers):
        for prefix, length, start, stop in prefixes:
            source = prefix.layers[index]
            keys = source.keys[..., :length, :].expand(stop - start, -1, -1, -1)
            values = source.values[..., :length, :].expand(stop - start, -1, -1, -1)
            layer.keys[start:stop, :, end - length:end].copy_(keys)
            layer.values[start:stop, :, end - length:end].copy_(values)
        if isinstance(getattr(layer, "cumulative_length", None), torch.Tensor):
            layer.cumulative_length.fill_(end)  # in place: a compiled step reads it at a static address
        else:
            layer.cumulative_length = end


def decode_many(backend: "TransformersBackend", jobs: "Sequence[RolloutJob]",
                caches: "OrderedDict[tuple[int, int], Any]") -> list[list["Rollout"]]:
    """Rollout calls (each with one prefix) decoded together by `generate` on a static cache taken from ``caches``
    (reused across calls of the same row and length buckets, so a compiled step keeps its static addresses). Prefixes
    of different lengths are left-padded. Counts the forwards in each call's session: the prefix's last token per row
    (the rest is copied from the session's cached prefix, ``job.entries[0]``), then one step per token after the
    first (the running rows' tokens, as the dynamic path counts them)."""
    from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

    picker = _Picker(backend, jobs)
    rows = len(picker.specs)
    batch = row_bucket(rows)
    end = max(len(prefix) for prefix in picker.prefixes)  # every row's prefix ends here (left-padded)
    longest = max(spec.max_tokens for spec in picker.specs)
    length = length_bucket(end + longest)

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
            return picker.ended(input_ids, scores)  # type: ignore[return-value]

    pad = backend.tokenizer.pad_token_id if backend.tokenizer.pad_token_id is not None else 0
    config = _generation_config(backend, max_new_tokens=longest, eos_token_id=None, pad_token_id=pad)
    # rows past the calls' own repeat the first row (idle from the start); each row left-padded to ``end``
    prefixes = picker.prefixes + [picker.prefixes[0]] * (batch - rows)
    ids = [[pad] * (end - len(p)) + p for p in prefixes]
    mask = [[0] * (end - len(p)) + [1] * len(p) for p in prefixes]
    copies = [(job.entries[0].cache, len(job.groups[0][0]) - 1, start, stop)
              for job, (start, stop) in zip(picker.jobs, picker.spans)]
    if batch > rows:
        copies.append((picker.jobs[0].entries[0].cache, len(picker.prefixes[0]) - 1, rows, batch))
    with torch.inference_mode():
        cache = take_cache(backend, caches, batch, length)
        _initialise(cache, jobs[0].entries[0].cache, batch)
        evict(caches, cache_budget(backend.device))
        fill(cache, copies, end - 1)
        inputs = torch.tensor(ids, device=backend.device)
        # the mask is given (not left to generate to guess from the pad token): it hides each row's left padding
        out = backend.model.generate(inputs, attention_mask=torch.tensor(mask, device=backend.device),
                                     generation_config=config, logits_processor=LogitsProcessorList([picker]),
                                     stopping_criteria=StoppingCriteriaList([_Stop()]),
                                     **{backend._cache_kwarg: cache})
    fed = out[:rows, end:].tolist()
    for row, result in zip(fed, picker.results):  # the model read what was picked (no other processor intervened)
        if row[:len(result.tokens)] != result.tokens:
            raise RuntimeError("generate decoded other tokens than the ones picked")
    steps = max(len(r.tokens) for r in picker.results)
    with backend._stats_lock:
        backend.model_calls += steps
    out_rows: list[list[Rollout]] = []
    for job, (start, stop) in zip(picker.jobs, picker.spans):
        mine = picker.results[start:stop]
        backend._count(len(mine), job.session)  # the prefix's last token per row (the rest came from the cache)
        for step in range(1, max(len(r.tokens) for r in mine)):
            backend._count(sum(len(r.tokens) > step for r in mine), job.session)
        out_rows.append(mine)
    return out_rows


def greedy(backend: "TransformersBackend", ids: list[int], max_tokens: int,
           caches: "OrderedDict[tuple[int, int], Any]") -> "Rollout":
    """Plain greedy decoding of ``ids`` by `generate` on a static cache from ``caches`` (one row: the rollouts'
    one-row cache of the same length bucket, so the compiled step's CUDA graph is the one already recorded for its
    addresses, not recorded again for a fresh cache every call)."""

    length = length_bucket(len(ids) + max_tokens)
    config = _generation_config(backend, max_new_tokens=max_tokens, eos_token_id=sorted(backend.eos_ids),
                                pad_token_id=backend.tokenizer.pad_token_id)
    with torch.inference_mode():
        cache = take_cache(backend, caches, 1, length)
        out = backend.model.generate(torch.tensor([ids], device=backend.device), generation_config=config,
                                     **{backend._cache_kwarg: cache})
        evict(caches, cache_budget(backend.device))
    tokens = [int(t) for t in out[0, len(ids):].tolist()]
    backend._count(len(ids))  # the prompt's forward, then one per decoded token after the first
    for _ in tokens[1:]:
        backend._count(1)
    return Rollout(tokens=tokens, logprob=float("nan"),
                   finish="eos" if tokens and tokens[-1] in backend.eos_ids else "length")


def _generation_config(backend: "TransformersBackend", **settings: Any) -> Any:
    """Greedy `generate` settings with nothing of the model's own generation config intervening; in tests
    (``compile_static_everywhere``) the decode step compiles on a CPU too, as `generate` compiles it on CUDA."""
    from transformers import GenerationConfig

    config = GenerationConfig(do_sample=False, num_beams=1, repetition_penalty=1.0, no_repeat_ngram_size=0, **settings)
    if backend.compile_static_everywhere:
        from transformers import CompileConfig

        config.compile_config = CompileConfig()
        config.compile_config._compile_all_devices = True
    return config


def take_cache(backend: "TransformersBackend", caches: "OrderedDict[tuple[int, int], Any]", batch: int,
               length: int) -> Any:
    """The kept static cache of ``batch`` rows and ``length`` positions, emptied (marked most recently used), or a
    new one kept from now on."""
    from transformers import StaticCache

    key = (batch, length)
    cache = caches.get(key)
    if cache is None:
        cache = caches[key] = StaticCache(config=backend.model.config, max_cache_len=length)
    else:
        caches.move_to_end(key)
        cache.reset()
    return cache


def cache_budget(device: torch.device) -> int | None:
    """The bytes the kept static caches may hold together on ``device`` (None: no limit but their number)."""
    if device.type != "cuda":
        return None
    return int(torch.cuda.get_device_properties(device).total_memory * MAX_CACHE_SHARE)


def cache_bytes(cache: Any) -> int:
    """What a static cache's allocated layers hold."""
    return sum(t.numel() * t.element_size() for layer in cache.layers
               for t in (getattr(layer, "keys", None), getattr(layer, "values", None)) if isinstance(t, torch.Tensor))


def evict(caches: "OrderedDict[tuple[int, int], Any]", budget: int | None) -> None:
    """Drop the least recently used caches while more than ``MAX_CACHES`` are kept or they hold more than ``budget``
    bytes; the most recent one (in use) stays."""
    while len(caches) > 1 and (len(caches) > MAX_CACHES
                               or (budget is not None and sum(cache_bytes(c) for c in caches.values()) > budget)):
        caches.popitem(last=False)


def _initialise(cache: Any, like: Any, batch: int) -> None:
    """Allocate the static ``cache``'s layers for ``batch`` rows, shaped like the dynamic cache ``like``."""
    for layer, source in zip(cache.layers, like.layers):
        if not getattr(layer, "is_initialized", False):
            layer.lazy_initialization(source.keys[:1].expand(batch, -1, -1, -1),
                                      source.values[:1].expand(batch, -1, -1, -1))
