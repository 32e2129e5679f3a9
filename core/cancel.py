"""Abandoning a request: a flag the consumer of a stream sets and a backend's waits watch.

A generation runs in one worker thread; when its consumer goes away (an async stream closed early) the worker
cannot be interrupted, but whatever it waits on can be. `iterate_in_thread` sets the flag of the work it runs; a
served backend's waits check it and cancel their outstanding HTTP requests, so the server stops working on them.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar

_current: ContextVar[threading.Event | None] = ContextVar("rain_abandoned", default=None)


def watch(flag: threading.Event) -> None:
    """Make ``flag`` the abandonment flag of the work running in this context (this thread, from now on)."""
    _current.set(flag)


def abandoned() -> bool:
    """Whether the consumer of the work running here has gone away."""
    flag = _current.get()
    return flag is not None and flag.is_set()
