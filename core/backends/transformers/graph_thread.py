"""The one thread every compiled (CUDA-graph) decode runs on.

The static-cache paths (static_decode.py's rollouts and the backend's static greedy) call transformers' `generate`,
which on CUDA compiles the decode step with torch.compile's "reduce-overhead" mode: CUDA graphs kept by a per-thread
tree manager. That state belongs to the host thread that built it. torch 2.11 asserts when another Python thread
runs such a graph (pytorch/pytorch#123177: `assert torch._C._is_key_in_tls(...)` in cudagraph_trees); later
versions give each thread its own tree manager, so every thread records the graphs again, in its own memory pool.
Requests reach the engine from many threads (LangChain's `batch` pool, asyncio executors, a server's workers, the
rollout batcher handing its turn from one request's thread to another's), so every static decode is handed to this
single long-lived thread and waited for: the graphs are recorded once and replayed by the thread that owns them.
The caller's context variables (its session, which counts the forwards) go along.

A call made from the graph thread itself runs inline; an exception raised there is raised in the caller. There is
one graph thread per device in the process (`for_device`), shared by every backend on it: two backends over one
model (say, one with batching off for bit-exact outputs beside the shared one) replay the same compiled step.
"""

from __future__ import annotations

import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

import torch

T = TypeVar("T")


class GraphThread:
    """Runs functions on one worker thread, started on first use, in the caller's context."""

    def __init__(self, name: str = "rain-graphs", device: Any = None) -> None:
        self.name = name
        self.device = device  # a CUDA device with an index becomes the worker's current device
        self._executor: ThreadPoolExecutor | None = None
        self._ident: int | None = None
        self._start_lock = threading.Lock()

    @property
    def ident(self) -> int | None:
        """The worker's thread id (None until the first call)."""
        return self._ident

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the graph thread, in a copy of the caller's context; waits for it."""
        if threading.get_ident() == self._ident:
            return fn(*args, **kwargs)
        context = contextvars.copy_context()
        return self._worker().submit(context.run, fn, *args, **kwargs).result()

    def _worker(self) -> ThreadPoolExecutor:
        with self._start_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name,
                                                    initializer=self._mark)
            return self._executor

    def _mark(self) -> None:
        self._ident = threading.get_ident()
        device = torch.device(self.device) if self.device is not None else None
        if device is not None and device.type == "cuda" and device.index is not None:
            torch.cuda.set_device(device)  # the current device is per thread; graphs are captured on it


_threads: dict[str, GraphThread] = {}
_threads_lock = threading.Lock()


def for_device(device: Any) -> GraphThread:
    """The process's graph thread for ``device`` (made on first use)."""
    key = str(device)
    with _threads_lock:
        if key not in _threads:
            _threads[key] = GraphThread(name=f"rain-graphs-{key.replace(':', '')}", device=device)
        return _threads[key]
