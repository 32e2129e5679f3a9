"""Decode steps of concurrent generations share one forward pass.

Every generation on a backend has its own KV caches (see backend.py's sessions), so threads never wait for each
other's whole search. On a GPU one forward costs about the same for 1 row as for 16, so concurrent *decode steps*
(one new token per row, the bulk of the search's forwards) are worth running together: `StepBatcher` collects the
steps that arrive while a forward is running and runs them next as one batch. Nothing waits on a timer: a step that
finds the model idle runs at once, alone; a step that finds it busy joins the next batch.

Rows of different requests have caches of different lengths. They are left-padded to the longest and the padding is
masked out, with each row's true position passed to the rotary embedding; the rows then compute what they would
alone, up to floating-point rounding (a batch of other shapes may pick other kernels). That is why the batcher is on
by default only on CUDA, where the gain is large; on CPU, threads already run their forwards in parallel.

Prefills (a prefix extension, the judge's rows: several tokens per row) can join the same forwards
(``backend.batch_prefill``): their rows are right-padded to the widest, which a causal model never looks ahead at,
and each row's logits are read at its last real token. A merged forward that fails (a model that cannot take one)
switches merging off and the steps run one by one.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from . import kv

log = logging.getLogger(__name__)

#: ``forward(input_ids, cache, attention_mask, position_ids, keep) -> (logits [rows, len(keep), vocab], new cache)``:
#: the logits at the input positions ``keep`` (one index tensor for every row).
Forward = Callable[[torch.Tensor, Any, "torch.Tensor | None", "torch.Tensor | None", torch.Tensor],
                   tuple[torch.Tensor, Any]]


@dataclass
class StepJob:
    """One forward of one generation: ``input_ids`` [rows, width] after ``cache`` (None: from scratch). A decode
    step has width 1; a prefill (a prefix extension, the judge's rows) is wider, its rows right-padded to the width
    with ``lengths`` giving each row's real tokens. The result is the logits after each row's last real token
    [rows, vocab] and the cache extended by the whole width.

    attention_mask: [rows, cached + width] (1 = real position) when the cache itself holds padding, else None.
    position_ids: [rows, width] true positions of the new tokens when the cache holds padding, else None.
    """

    input_ids: torch.Tensor
    cache: Any
    attention_mask: torch.Tensor | None = None
    position_ids: torch.Tensor | None = None
    lengths: list[int] | None = None  # real tokens per row when rows are right-padded (else every row is full)
    result: tuple[torch.Tensor, Any] | None = None
    error: BaseException | None = None
    done: bool = False
    rows: int = field(init=False)

    def __post_init__(self) -> None:
        self.rows = int(self.input_ids.shape[0])


class TakingTurns:
    """Concurrent callers whose work is served in batches by whichever of them finds nobody serving.

    A caller queues its job and waits; when no one is serving and its job is not done yet, it serves (`_serve`:
    subclasses take what is pending and run it) and then hands over, waking the others. No timer: work that finds
    nobody serving runs at once; work that arrives meanwhile is served next. Jobs need a ``done`` flag.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: list[Any] = []
        self._busy = False

    def _wait_for(self, job: Any) -> None:
        """Queue ``job`` and return once it is done, serving whenever nobody else is."""
        with self._cond:
            self._pending.append(job)
        while True:
            with self._cond:
                while not job.done and self._busy:
                    self._cond.wait()
                if job.done:
                    return
                self._busy = True
            try:
                self._serve(job)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _serve(self, own: Any) -> None:
        raise NotImplementedError


class StepBatcher(TakingTurns):
    """Runs concurrent decode steps as one forward (see module docstring).

    ``max_rows`` caps the rows of one merged forward (memory); steps beyond it wait for the next round.
    """

    def __init__(self, forward: Forward, *, max_rows: int = 256) -> None:
        super().__init__()
        self.forward = forward
        self.max_rows = max_rows
        self.merging = True  # switched off for good if a merged forward ever fails
        self.merged_forwards = 0  # forwards that served more than one step (for benchmarks)
        self.steps = 0

    def step(self, job: StepJob) -> tuple[torch.Tensor, Any]:
        """Run ``job`` (alone or with whatever else is waiting) and return its logits and new cache."""
        self._wait_for(job)
        return self._outcome(job)

    def _serve(self, own: StepJob) -> None:
        """One forward (merged when it can be) for the steps waiting now, ``own`` first in line or among them."""
        with self._cond:
            batch, rows = [], 0
            while self._pending and (not batch or rows + self._pending[0].rows <= self.max_rows):
                rows += self._pending[0].rows
                batch.append(self._pending.pop(0))
        self._run(batch)

    @staticmethod
    def _outcome(job: StepJob) -> tuple[torch.Tensor, Any]:
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _run(self, batch: list[StepJob]) -> None:
        self.steps += len(batch)
        if len(batch) > 1 and self.merging:
            try:
                if self._run_merged(batch):
                    return
            except Exception as exc:  # noqa: BLE001 - a model that cannot take a merged batch still runs, unmerged
                log.warning("merged forward failed (%s: %s); running concurrent steps one by one from now on",
                            type(exc).__name__, exc)
                self.merging = False
        try:
            for job in batch:
                if not job.done:
                    lasts = _last_positions(job)
                    keep = sorted(set(lasts))
                    # ``keep`` stays on the CPU: the forward moves it only when it needs positions (no copy per step)
                    logits, cache = self.forward(job.input_ids, job.cache, job.attention_mask, job.position_ids,
                                                 torch.tensor(keep))
                    job.result = (_at(logits, lasts, keep), cache)
                    job.done = True
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting step, re-raised in its thread
            for job in batch:
                if not job.done:
                    job.error, job.done = exc, True

    def _run_merged(self, batch: list[StepJob]) -> bool:
        """Run ``batch`` as one forward; False when its caches cannot be merged (then nothing ran)."""
        merged = _merge(batch)
        if merged is None:
            return False
        ids, cache, mask, positions, lengths, longest = merged
        self.merged_forwards += 1
        lasts = [p for job in batch for p in _last_positions(job)]
        keep = sorted(set(lasts))
        logits, cache = self.forward(ids, cache, mask, positions, torch.tensor(keep))
        picked = _at(logits, lasts, keep)
        start = 0
        for job, length in zip(batch, lengths):
            stop = start + job.rows
            width = int(job.input_ids.shape[1])
            job.result = (picked[start:stop], None if cache is None else
                          kv.split_rows(cache, start, stop, length + width, first=longest - length))
            job.done = True
            start = stop
        return True


def _last_positions(job: StepJob) -> list[int]:
    """Index of each row's last real token within the job's input."""
    width = int(job.input_ids.shape[1])
    return [n - 1 for n in (job.lengths if job.lengths is not None else [width] * job.rows)]


def _at(logits: torch.Tensor, lasts: list[int], keep: list[int]) -> torch.Tensor:
    """Row r's logits at input position ``lasts[r]``, from logits kept at the positions ``keep`` [rows, keep, vocab]."""
    if len(keep) == 1:
        return logits[:, 0]
    index = torch.tensor([keep.index(p) for p in lasts], device=logits.device)
    return logits[torch.arange(len(lasts), device=logits.device), index]


def _merge(batch: list[StepJob]) -> tuple[torch.Tensor, Any, torch.Tensor, torch.Tensor, list[int], int] | None:
    """One input for ``batch``: caches left-padded to the longest, inputs right-padded to the widest (a causal
    model never looks ahead, so trailing padding changes no real position), the left padding masked out and every
    token given its true position. None when the caches cannot be padded (the jobs then run one by one)."""
    caches = [job.cache for job in batch]
    present = [c for c in caches if c is not None]
    if present:
        caches = [c if c is not None else kv.empty_rows(present[0], job.rows) for c, job in zip(caches, batch)]
        merged = kv.merge_left_padded(caches)
        if merged is None:
            return None
        cache, lengths = merged
    else:
        cache, lengths = None, [0] * len(batch)
    longest = max(lengths)
    width = max(int(job.input_ids.shape[1]) for job in batch)
    ids, masks, positions = [], [], []
    for job, length in zip(batch, lengths):
        device = job.input_ids.device
        own = int(job.input_ids.shape[1])
        ids.append(torch.nn.functional.pad(job.input_ids, (0, width - own)))
        mask = job.attention_mask.long() if job.attention_mask is not None else torch.ones(
            job.rows, length + own, dtype=torch.long, device=device)
        mask = torch.nn.functional.pad(mask, (longest - length, 0), value=0)
        masks.append(torch.nn.functional.pad(mask, (0, width - own), value=1))
        pos = job.position_ids if job.position_ids is not None else (
            length + torch.arange(own, device=device)).expand(job.rows, own)
        extra = pos[:, -1:] + torch.arange(1, width - own + 1, device=device)
        positions.append(torch.cat([pos, extra], dim=1))
    return torch.cat(ids), cache, torch.cat(masks), torch.cat(positions), lengths, longest
