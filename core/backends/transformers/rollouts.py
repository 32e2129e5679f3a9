"""Sampled continuations, decoded as one batch per token, also across concurrent requests.

A rollout call (the backend's `rollouts_many`) continues one or more cached prefixes once per row until each row
ends (EOS, its length, a clause end). Every search strategy spends most of its forwards here: the reference search's
candidates and simulations, the lookahead search's complete responses, guard mode's drafts, plain greedy.

`DecodeBatch` is the decode loop as a state machine over rows: each step picks one token per row (every call's rows
with that call's own generator and guard, in row order, so a call draws exactly what it draws alone), drops the rows
that ended and runs one forward for the rest. Rows of another call can join between two steps: their prefix caches
are left-padded to the batch's length (or the batch to theirs), the padding masked out and each row given its true
position, one copy per join rather than one per step.

`RolloutBatcher` lets concurrent requests share that loop. A call that finds no decode running drives one at once,
alone (a lone request pays nothing); a call that arrives while one runs joins it at the next step, and the thread
whose rows finish hands the loop to one still waiting. On a GPU, where a forward of 16 rows costs what one costs,
concurrent requests' rollouts then take about the forwards of one; even on a 2-core CPU, 16 concurrent SmolLM2
requests ran twice as fast shared. Left-padded rows compute what they compute alone up to floating-point rounding
(a batch of another shape may pick other kernels); `TransformersBackend(..., batch_rollouts=False)` is the path
where each request computes exactly what it computes alone.

Where the backend decodes long rollouts on a static cache (static_decode.py, CUDA by default), the batcher runs
those calls in *static rounds* instead: when no dynamic batch is running, the waiting calls that fit go together
into one static decode (CUDA graphs), and calls arriving during a round wait for the next one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Sequence

import torch

from ...model import ResponseGuard, Rollout, RowSpec
from . import kv
from .batching import TakingTurns

if TYPE_CHECKING:  # the backend imports this module; these are its types
    from .backend import TransformersBackend

#: why a row ended (`Rollout.finish`)
Finish = Literal["eos", "clause", "length"]


@dataclass
class RolloutJob:
    """One rollout call: ``groups`` of (prefix ids, row specs) with each prefix's cache ``entries`` (already
    computed in the caller's session), sampled with ``generator`` under ``guard``. ``results`` fill as rows end."""

    groups: Sequence[tuple[list[int], Sequence["RowSpec"]]]
    entries: list[Any]  # the backend's _Entry (cache, next-token logits) per group
    generator: torch.Generator
    guard: "ResponseGuard | None"
    session: Any  # where the forwards are counted
    results: list["Rollout"] = field(default_factory=list)
    running: int = 0  # rows not yet ended
    static: bool = False  # whether its rows may decode on a static cache (static_decode.py)
    done: bool = False
    error: BaseException | None = None

    @property
    def rows(self) -> int:
        return sum(len(specs) for _, specs in self.groups)


@dataclass
class _Row:
    job: RolloutJob
    result: "Rollout"
    spec: "RowSpec"
    prefix: list[int]
    entry: Any
    group: int  # the prefix's index in its call


