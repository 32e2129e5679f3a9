"""A blocking generation handed to an asyncio event loop: how both integrations' async streaming paths run
`Rain.run` without blocking the loop."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import AsyncIterator, Callable, Iterator, TypeVar

from .. import cancel

T = TypeVar("T")


async def iterate_in_thread(make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """Run the iterator ``make()`` returns entirely in one worker thread and hand its items to the event loop
    through a queue. The loop never waits on the model, the iterator stays in one thread, and a
    consumer that stops early makes the worker close the iterator at its next item."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    cancelled = threading.Event()
    done = object()

    def work() -> None:
        cancel.watch(cancelled)  # a backend waiting on a server gives up (and cancels its requests) once it is set
        try:
            items = make()
            try:
                for item in items:
                    loop.call_soon_threadsafe(queue.put_nowait, item)
                    if cancelled.is_set():
                        break
            finally:
                close = getattr(items, "close", None)
                if close is not None:
                    close()
            loop.call_soon_threadsafe(queue.put_nowait, done)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            loop.call_soon_threadsafe(queue.put_nowait, exc)

    # its own context: the abandonment flag set inside must not outlive this stream in the pooled worker thread
    worker = loop.run_in_executor(None, contextvars.copy_context().run, work)
    try:
        while (item := await queue.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancelled.set()
        await asyncio.shield(worker)
