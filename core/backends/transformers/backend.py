"""The model backend: every forward pass the search and the self-evaluator make goes through here.

It owns the KV caches. A small LRU store keeps batch-1 caches keyed by token ids; any request first takes the entry
with the longest common prefix, crops it to that prefix and runs only the remaining tokens. So the prompt is encoded
once, each committed token set only extends the root's cache, the evaluator's few-shot block is read once, and the
conversation inside an evaluation prompt is shared with the previous evaluation. Sampling of expansion candidates and
of the simulation runs as one batch, with rows dropped from the batch as they finish (rollouts.py holds that decode
loop, and the batcher that lets concurrent requests' rollouts share it).

The search reaches the model only through `LanguageModel` (the methods below), so a served model could stand in.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ContextManager, Iterator, Sequence

import torch

from ...model import ResponseGuard, Rollout, RowSpec
from ...models import LoadedModel
from ..sessions import SessionScope
from ..vocabulary import clause_end_ids, end_of_response_ids
from . import graph_thread, kv, static_decode
from .batching import StepBatcher, StepJob
from .rollouts import DecodeBatch, RolloutBatcher, RolloutJob

log = logging.getLogger(__name__)

@dataclass
class _Entry:
    cache: Any
    logits: torch.Tensor  # next-token logits after the entry's last token, shape [vocab]


class Session:
    """One generation's KV state: its own small LRU of prefix caches, read over the backend's pinned entries.

    Sessions never share mutable state: pinned entries are only read (a cache is forked before it is extended), so
    concurrent generations each compute exactly what they would alone. Counters say what this session ran.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.store: OrderedDict[tuple[int, ...], _Entry] = OrderedDict()
        self.forward_calls = 0
        self.tokens_processed = 0
        self.lock = threading.RLock()  # only contended by the default session, which callers may share