class DecodeBatch:
    """The rows of one or more rollout calls, decoding together (see the module docstring).

    State between steps: ``rows`` (in admission order; one call's rows are contiguous), ``logits`` [rows, vocab]
    for each row's next token, and the KV ``cache`` of the first ``cached`` rows (rows admitted since the last
    forward still read their prefix's own cache). ``mask`` / ``positions`` exist once rows of different lengths
    share the cache.
    """

    def __init__(self, backend: "TransformersBackend") -> None:
        self.backend = backend
        self.rows: list[_Row] = []
        self.logits: torch.Tensor | None = None
        self.cache: Any = None
        self.cached = 0
        self.mask: torch.Tensor | None = None  # [cached, cache length] (1 = real position)
        self.positions: torch.Tensor | None = None  # [cached, 1]: the position of each cached row's next token
        self.raw: torch.Tensor | None = None  # the last step's logits before any guard (what a kept entry stores)
        self.final_cache: Any = None  # the cache when the last rows ended (it holds all but their last tokens)
        self.forwards = 0
        self.merged_forwards = 0  # forwards whose rows came from more than one call

    @property
    def empty(self) -> bool:
        return not self.rows

    def admit(self, job: RolloutJob) -> None:
        """Add ``job``'s rows; they sample at the next step."""

        new: list[_Row] = []
        for group, ((ids, specs), entry) in enumerate(zip(job.groups, job.entries)):
            for spec in specs:
                result = Rollout(tokens=[], logprob=0.0, finish="length")
                job.results.append(result)
                new.append(_Row(job, result, spec, list(ids), entry, group))
        job.running = len(new)
        if not new:
            job.done = True
            return
        if len(job.entries) == 1:
            fresh = job.entries[0].logits.unsqueeze(0).expand(len(new), -1)
        else:
            fresh = torch.stack([row.entry.logits for row in new])
        self.logits = fresh if self.logits is None else torch.cat([self.logits, fresh.to(self.logits.device)])
        self.rows.extend(new)

    def step(self) -> list[RolloutJob]:
        """Pick one token per row, drop the rows that ended, run one forward for the rest. Returns the calls whose
        rows have all ended."""
        backend = self.backend
        assert self.logits is not None
        self.raw = self.logits
        chosen_all: list[int] = []
        picked_all: list[float] = []
        start = 0
        while start < len(self.rows):  # each call's rows: its own guard and generator, in row order
            job = self.rows[start].job
            stop = start
            while stop < len(self.rows) and self.rows[stop].job is job:
                stop += 1
            rows = self.rows[start:stop]
            logits = self.logits if (start, stop) == (0, len(self.rows)) else self.logits[start:stop]
            chosen, picked = pick_rows(backend, job, logits, [row.prefix + row.result.tokens for row in rows],
                                       [row.spec for row in rows])
            chosen_all += chosen.tolist()
            picked_all += picked
            start = stop
        still: list[int] = []
        finished: list[RolloutJob] = []
        for index, (row, token, logprob) in enumerate(zip(self.rows, chosen_all, picked_all)):
            result = row.result
            result.tokens.append(token)
            result.logprob += logprob
            ending = finish_of(backend, row.spec, result.tokens)
            if ending is None:
                still.append(index)
                continue
            result.finish = ending
            row.job.running -= 1
            if row.job.running == 0:
                row.job.done = True
                finished.append(row.job)
        if not still:
            self.final_cache = self.cache
            self._clear()
            return finished
        self._keep_rows(still)
        step = torch.tensor([[row.result.tokens[-1]] for row in self.rows], dtype=torch.long)
        if self.mask is not None:
            self.mask = torch.cat([self.mask, self.mask.new_ones(len(self.rows), 1)], dim=1)
        logits, self.cache = backend._decode_step(step, self.cache, self.mask, self.positions, count=False)
        self.logits = logits
        if self.positions is not None:
            self.positions = self.positions + 1
        self.cached = len(self.rows)
        self.forwards += 1
        counts: dict[int, tuple[Any, int]] = {}
        for row in self.rows:
            session, n = counts.get(id(row.job), (row.job.session, 0))
            counts[id(row.job)] = (session, n + 1)
        if len(counts) > 1:
            self.merged_forwards += 1
        for session, n in counts.values():
            backend._count(n, session)
        return finished

    def fail(self, error: BaseException) -> list[RolloutJob]:
        """End every call in the batch with ``error`` (a forward raised); the batch is empty afterwards."""
        jobs = list({id(row.job): row.job for row in self.rows}.values())
        for job in jobs:
            job.error, job.done = error, True
        self._clear()
        return jobs

    def _clear(self) -> None:
        """No rows left: drop the decode state (the counters and ``final_cache`` stay)."""
        self.rows, self.logits, self.cache, self.cached, self.mask, self.positions = [], None, None, 0, None, None

    def _keep_rows(self, still: list[int]) -> None:
        """Keep rows ``still`` (indices into ``rows``) and build the cache the next forward reads: the cached rows
        that go on, joined by the still-running rows admitted since the last forward."""
        backend = self.backend
        old = [i for i in still if i < self.cached]
        new = [i for i in still if i >= self.cached]
        cache, mask, positions = self.cache, self.mask, self.positions
        if old and len(old) < self.cached:
            keep = torch.tensor(old, device=backend.device)
            kv.select_rows(cache, keep)
            if mask is not None:
                mask, positions = mask.index_select(0, keep), positions.index_select(0, keep)
        if new:
            entries: list[Any] = []
            owners: list[int] = []
            keys: list[tuple[int, int]] = []
            for i in new:  # one entry per (call, prefix): their rows are contiguous, as _start_decode needs
                row = self.rows[i]
                key = (id(row.job), row.group)
                if not keys or keys[-1] != key:
                    keys.append(key)
                    entries.append(row.entry)
                owners.append(len(entries) - 1)
            fresh, fresh_mask, fresh_positions = backend._start_decode(entries, owners)
            if old:
                cache, mask, positions = _join(cache, mask, positions, fresh, fresh_mask, fresh_positions,
                                               backend.device)
            else:
                cache, mask, positions = fresh, fresh_mask, fresh_positions
        self.cache, self.mask, self.positions = cache, mask, positions
        self.rows = [self.rows[i] for i in still]


