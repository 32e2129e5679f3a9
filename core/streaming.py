"""Streaming helpers the framework integrations share: a generation's pieces followed by its result, and any such
blocking stream handed to an asyncio event loop from one worker thread."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, AsyncIterator, Callable, Iterator, TypeVar

from .config import RainConfig
from .engine import Rain
from .results import GenerationResult

T = TypeVar("T")


def pieces_then_result(rain: Rain, prompt: Any, config: RainConfig,
                       prompt_format: str) -> Iterator[str | GenerationResult]:
    """Committed text pieces, then the final `GenerationResult` (when the stream ran to its end). It holds the model
    lock throughout, so consume it in one thread; closing it early closes the search and releases the lock."""
    results: list[GenerationResult] = []
    with rain.lock:
        pieces = rain.stream(prompt, on_result=results.append, prompt_format=prompt_format, **config.to_dict())
        try:
            yield from pieces
        finally:
            pieces.close()
    yield from results


async def iterate_in_thread(make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """Run the iterator ``make()`` returns entirely in one worker thread and hand its items to the event loop
    through a queue. The loop never waits on the model, the iterator's thread-bound lock stays in one thread, and a
    consumer that stops early makes the worker close the iterator at its next item."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    cancelled = threading.Event()
    done = object()

    def work() -> None:
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

    worker = loop.run_in_executor(None, work)
    try:
        while (item := await queue.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancelled.set()
        await asyncio.shield(worker)
