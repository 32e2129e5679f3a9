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
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from . import kv

#: ``forward(input_ids, cache, attention_mask, position_ids) -> (last-position logits [rows, vocab], new cache)``
Forward = Callable[[torch.Tensor, Any, "torch.Tensor | None", "torch.Tensor | None"], tuple[torch.Tensor, Any]]


@dataclass
class StepJob:
    """One decode step of one generation: ``input_ids`` [rows, 1] after ``cache``.

    attention_mask: [rows, cached + 1] (1 = real position) when the cache itself holds padding, else None.
    position_ids: [rows, 1] true positions of the new tokens when the cache holds padding, else None.
    """

    input_ids: torch.Tensor
    cache: Any
    attention_mask: torch.Tensor | None = None
    position_ids: torch.Tensor | None = None
    result: tuple[torch.Tensor, Any] | None = None
    error: BaseException | None = None
    done: bool = False
    rows: int = field(init=False)

    def __post_init__(self) -> None:
        self.rows = int(self.input_ids.shape[0])


class StepBatcher:
    """Runs concurrent decode steps as one forward (see module docstring).

    ``max_rows`` caps the rows of one merged forward (memory); steps beyond it wait for the next round.
    """

    def __init__(self, forward: Forward, *, max_rows: int = 256) -> None:
        self.forward = forward
        self.max_rows = max_rows
        self._cond = threading.Condition()
        self._pending: list[StepJob] = []
        self._busy = False
        self.merged_forwards = 0  # forwards that served more than one step (for benchmarks)
        self.steps = 0

    def step(self, job: StepJob) -> tuple[torch.Tensor, Any]:
        """Run ``job`` (alone or with whatever else is waiting) and return its logits and new cache."""
        with self._cond:
            self._pending.append(job)
        while True:
            with self._cond:
                while not job.done and self._busy:
                    self._cond.wait()
                if job.done:
                    return self._outcome(job)
                self._busy = True
                batch, rows = [], 0
                while self._pending and (not batch or rows + self._pending[0].rows <= self.max_rows):
                    rows += self._pending[0].rows
                    batch.append(self._pending.pop(0))
            try:
                self._run(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    @staticmethod
    def _outcome(job: StepJob) -> tuple[torch.Tensor, Any]:
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _run(self, batch: list[StepJob]) -> None:
        self.steps += len(batch)
        try:
            merged = kv.merge_left_padded([job.cache for job in batch]) if len(batch) > 1 else None
            if merged is None:
                for job in batch:
                    job.result = self.forward(job.input_ids, job.cache, job.attention_mask, job.position_ids)
                    job.done = True
                return
            cache, lengths = merged
            self.merged_forwards += 1
            longest = max(lengths)
            masks, positions = [], []
            for job, length in zip(batch, lengths):
                device = job.input_ids.device
                mask = job.attention_mask if job.attention_mask is not None else torch.ones(
                    job.rows, length + 1, dtype=torch.long, device=device)
                masks.append(torch.nn.functional.pad(mask.long(), (longest - length, 0)))
                positions.append(job.position_ids if job.position_ids is not None else torch.full(
                    (job.rows, 1), length, dtype=torch.long, device=device))
            ids = torch.cat([job.input_ids for job in batch])
            logits, cache = self.forward(ids, cache, torch.cat(masks), torch.cat(positions))
            start = 0
            for job, length in zip(batch, lengths):
                stop = start + job.rows
                job.result = (logits[start:stop], kv.split_rows(cache, start, stop, length + 1))
                job.done = True
                start = stop
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting step, re-raised in its thread
            for job in batch:
                if not job.done:
                    job.error, job.done = exc, True
