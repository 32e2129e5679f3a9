"""Which request the model's work belongs to: a backend's sessions, chosen per context.

Each generation runs in its own session (its counters; in process, its KV caches too). The session is carried by a
context variable, so it follows the request through threads and executors that copy the context, and calls made
outside any generation share the backend's default session. Both backends keep their sessions this way.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Generic, Iterator, TypeVar

S = TypeVar("S")


class SessionScope(Generic[S]):
    """The current session of one backend: the one set by `using`, else ``default``."""

    def __init__(self, name: str, default: S) -> None:
        self.default = default
        self._var: ContextVar[S | None] = ContextVar(name, default=None)

    @contextmanager
    def using(self, session: S) -> Iterator[S]:
        """Count (and cache) the enclosed calls in ``session``."""
        token = self._var.set(session)
        try:
            yield session
        finally:
            self._var.reset(token)

    def explicit(self) -> S | None:
        """The session set by `using`, or None outside every one."""
        return self._var.get()

    def get(self) -> S:
        return self._var.get() or self.default
