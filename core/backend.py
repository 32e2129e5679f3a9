"""The model backend: every forward pass the search and the self-evaluator make goes through here.

It owns the KV caches. A small LRU store keeps batch-1 caches keyed by token ids; any request first takes the entry
with the longest common prefix, crops it to that prefix and runs only the remaining tokens. So the prompt is encoded
once, each committed token set only extends the root's cache, the evaluator's few-shot block is read once, and the
conversation inside an evaluation prompt is shared with the previous evaluation. Sampling of expansion candidates and
of the simulation runs as one batch, with rows dropped from the batch as they finish.

The search reaches the model only through `LanguageModel` (the methods below), so a served model could stand in.
"""

from __future__ import annotations

import inspect
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Sequence

import torch

from . import kv
from .config import CLAUSE_END_CHARS
from .models import LoadedModel

SampleMode = Literal["greedy", "top_k", "full"]

_END_OF_TURN_TOKENS = ("<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end|>", "</s>", "<end_of_turn>", "<|eos|>")


@dataclass(frozen=True)
class RowSpec:
    """One row of a batched sampling call.

    mode: ``greedy`` (argmax), ``top_k`` (sample among the ``top_k`` most likely) or ``full`` (temperature-1 sampling).
    max_tokens: row length limit. stop_at_clause: also stop once the row's last token ends a clause.
    """

    mode: SampleMode
    max_tokens: int
    stop_at_clause: bool = False
    top_k: int = 0


@dataclass(frozen=True)
class ResponseGuard:
    """Logits processors applied to every next-token distribution of the response (e.g. a no-repeat n-gram rule).

    start: where the response begins in the ids the backend is given; processors see only the response's tokens,
    so a rule like "no repeated 3-gram" ignores the prompt (a tool schema or a review prefix may repeat freely).
    """

    processors: Any  # transformers.LogitsProcessorList
    start: int

    @classmethod
    def no_repeat_ngrams(cls, size: int, start: int) -> "ResponseGuard | None":
        """A guard banning repeated ``size``-grams in the response, or None when ``size`` is 0 (off)."""
        if size <= 0:
            return None
        from transformers import LogitsProcessorList, NoRepeatNGramLogitsProcessor

        return cls(LogitsProcessorList([NoRepeatNGramLogitsProcessor(size)]), start)

    def apply(self, histories: Sequence[Sequence[int]], logits: torch.Tensor) -> torch.Tensor:
        """Processed ``logits`` (one row per history; every history has the same length)."""
        responses = torch.tensor([list(h[self.start:]) for h in histories], dtype=torch.long)
        if responses.shape[1] == 0:
            return logits
        return self.processors(responses.to(logits.device), logits.clone())


@dataclass
class Rollout:
    """Tokens one row produced, their joint log-probability under the model, and why the row ended."""

    tokens: list[int]
    logprob: float
    finish: Literal["eos", "clause", "length"]