class TransformersBackend:
    """`LanguageModel` over a transformers causal LM, with prefix-shared KV caches and batched sampling.

    Work runs in the *current session* (`using`): each generation gets a fresh one (`session()`), so concurrent
    generations neither wait for nor disturb each other; calls outside any session share a default one.

    Sharing forwards between concurrent sessions, three ways:
    - ``batch_rollouts`` (default: on): concurrent rollout calls decode as one batch (rollouts.py); a call
      joins a running decode between two steps, with one cache copy per join, and a lone call runs as before.
    - ``batch_prefill`` (default: with either of the others): prefills of concurrent sessions (prefix extensions,
      the judge's rows) run as one forward through the step batcher (batching.py).
    - ``batch_steps`` (opt-in): every decode step of concurrent sessions also goes through the step batcher, merging
      the sessions' caches at each step. On an H200 at 7.4B it (with prefills) doubled a lone request's time per
      iteration (0.15 -> 0.33 s) and gave 16 concurrent requests 1.5x one request's throughput
      (docs/performance.md), so it pays only under load.
    """

    def __init__(self, loaded: LoadedModel, *, cache_entries: int = 12, batch_steps: bool | None = None,
                 batch_prefill: bool | None = None, batch_rollouts: bool | None = None,
                 static_greedy: bool | None = None, static_rollouts: bool | None = None) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.device = loaded.model.device
        self.context_window = loaded.context_window
        self.cache_entries = cache_entries
        self.lock = threading.RLock()  # guards pinning; no forward pass waits on it
        self._stats_lock = threading.Lock()  # the shared counters
        self._pinned: dict[tuple[int, ...], _Entry] = {}  # replaced (never mutated) when an entry is pinned
        self._sessions = SessionScope(f"rain_session_{id(self)}", Session(cache_entries))
        self._total_calls = 0
        self._total_tokens = 0
        self.model_calls = 0  # forwards actually run (a forward shared by several sessions counts once here)
        self.open_sessions = 0  # generations running now (for tests and monitoring)
        params = inspect.signature(self.model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self._keep_kwarg = "logits_to_keep" if "logits_to_keep" in params else None
        # whether logits_to_keep also takes a tensor of positions (else all logits are computed and indexed)
        self._keep_positions = self._keep_kwarg is not None and "Tensor" in str(params[self._keep_kwarg].annotation)
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0])  # the width of the logits
        self.eos_ids = end_of_response_ids(self.tokenizer, getattr(self.model.generation_config, "eos_token_id", None))
        self._clause_end = self._clause_end_mask()
        # Concurrent requests' rollouts decode as one batch (rollouts.py). On a GPU a forward of many rows costs
        # what one costs; on the 2-core CPU, 16 concurrent SmolLM2 requests ran twice as fast shared, 4 as fast.
        if batch_rollouts is None:
            batch_rollouts = True
        self.rollout_batcher = RolloutBatcher(self) if batch_rollouts else None
        # Every decode step through the step batcher: opt-in, measured slower for a lone request (class docstring).
        self.batch_steps = bool(batch_steps)
        # Prefills (prefix extensions, the judge's rows) of concurrent sessions share forwards through the step
        # batcher too: by default whenever requests share forwards at all.
        self.batch_prefill = (self.batch_steps or batch_rollouts) if batch_prefill is None else batch_prefill
        self.batcher = StepBatcher(self._batch_forward) if self.batch_steps or self.batch_prefill else None
        # Plain greedy decoding through transformers' static cache (compiled into CUDA graphs by `generate` on a GPU).
        self.static_greedy = self.device.type == "cuda" if static_greedy is None else static_greedy
        # Rollout calls whose rows continue one prefix and run long decode the same way (static_decode.py): alone,
        # or gathered with concurrent ones into static rounds by the rollout batcher.
        self.static_rollouts = self.device.type == "cuda" if static_rollouts is None else static_rollouts
        self._static_caches: OrderedDict[tuple[int, int], Any] = OrderedDict()  # (batch, length) -> StaticCache
        self.compile_static_everywhere = False  # tests: compile the static decode step on a CPU too
        self._static_lock = threading.Lock()  # one static decode at a time (its cache is reused)
        # every static decode runs on the device's one graph thread: CUDA graphs belong to the thread that recorded them
        self.graph_thread = graph_thread.for_device(self.device)

    @property
    def name(self) -> str:
        """The model's name (what results and reports show)."""
        return self.loaded.name

    # ----------------------------------------------------------------------------------------------- sessions
    @contextmanager
    def session(self) -> Iterator[Session]:
        """A fresh session, open for the enclosed block: every generation starts from the same cache state (the
        pinned entries), so a seeded run repeats exactly, whatever ran before it or runs beside it."""
        with self._stats_lock:
            self.open_sessions += 1
        try:
            yield Session(self.cache_entries)
        finally:
            with self._stats_lock:
                self.open_sessions -= 1

    def using(self, session: Session) -> ContextManager[Session]:
        """Run the enclosed calls (from the search, the judge, the embedder) in ``session``."""
        return self._sessions.using(session)

    def _session(self) -> Session:
        return self._sessions.get()

    @property
    def forward_calls(self) -> int:
        """Forward passes run in the current session (all sessions together outside one)."""
        current = self._sessions.explicit()
        return current.forward_calls if current is not None else self._total_calls

    @property
    def tokens_processed(self) -> int:
        """Tokens run through the model in the current session (all sessions together outside one)."""
        current = self._sessions.explicit()
        return current.tokens_processed if current is not None else self._total_tokens

    # ----------------------------------------------------------------------------------------------- text
    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def is_eos(self, token: int) -> bool:
        return token in self.eos_ids

    def _clause_end_mask(self) -> torch.Tensor:
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)
        mask[clause_end_ids(self.tokenizer, self.vocab_size)] = True
        return mask

    # -------------------------------------------------------------------------------------------- forward
    def _count(self, tokens: int, session: Session | None = None) -> None:
        """Count one forward of ``tokens`` input positions for ``session`` (default: the current one)."""
        session = session or self._session()
        session.forward_calls += 1
        session.tokens_processed += tokens
        with self._stats_lock:
            self._total_calls += 1
            self._total_tokens += tokens

    def _forward(self, input_ids: torch.Tensor, cache: Any, keep_last: bool, attention_mask: torch.Tensor | None = None,
                 position_ids: torch.Tensor | None = None, count: bool = True,
                 keep: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        """Logits (at the last position with ``keep_last``, at positions ``keep`` when given, else everywhere)."""
        kwargs: dict[str, Any] = {"input_ids": input_ids.to(self.device), "use_cache": True}
        if cache is not None:
            kwargs[self._cache_kwarg] = cache
        if keep is not None and keep.numel() == 1 and int(keep[0]) == input_ids.shape[1] - 1:
            keep, keep_last = None, True  # just the last position: the plain path
        if keep_last and self._keep_kwarg:
            kwargs[self._keep_kwarg] = 1
        elif keep is not None and self._keep_positions:
            kwargs[self._keep_kwarg] = keep.to(self.device)
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask.to(self.device)
            kwargs["position_ids"] = position_ids.to(self.device) if position_ids is not None else None
        with torch.inference_mode():
            out = self.model(**kwargs)
        with self._stats_lock:
            self.model_calls += 1
        if count:
            self._count(int(input_ids.numel()))
        new_cache = out.get("cache") if "cache" in out else out.get("past_key_values")
        logits = out.logits
        if keep_last and not self._keep_kwarg:
            logits = logits[:, -1:]
        elif keep is not None and not self._keep_positions:
            logits = logits[:, keep.to(logits.device)]
        return logits.float(), new_cache

    def _step_forward(self, input_ids: torch.Tensor, cache: Any, attention_mask: torch.Tensor | None,
                      position_ids: torch.Tensor | None) -> tuple[torch.Tensor, Any]:
        """A decode step, uncounted (`_decode_step` counts it)."""
        logits, cache = self._forward(input_ids, cache, True, attention_mask, position_ids, count=False)
        return logits[:, -1], cache

    def _batch_forward(self, input_ids: torch.Tensor, cache: Any, attention_mask: torch.Tensor | None,
                       position_ids: torch.Tensor | None, keep: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """What the step batcher runs, uncounted: the forward may serve several sessions, so each counts its own."""
        return self._forward(input_ids, cache, False, attention_mask, position_ids, count=False, keep=keep)

    def _shared_prefill(self, input_ids: torch.Tensor, cache: Any,
                        lengths: list[int] | None = None) -> tuple[torch.Tensor, Any]:
        """A prefill (rows right-padded to ``lengths``) through the batcher, shared with concurrent sessions'
        forwards; the logits after each row's last real token [rows, vocab] and the extended cache."""
        assert self.batcher is not None
        out = self.batcher.step(StepJob(input_ids.to(self.device), cache, lengths=lengths))
        self._count(int(input_ids.numel()))
        return out

    def _decode_step(self, step: torch.Tensor, cache: Any, attention_mask: torch.Tensor | None,
                     position_ids: torch.Tensor | None, count: bool = True) -> tuple[torch.Tensor, Any]:
        """One new token per row: through the step batcher when on (shared with concurrent sessions), else alone.
        ``count=False``: the caller counts (a decode batch's rows may belong to several sessions)."""
        if self.batch_steps and self.batcher is not None:
            out = self.batcher.step(StepJob(step.to(self.device), cache, attention_mask, position_ids))
        else:
            out = self._step_forward(step, cache, attention_mask, position_ids)
        if count:
            self._count(int(step.numel()))
        return out

    def _prefix(self, ids: Sequence[int]) -> _Entry:
        """The cache and next-token logits after ``ids``, reusing the longest stored prefix."""
        key = tuple(ids)
        if not key:
            raise ValueError("cannot run the model on an empty token sequence")
        session = self._session()
        store, pinned = session.store, self._pinned
        if key in store:
            store.move_to_end(key)
            return store[key]
        if key in pinned:
            return pinned[key]
        best_len, best, best_key = 0, None, None
        for source in (pinned, store):
            for other, entry in source.items():
                n = _common_prefix_len(key, other)
                if n > best_len:
                    best_len, best, best_key = n, entry, other
        if best_key is not None and best_key in store:
            store.move_to_end(best_key)
        best_len = min(best_len, len(key) - 1)  # at least one token must run to produce logits
        cache = kv.crop(best.cache, best_len) if best is not None and best_len > 0 else None
        rest = torch.tensor([key[best_len:]], dtype=torch.long)
        if self.batch_prefill and self.batcher is not None:
            last, cache = self._shared_prefill(rest, cache)
            entry = _Entry(cache=cache, logits=last[0])
        else:
            logits, cache = self._forward(rest, cache, keep_last=True)
            entry = _Entry(cache=cache, logits=logits[0, -1])
        store[key] = entry
        while len(store) > session.capacity:
            store.popitem(last=False)
        return entry

    def pin(self, ids: Sequence[int]) -> None:
        """Compute and keep the cache of ``ids`` for good (e.g. an evaluator's fixed few-shot block); every
        session reads it."""
        key = tuple(ids)
        with self.lock:
            if key in self._pinned:
                return
            with self.using(Session(1)):
                entry = self._prefix(key)
            self._pinned = {**self._pinned, key: entry}

    def reset_cache(self) -> None:
        """Drop the default session's cache entries (pinned entries stay). Every generation does, so calls made
        outside one (judging a finished answer) cost the same whatever ran before the last generation."""
        with self._sessions.default.lock:
            self._sessions.default.store.clear()

    def next_token_logprobs(self, ids: Sequence[int], guard: ResponseGuard | None = None) -> torch.Tensor:
        """Log-probabilities of the token after ``ids`` (shape [vocab]), after ``guard``'s rules when given."""
        with self._session().lock:
            logits = self._prefix(ids).logits
            if guard is not None:
                logits = guard.apply([ids], logits.unsqueeze(0))[0]
            return torch.log_softmax(logits, dim=-1)

    def top_logprobs(self, ids: Sequence[int], k: int, guard: ResponseGuard | None = None) -> list[tuple[int, float]]:
        """The seam's sparse read: the ``k`` likeliest next tokens after ``ids`` (tokens the guard masks left out)."""
        logprobs = self.next_token_logprobs(ids, guard)
        top = torch.topk(logprobs, min(k, logprobs.shape[-1]))
        return [(t, lp) for t, lp in zip(top.indices.tolist(), top.values.tolist()) if lp > float("-inf")]

    def sequence_logprobs(self, ids: Sequence[int], start: int) -> list[float]:
        """Log-probabilities of ``ids[start:]``, each given what precedes it, from scratch (no cache, no counting):
        what fluency measures read."""
        logprobs = torch.log_softmax(self.full_logits(ids)[start - 1:-1], dim=-1)
        return logprobs.gather(1, torch.tensor(list(ids[start:]), device=logprobs.device).unsqueeze(1))[:, 0].tolist()

    def full_logits(self, ids: Sequence[int]) -> torch.Tensor:
        """Logits at every position of ``ids`` computed from scratch (no cache): the reference for tests."""
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([list(ids)], device=self.device), use_cache=False)
        return out.logits[0].float()

    # ------------------------------------------------------------------------------------------ sampling
    def rollouts(self, ids: Sequence[int], rows: Sequence[RowSpec], generator: torch.Generator,
                 guard: ResponseGuard | None = None, keep: bool = False) -> list[Rollout]:
        """Continue ``ids`` once per row, all rows in one batch; each row ends on EOS, its length, or a clause end.
        ``guard`` (e.g. no repeated n-grams) shapes every step's distribution, and so the rows' log-probabilities.
        ``keep`` (one row only): store the row's cache, so continuing from its end runs one token, not the whole row
        again (guard mode drafts clause by clause this way at the cost of plain decoding)."""
        return self.rollouts_many([(ids, rows)], generator, guard, keep=keep)[0]

    def rollouts_many(self, groups: Sequence[tuple[Sequence[int], Sequence[RowSpec]]], generator: torch.Generator,
                      guard: ResponseGuard | None = None, keep: bool = False) -> list[list[Rollout]]:
        """`rollouts` for several prefixes at once: every group's rows decode together in one batch (prefixes of
        different lengths are left-padded and masked). Rows sample in order, group after group, so one group
        draws exactly what `rollouts` draws for it."""
        keep_cache = keep and len(groups) == 1 and len(groups[0][1]) == 1 and not self.batch_steps
        if not any(rows for _, rows in groups):
            return [[] for _ in groups]
        session = self._session()
        with session.lock:
            entries = [self._prefix(ids) for ids, _ in groups]
            job = RolloutJob([(list(ids), rows) for ids, rows in groups], entries, generator, guard, session)
            # long rows continuing one prefix may decode on a static cache (CUDA graphs): alone, or in the batcher
            job.static = (self.static_rollouts and not keep_cache and len(groups) == 1
                          and static_decode.fits(groups[0][1], alone=self.open_sessions <= 1))
            if self.rollout_batcher is not None and not keep_cache and self.rollout_batcher.accepts(job):
                results = self.rollout_batcher.run(job)
            elif job.static and self.try_static([job]):
                results = job.results
            else:  # alone: this call's rows are the whole batch
                batch = DecodeBatch(self)
                batch.admit(job)
                while not batch.empty:
                    batch.step()
                if keep_cache and batch.raw is not None and batch.final_cache is not None:
                    # the cache holds the prefix and every token of the row but its last
                    self._keep(list(groups[0][0]) + job.results[0].tokens[:-1],
                               _Entry(cache=batch.final_cache, logits=batch.raw[0]))
                results = job.results
            out, start = [], 0
            for _, rows in groups:
                out.append(results[start:start + len(rows)])
                start += len(rows)
            return out

    def try_static(self, jobs: Sequence[RolloutJob]) -> bool:
        """Decode ``jobs`` together on a static cache (static_decode.py, run on the graph thread: compiled CUDA
        graphs belong to one thread) and mark them done; False when that path is busy (another thread's call holds
        it) or fails (then it is switched off, with a warning, the calls' generators are restored and the dynamic
        loop serves them and every later call)."""
        if not self._static_lock.acquire(blocking=False):
            return False
        states = [job.generator.get_state() for job in jobs]
        try:
            results = self.graph_thread.run(static_decode.decode_many, self, jobs, self._static_caches)
        except Exception as exc:  # noqa: BLE001 - any failure of the optional fast path falls back
            log.warning("static-cache rollouts failed (%s: %s); using the dynamic cache", type(exc).__name__, exc)
            self.static_rollouts = False
            self._static_caches.clear()
            for job, state in zip(jobs, states):  # the dynamic loop draws what these calls would have drawn
                job.generator.set_state(state)
            return False
        finally:
            self._static_lock.release()
        for job, mine in zip(jobs, results):
            job.results, job.running, job.done = mine, 0, True
        return True

    def _keep(self, ids: Sequence[int], entry: _Entry) -> None:
        session = self._session()
        session.store[tuple(ids)] = entry
        while len(session.store) > session.capacity:
            session.store.popitem(last=False)

    def greedy(self, ids: Sequence[int], max_tokens: int) -> Rollout:
        """Greedy continuation of ``ids`` (what `rollouts` gives a ``greedy`` row). With ``static_greedy`` it runs
        through transformers' `generate` on a static KV cache, which on CUDA compiles each decode step into a CUDA
        graph (no per-layer Python launches); the cache length is rounded up to 256 positions so that prompts of
        similar length reuse one graph; it runs on the graph thread, as the static rollouts do. Anywhere that path
        fails, it is switched off and the dynamic path runs."""
        if self.static_greedy:
            try:
                return self.graph_thread.run(static_decode.greedy, self, list(ids), max_tokens,
                                             self._static_caches)
            except Exception as exc:  # noqa: BLE001 - any failure of the optional fast path falls back
                log.warning("static-cache greedy decoding failed (%s: %s); using the dynamic cache", type(exc).__name__,
                            exc)
                self.static_greedy = False
        generator = torch.Generator(device=self.device)
        return self.rollouts(ids, [RowSpec("greedy", max_tokens)], generator)[0]

    def _start_decode(self, entries: list[_Entry], owners: list[int]) -> tuple[Any, torch.Tensor | None,
                                                                              torch.Tensor | None]:
        """The batch cache for rows continuing ``entries`` (row r continues ``entries[owners[r]]``), with the
        attention mask and positions its padding needs (None when every row continues the same entry)."""
        if len(set(owners)) == 1:
            return kv.repeat(entries[owners[0]].cache, len(owners)), None, None
        counts = [owners.count(g) for g in range(len(entries))]
        used = [g for g, c in enumerate(counts) if c]
        parts = [kv.repeat(entries[g].cache, counts[g]) for g in used]
        merged = kv.merge_left_padded(parts)
        if merged is None:
            raise NotImplementedError("several prefixes in one batch need plain dynamic KV caches")
        cache, lengths = merged
        longest = max(lengths)
        mask = torch.cat([torch.cat([torch.zeros(counts[g], longest - n, dtype=torch.long),
                                     torch.ones(counts[g], n, dtype=torch.long)], dim=1)
                          for g, n in zip(used, lengths)]).to(self.device)
        positions = torch.cat([torch.full((counts[g], 1), n, dtype=torch.long) for g, n in zip(used, lengths)])
        return cache, mask, positions.to(self.device)

    def _pick(self, logprobs: torch.Tensor, rows: Sequence[RowSpec], generator: torch.Generator) -> torch.Tensor:
        """One token per row (a tensor on the logits' device; read back once per step, not once per row)."""
        picks = []
        for r, spec in enumerate(rows):
            row = logprobs[r]
            if spec.mode == "greedy":
                picks.append(torch.argmax(row).reshape(1))
            elif spec.mode == "top_k":
                values, indices = torch.topk(row, min(spec.top_k, row.shape[-1]))
                choice = torch.multinomial(torch.softmax(values, -1), 1, generator=generator)
                picks.append(indices[choice].reshape(1))
            else:
                picks.append(torch.multinomial(torch.exp(row), 1, generator=generator).reshape(1))
        return torch.cat(picks).cpu()

    # ------------------------------------------------------------------------------------------ scoring
    def last_token_logprobs(self, rows: Sequence[Sequence[int]]) -> torch.Tensor:
        """Next-token log-probabilities after each row (shape [rows, vocab]), in one batch over a shared prefix.

        The rows' longest common prefix comes from the prefix store (computed once and reused by later calls); the
        differing tails run together, right-padded, which needs no attention mask because a causal model never
        looks ahead at the padding.
        """
        with self._session().lock:
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
            if self.batch_prefill and self.batcher is not None:
                last, _ = self._shared_prefill(batch, cache, lengths=[len(t) for t in tails])
                return torch.log_softmax(last, dim=-1)
            with torch.inference_mode():
                logits, _ = self._forward(batch, cache, keep_last=False)
            last = torch.stack([logits[i, len(t) - 1] for i, t in enumerate(tails)])
            return torch.log_softmax(last, dim=-1)

    def option_logprobs(self, rows: Sequence[Sequence[int]], options: Sequence[int]) -> torch.Tensor:
        """The seam's judge read-out: log-probabilities of the ``options`` token ids after each row, [rows, options]."""
        return self.last_token_logprobs(rows)[:, list(options)]

    def mean_hidden_states(self, texts: Sequence[str]) -> torch.Tensor:
        """Mean-pooled last hidden states of ``texts``: the fallback sentence embedding when no encoder is installed."""
        with torch.inference_mode():
            vectors = []
            for text in texts:
                ids = self.encode(text) or [self.eos_ids and next(iter(self.eos_ids)) or 0]
                out = self.model(input_ids=torch.tensor([ids], device=self.device), output_hidden_states=True,
                                 use_cache=False)
                self._count(len(ids))
                vectors.append(out.hidden_states[-1][0].float().mean(0).cpu())
            return torch.stack(vectors)


def _common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