def _join(cache_a: Any, mask_a: torch.Tensor | None, pos_a: torch.Tensor | None, cache_b: Any,
          mask_b: torch.Tensor | None, pos_b: torch.Tensor | None, device: torch.device) -> tuple[Any, Any, Any]:
    """Two batch caches as one, the shorter left-padded; the padding masked out and every row's position kept."""
    merged = kv.merge_left_padded([cache_a, cache_b])
    if merged is None:
        raise NotImplementedError("rows of different requests in one batch need plain dynamic KV caches")
    cache, (len_a, len_b) = merged
    longest = max(len_a, len_b)
    masks, positions = [], []
    for part, mask, pos, length in ((cache_a, mask_a, pos_a, len_a), (cache_b, mask_b, pos_b, len_b)):
        rows = int(part.layers[0].keys.shape[0])
        if mask is None:
            mask = torch.ones(rows, length, dtype=torch.long, device=device)
            pos = torch.full((rows, 1), length, dtype=torch.long, device=device)
        masks.append(torch.nn.functional.pad(mask, (longest - length, 0), value=0))
        positions.append(pos)
    return cache, torch.cat(masks), torch.cat(positions)


def pick_rows(backend: "TransformersBackend", job: RolloutJob, logits: torch.Tensor, histories: list[list[int]],
              specs: "Sequence[RowSpec]") -> tuple[torch.Tensor, list[float]]:
    """One token for each of a call's running rows (``logits`` [rows, vocab], each row's ids so far in
    ``histories``): the call's guard shapes the distributions, its generator draws, in row order. Returns the
    chosen tokens (a CPU tensor) and their log-probabilities. Both decode paths pick through here (this module's
    loop and static_decode.py's processor), so a call draws the same tokens on either."""
    if job.guard is not None:
        logits = guarded(job.guard, histories, logits)
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    chosen = backend._pick(logprobs, specs, job.generator)
    return chosen, logprobs.gather(1, chosen.unsqueeze(1).to(logprobs.device)).squeeze(1).tolist()


def finish_of(backend: "TransformersBackend", spec: "RowSpec", tokens: list[int]) -> "Finish | None":
    """Why a row ends after its last token (EOS, a clause end where the row stops at one, its length), or None
    while it runs."""
    token = tokens[-1]
    if token in backend.eos_ids:
        return "eos"
    if spec.stop_at_clause and bool(backend._clause_end[token]):
        return "clause"
    if len(tokens) >= spec.max_tokens:
        return "length"
    return None


