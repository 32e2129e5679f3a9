"""`LoopProbe`: proves an awaited call leaves the asyncio event loop free, by counting the loop's ticks meanwhile."""

from __future__ import annotations

import asyncio
import time


class LoopProbe:
    """``async with LoopProbe() as probe: await call()`` then ``probe.kept_ticking()``: a ticker task sleeps
    ``period`` seconds per tick, so a loop blocked by the call would tick far less than ``elapsed / period``."""

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.ticks = 0
        self.elapsed = 0.0
        self._stop = asyncio.Event()

    async def _tick(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(self.period)
            self.ticks += 1

    async def __aenter__(self) -> "LoopProbe":
        self._task = asyncio.create_task(self._tick())
        self._start = time.perf_counter()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self._start
        self._stop.set()
        await self._task

    def kept_ticking(self, share: float = 0.3) -> bool:
        """True when the loop ticked at least ``share`` of the times it could have while the call ran."""
        return self.ticks >= self.elapsed / self.period * share