class LanguageModel(Protocol):
    """What the search and the self-evaluator need from a model: the seam a new backend (a batching GPU scheduler,
    a served model) implements without touching the search. `TransformersBackend` is the implementation; the
    unit tests drive the search through a scripted fake (tests/fake_model.py).

    Counters: ``forward_calls`` and ``tokens_processed`` count every forward pass and input position, judging
    included (what `rain bench` and the equal-compute comparisons read).
    """

    tokenizer: Any
    forward_calls: int
    tokens_processed: int

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` without special tokens."""
        ...

    def is_eos(self, token: int) -> bool:
        """Whether ``token`` ends the response (end of text or end of turn)."""
        ...

    def next_token_logprobs(self, ids: Sequence[int], guard: ResponseGuard | None = None) -> torch.Tensor:
        """Log-probabilities of the token after ``ids``, shape [vocab]."""
        ...

    def rollouts(self, ids: Sequence[int], rows: Sequence[RowSpec], generator: torch.Generator,
                 guard: ResponseGuard | None = None) -> list[Rollout]:
        """Continue ``ids`` once per row (one batch); each row ends on EOS, its length or (if asked) a clause end."""
        ...

    def last_token_logprobs(self, rows: Sequence[Sequence[int]]) -> torch.Tensor:
        """Next-token log-probabilities after each row, shape [rows, vocab] (the judge's option read-out)."""
        ...


@dataclass
class _Entry:
    cache: Any
    logits: torch.Tensor  # next-token logits after the entry's last token, shape [vocab]


class TransformersBackend:
    """`LanguageModel` over a transformers causal LM, with prefix-shared KV caches and batched sampling."""

    def __init__(self, loaded: LoadedModel, *, cache_entries: int = 12) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.device = loaded.model.device
        self.context_window = loaded.context_window
        self.cache_entries = cache_entries
        self.forward_calls = 0
        self.tokens_processed = 0
        self.lock = threading.RLock()
        self._store: OrderedDict[tuple[int, ...], _Entry] = OrderedDict()
        self._pinned: set[tuple[int, ...]] = set()
        params = inspect.signature(self.model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self._keep_kwarg = "logits_to_keep" if "logits_to_keep" in params else None
        self.eos_ids = self._find_eos_ids()
        self._clause_end = self._clause_end_mask()

    # ----------------------------------------------------------------------------------------------- text
    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def is_eos(self, token: int) -> bool:
        return token in self.eos_ids

    def _find_eos_ids(self) -> set[int]:
        ids: set[int] = set()
        for source in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if isinstance(source, int):
                ids.add(source)
            elif isinstance(source, (list, tuple)):
                ids.update(int(x) for x in source)
        vocab = self.tokenizer.get_vocab()
        ids.update(vocab[t] for t in _END_OF_TURN_TOKENS if t in vocab)
        return ids

    def _clause_end_mask(self) -> torch.Tensor:
        size = self.model.get_output_embeddings().weight.shape[0]
        texts = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
        mask = torch.zeros(size, dtype=torch.bool)
        for i, text in enumerate(texts[:size]):
            if text and text[-1] in CLAUSE_END_CHARS:
                mask[i] = True
        return mask

    # -------------------------------------------------------------------------------------------- forward
    def _forward(self, input_ids: torch.Tensor, cache: Any, keep_last: bool) -> tuple[torch.Tensor, Any]:
        kwargs: dict[str, Any] = {"input_ids": input_ids.to(self.device), "use_cache": True}
        if cache is not None:
            kwargs[self._cache_kwarg] = cache
        if keep_last and self._keep_kwarg:
            kwargs[self._keep_kwarg] = 1
        with torch.inference_mode():
            out = self.model(**kwargs)
        self.forward_calls += 1
        self.tokens_processed += int(input_ids.numel())
        new_cache = out.get("cache") if "cache" in out else out.get("past_key_values")
        return out.logits.float(), new_cache

    def _prefix(self, ids: Sequence[int]) -> _Entry:
        """The cache and next-token logits after ``ids``, reusing the longest stored prefix."""
        key = tuple(ids)
        if not key:
            raise ValueError("cannot run the model on an empty token sequence")
        if key in self._store:
            self._store.move_to_end(key)
            return self._store[key]
        best_len, best, best_key = 0, None, None
        for other, entry in self._store.items():
            n = _common_prefix_len(key, other)
            if n > best_len:
                best_len, best, best_key = n, entry, other
        if best_key is not None:
            self._store.move_to_end(best_key)
        best_len = min(best_len, len(key) - 1)  # at least one token must run to produce logits
        cache = kv.crop(best.cache, best_len) if best is not None and best_len > 0 else None
        rest = torch.tensor([key[best_len:]], dtype=torch.long)
        logits, cache = self._forward(rest, cache, keep_last=True)
        entry = _Entry(cache=cache, logits=logits[0, -1])
        self._store[key] = entry
        evictable = [k for k in self._store if k not in self._pinned]
        for old in evictable[: max(0, len(self._store) - self.cache_entries - len(self._pinned))]:
            del self._store[old]
        return entry

    def pin(self, ids: Sequence[int]) -> None:
        """Compute and keep the cache of ``ids`` for good (e.g. an evaluator's fixed few-shot block)."""
        with self.lock:
            self._pinned.add(tuple(ids))
            self._prefix(ids)

    def reset_cache(self) -> None:
        """Drop every unpinned cache entry. Each generation starts from the same cache state, so a seeded run
        repeats exactly whatever ran before it in the process."""
        with self.lock:
            for key in [k for k in self._store if k not in self._pinned]:
                del self._store[key]

    def next_token_logprobs(self, ids: Sequence[int], guard: ResponseGuard | None = None) -> torch.Tensor:
        """Log-probabilities of the token after ``ids`` (shape [vocab]), after ``guard``'s rules when given."""
        with self.lock:
            logits = self._prefix(ids).logits
            if guard is not None:
                logits = guard.apply([ids], logits.unsqueeze(0))[0]
            return torch.log_softmax(logits, dim=-1)

    def full_logits(self, ids: Sequence[int]) -> torch.Tensor:
        """Logits at every position of ``ids`` computed from scratch (no cache): the reference for tests."""
        with self.lock, torch.inference_mode():
            out = self.model(input_ids=torch.tensor([list(ids)], device=self.device), use_cache=False)
        return out.logits[0].float()

    # ------------------------------------------------------------------------------------------ sampling
    def rollouts(self, ids: Sequence[int], rows: Sequence[RowSpec], generator: torch.Generator,
                 guard: ResponseGuard | None = None) -> list[Rollout]:
        """Continue ``ids`` once per row, all rows in one batch; each row ends on EOS, its length, or a clause end.
        ``guard`` (e.g. no repeated n-grams) shapes every step's distribution, and so the rows' log-probabilities."""
        with self.lock:
            entry = self._prefix(ids)
            n = len(rows)
            results = [Rollout(tokens=[], logprob=0.0, finish="length") for _ in rows]
            active = list(range(n))
            logits = entry.logits.unsqueeze(0).expand(n, -1)
            cache = None
            while True:
                if guard is not None:
                    logits = guard.apply([list(ids) + results[i].tokens for i in active], logits)
                logprobs = torch.log_softmax(logits, dim=-1)
                chosen = self._pick(logprobs, [rows[i] for i in active], generator)
                still: list[int] = []
                keep_rows: list[int] = []
                for pos, i in enumerate(active):
                    token = int(chosen[pos])
                    result = results[i]
                    result.tokens.append(token)
                    result.logprob += float(logprobs[pos, token])
                    if token in self.eos_ids:
                        result.finish = "eos"
                    elif rows[i].stop_at_clause and bool(self._clause_end[token]):
                        result.finish = "clause"
                    elif len(result.tokens) >= rows[i].max_tokens:
                        result.finish = "length"
                    else:
                        still.append(i)
                        keep_rows.append(pos)
                        continue
                if not still:
                    return results
                if cache is None:
                    cache = kv.repeat(entry.cache, len(still))
                elif len(keep_rows) < len(active):
                    kv.select_rows(cache, torch.tensor(keep_rows, device=self.device))
                active = still
                step = torch.tensor([[results[i].tokens[-1]] for i in active], dtype=torch.long)
                out, cache = self._forward(step, cache, keep_last=True)
                logits = out[:, -1]

    def _pick(self, logprobs: torch.Tensor, rows: Sequence[RowSpec], generator: torch.Generator) -> torch.Tensor:
        picks = torch.empty(len(rows), dtype=torch.long)
        for r, spec in enumerate(rows):
            row = logprobs[r]
            if spec.mode == "greedy":
                picks[r] = int(torch.argmax(row))
            elif spec.mode == "top_k":
                values, indices = torch.topk(row, min(spec.top_k, row.shape[-1]))
                choice = torch.multinomial(torch.softmax(values, -1), 1, generator=generator)
                picks[r] = int(indices[choice])
            else:
                picks[r] = int(torch.multinomial(torch.exp(row), 1, generator=generator))
        return picks

    # ------------------------------------------------------------------------------------------ scoring
    def last_token_logprobs(self, rows: Sequence[Sequence[int]]) -> torch.Tensor:
        """Next-token log-probabilities after each row (shape [rows, vocab]), in one batch over a shared prefix.

        The rows' longest common prefix comes from the prefix store (computed once and reused by later calls); the
        differing tails run together, right-padded, which needs no attention mask because a causal model never
        looks ahead at the padding.
        """
        with self.lock:
            rows = [list(r) for r in rows]
            common = rows[0]
            for r in rows[1:]:
                common = common[: _common_prefix_len(common, r)]
            shared = min(len(common), min(len(r) for r in rows) - 1)
            if len(rows) == 1 or shared == 0:
                return torch.stack([torch.log_softmax(self._prefix(r).logits, -1) for r in rows])
            entry = self._prefix(rows[0][:shared])
            tails = [r[shared:] for r in rows]
            width = max(len(t) for t in tails)
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
            batch = torch.tensor([t + [pad] * (width - len(t)) for t in tails], dtype=torch.long)
            cache = kv.repeat(entry.cache, len(rows))
            with torch.inference_mode():
                logits, _ = self._forward(batch, cache, keep_last=False)
            last = torch.stack([logits[i, len(t) - 1] for i, t in enumerate(tails)])
            return torch.log_softmax(last, dim=-1)

    def mean_hidden_states(self, texts: Sequence[str]) -> torch.Tensor:
        """Mean-pooled last hidden states of ``texts``: the fallback sentence embedding when no encoder is installed."""
        with self.lock, torch.inference_mode():
            vectors = []
            for text in texts:
                ids = self.encode(text) or [self.eos_ids and next(iter(self.eos_ids)) or 0]
                out = self.model(input_ids=torch.tensor([ids], device=self.device), output_hidden_states=True,
                                 use_cache=False)
                self.forward_calls += 1
                self.tokens_processed += len(ids)
                vectors.append(out.hidden_states[-1][0].float().mean(0).cpu())
            return torch.stack(vectors)


def _common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