def guarded(guard: "ResponseGuard", histories: list[list[int]], logits: torch.Tensor) -> torch.Tensor:
    """``guard`` applied to rows whose histories may differ in length (the guard needs equal lengths per call)."""
    lengths = {len(h) for h in histories}
    if len(lengths) == 1:
        return guard.apply(histories, logits)
    out = logits.clone()
    for length in lengths:
        rows = [r for r, h in enumerate(histories) if len(h) == length]
        index = torch.tensor(rows, device=logits.device)
        out[index] = guard.apply([histories[r] for r in rows], logits[index])
    return out


#: the most rows one static round gathers from several calls (a power of two: the static batch sizes stay few); a
#: single call may have more. A graph step on a GPU costs about the same at 64 rows as at one (the weights are read
#: once a step), and 64 holds five of the reference search's calls (11 rows each) or sixteen requests' lookahead
#: rollouts
STATIC_ROUND_ROWS = 64


class RolloutBatcher(TakingTurns):
    """Concurrent rollout calls decode in one `DecodeBatch` (see the module docstring); the calling threads take
    turns driving it (`TakingTurns`).

    ``max_rows`` caps the rows decoding at once (memory); a call that would pass it waits for rows to end.
    """

    def __init__(self, backend: "TransformersBackend", *, max_rows: int = 256) -> None:
        super().__init__()
        self.batch = DecodeBatch(backend)
        self.max_rows = max_rows
        self.calls = 0  # rollout calls served
        self.joined = 0  # calls that joined a batch already decoding another call's rows (or a static round)
        self.static_rounds = 0  # static decodes run (static_decode.py), one or more calls each

    def accepts(self, job: RolloutJob) -> bool:
        """Whether ``job``'s caches can share a batch (plain dynamic caches; others decode alone)."""
        return all(kv.mergeable(entry.cache) for entry in job.entries)

    @property
    def merged_forwards(self) -> int:
        """Forwards that decoded rows of more than one call."""
        return self.batch.merged_forwards

    def run(self, job: RolloutJob) -> list["Rollout"]:
        """Decode ``job`` (alone, or with whatever else is decoding) and return its rollouts in row order."""
        with self._cond:
            self.calls += 1
        self._wait_for(job)
        if job.error is not None:
            raise job.error
        return job.results

    def _serve(self, own: RolloutJob) -> None:
        """Run steps until ``own`` is done (another waiting call then drives) or nothing is left to decode. When no
        dynamic batch is running, the waiting calls that fit a static decode (static_decode.py) go first, together,
        as one static round (calls arriving meanwhile wait for the next round or batch)."""
        batch, backend = self.batch, self.batch.backend
        while not own.done:
            round_jobs: list[RolloutJob] = []
            with self._cond:
                if batch.empty and backend.static_rollouts:
                    rows = 0
                    for job in list(self._pending):
                        if job.static and (not round_jobs or rows + job.rows <= STATIC_ROUND_ROWS):
                            round_jobs.append(job)
                            rows += job.rows
                            self._pending.remove(job)
                if not round_jobs:
                    rows = len(batch.rows)
                    while self._pending and (rows == 0 or rows + self._pending[0].rows <= self.max_rows):
                        job = self._pending.pop(0)
                        if rows:
                            self.joined += 1
                        rows += job.rows
                        batch.admit(job)
                    if batch.empty:
                        return
            if round_jobs:
                if backend.try_static(round_jobs):
                    self.static_rounds += 1
                    if len(round_jobs) > 1:
                        self.joined += len(round_jobs) - 1
                else:  # the static path is busy or now off: these calls decode in the dynamic batch, first in line
                    for job in round_jobs:
                        job.static = False
                    with self._cond:
                        self._pending[:0] = round_jobs
                with self._cond:
                    self._cond.notify_all()
                continue
            try:
                finished = batch.step()
            except BaseException as exc:  # noqa: BLE001 - every call in the batch gets it, raised in its own thread
                finished = batch.fail(exc)
            if finished:
                with self._cond:
                    self._cond.notify_all()
