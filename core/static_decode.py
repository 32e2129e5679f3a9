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
plain layers; rows run as a power-of-two batch, so a search compiles a few graphs, not one per width. Anything
else, or any failure (the backend then switches the path off with a warning and restores the call's generator),
uses the dynamic path. Off by default on a CPU, where there are no graphs to gain; tests turn it on there to hold
it to the dynamic path's tokens.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Literal, Sequence

import torch

from .rollouts import guarded

if TYPE_CHECKING:
    from .backend import Rollout, RowSpec, TransformersBackend
    from .rollouts import RolloutJob

#: static caches are allocated in multiples of this many positions, so calls of similar length reuse one graph
CACHE_BUCKET = 256


#: static caches kept for reuse (the least recently used beyond this are dropped: at 7.4B a 16-row, 1,024-position
#: cache holds 2 GB)
MAX_CACHES = 4

#: calls whose rows may run this many tokens or more take this path (a prefill per row is worth it only then)
MIN_TOKENS = 8


def fits(rows: "Sequence[RowSpec]") -> bool:
    """Whether a call of ``rows`` (all continuing one prefix) is worth a static decode: its rows run long (complete
    responses: the lookahead search, guard mode's replacements), not one token or one clause (the reference
    search's candidates and simulations, which continue the session's cached prefix more cheaply)."""
    return bool(rows) and max(r.max_tokens for r in rows) >= MIN_TOKENS and not any(r.stop_at_clause for r in rows)


def row_bucket(rows: int) -> int:
    """The batch a call of ``rows`` rows runs as: the next power of two, so that a search whose calls vary in width
    compiles a handful of graphs, not one per width (the extra rows are idle from the start)."""
    return 1 << max(0, rows - 1).bit_length()


class _Picker:
    """The sampling of one rollout call inside `generate`: picks each running row's token with the call's
    generator, records it, and tells `generate` which rows have ended."""

    def __init__(self, backend: "TransformersBackend", job: "RolloutJob", prefix_len: int) -> None:
        from .backend import Rollout

        self.backend = backend
        self.job = job
        self.prefix_len = prefix_len
        self.specs = [spec for _, specs in job.groups for spec in specs]
        self.results: list[Rollout] = [Rollout(tokens=[], logprob=0.0, finish="length") for _ in self.specs]
        self.running = list(range(len(self.specs)))
        self.prefix = list(job.groups[0][0])
        self.expected: torch.Tensor | None = job.entries[0].logits  # what the first step must see (then None)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """The logits processor: a one-hot score per row (the picked token; ended rows get any, generate pads)."""
        backend, job = self.backend, self.job
        if self.expected is not None:  # the copied prefix reads as the session's: the same next-token logits
            expected, self.expected = self.expected.float(), None
            got = scores[0].float().to(expected.device)
            if float((got - expected).abs().max()) > 0.1 * (float(expected.abs().max()) + 1.0):
                raise RuntimeError("the static cache's first logits differ from the cached prefix's")
        active = self.running
        logits = scores[active] if len(active) < scores.shape[0] else scores
        if job.guard is not None:
            logits = guarded(job.guard, [self.prefix + self.results[i].tokens for i in active], logits)
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        chosen = backend._pick(logprobs, [self.specs[i] for i in active], job.generator)
        picked = logprobs.gather(1, chosen.unsqueeze(1).to(logprobs.device)).squeeze(1).tolist()
        still: list[int] = []
        for pos, (i, token) in enumerate(zip(active, chosen.tolist())):
            result = self.results[i]
            result.tokens.append(token)
            result.logprob += picked[pos]
            finish: Literal["eos", "clause", "length"] | None = None
            if token in backend.eos_ids:
                finish = "eos"
            elif self.specs[i].stop_at_clause and bool(backend._clause_end[token]):
                finish = "clause"
            elif len(result.tokens) >= self.specs[i].max_tokens:
                finish = "length"
            if finish is None:
                still.append(i)
            else:
                result.finish = finish
        out = torch.full_like(scores, float("-inf"))  # idle rows (ended, or padding to the bucket) take token 0
        rows = torch.tensor(active, device=scores.device)
        out[rows, chosen.to(scores.device)] = 0.0
        self.running = still
        return out

    def ended(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """The stopping criterion: True for every row that has ended (generate pads it from then on)."""
        done = torch.ones(input_ids.shape[0], dtype=torch.bool)
        done[self.running] = False
        return done.to(input_ids.device)


def fill(cache: Any, prefix: Any, length: int, batch: int) -> None:
    """Copy the first ``length`` positions of the batch-1 dynamic cache ``prefix`` into every row of the static
    ``cache``, so `generate` runs only what follows (it reads the cache's length to know where to start)."""
    from transformers.cache_utils import StaticLayer

    if len(cache.layers) != len(prefix.layers) or any(type(layer) is not StaticLayer for layer in cache.layers):
        raise NotImplementedError("only plain static layers can start from a copied prefix")
    for layer, source in zip(cache.layers, prefix.layers):
        keys = source.keys[..., :length, :].expand(batch, -1, -1, -1)
        values = source.values[..., :length, :].expand(batch, -1, -1, -1)
        if not getattr(layer, "is_initialized", False):
            layer.lazy_initialization(keys, values)
        layer.keys[:, :, :length].copy_(keys)
        layer.values[:, :, :length].copy_(values)
        if isinstance(getattr(layer, "cumulative_length", None), torch.Tensor):
            layer.cumulative_length.fill_(length)  # in place: a compiled step reads it at a static address
        else:
            layer.cumulative_length = length


def decode(backend: "TransformersBackend", job: "RolloutJob", caches: "OrderedDict[tuple[int, int], Any]"
           ) -> list["Rollout"]:
    """``job``'s rollouts, decoded by `generate` on a static cache taken from ``caches`` (reused across calls of
    the same row and length buckets, so a compiled step keeps its static addresses). Counts its forwards in the
    job's session: the prefix's last token for every row of the bucket (the rest is copied from the session's
    cached prefix, ``job.entries[0]``), then one step per token after the first (the running rows' tokens, as the
    dynamic path counts them)."""
    from transformers import GenerationConfig, LogitsProcessorList, StaticCache, StoppingCriteria, StoppingCriteriaList

    ids = list(job.groups[0][0])
    rows = len(job.groups[0][1])
    batch = row_bucket(rows)
    longest = max(spec.max_tokens for spec in job.groups[0][1])
    length = -(-(len(ids) + longest) // CACHE_BUCKET) * CACHE_BUCKET
    picker = _Picker(backend, job, len(ids))

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
            return picker.ended(input_ids, scores)  # type: ignore[return-value]

    pad = backend.tokenizer.pad_token_id if backend.tokenizer.pad_token_id is not None else 0
    config = GenerationConfig(max_new_tokens=longest, do_sample=False, num_beams=1, eos_token_id=None,
                              pad_token_id=pad, repetition_penalty=1.0, no_repeat_ngram_size=0)
    if backend.compile_static_everywhere:  # tests: compile on a CPU too, as generate does on CUDA by itself
        from transformers import CompileConfig

        config.compile_config = CompileConfig()
        config.compile_config._compile_all_devices = True
    key = (batch, length)
    with torch.inference_mode():
        cache = caches.get(key)
        if cache is None:
            cache = caches[key] = StaticCache(config=backend.model.config, max_cache_len=length)
            while len(caches) > MAX_CACHES:
                caches.popitem(last=False)
        else:
            caches.move_to_end(key)
            cache.reset()
        fill(cache, job.entries[0].cache, len(ids) - 1, batch)
        inputs = torch.tensor([ids] * batch, device=backend.device)
        # the mask generate would make itself (no padding); given, so that it does not guess from the pad token
        out = backend.model.generate(inputs, attention_mask=torch.ones_like(inputs), generation_config=config,
                               logits_processor=LogitsProcessorList([picker]),
                               stopping_criteria=StoppingCriteriaList([_Stop()]),
                               **{backend._cache_kwarg: cache})
    fed = out[:len(picker.results), len(ids):].tolist()
    for row, result in zip(fed, picker.results):  # the model read what was picked (no other processor intervened)
        if row[:len(result.tokens)] != result.tokens:
            raise RuntimeError("generate decoded other tokens than the ones picked")
    steps = max(len(r.tokens) for r in picker.results)
    with backend._stats_lock:
        backend.model_calls += steps
    backend._count(batch, job.session)  # the prefix's last token, per row (the rest came from the session's cache)
    for step in range(1, steps):
        backend._count(sum(len(r.tokens) > step for r in picker.results), job.session)
    return picker.results
