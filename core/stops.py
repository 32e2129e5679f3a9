"""Stop strings and streamed text: where a response ends, and how much of it may be shown while it is still growing.

Both ways of generating (the RAIN search and guard mode) emit text as they go; neither may show a tail that a later
token could turn into a stop string (text a stop string covers is never returned) or a half-decoded character.
"""

from __future__ import annotations

from typing import Sequence


def stop_index(text: str, stops: Sequence[str]) -> int | None:
    """Where the first stop string in ``text`` begins, or None."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` up to its first stop string."""
    index = stop_index(text, stops)
    return text if index is None else text[:index]


def visible_text(text: str, stops: Sequence[str], final: bool) -> str:
    """The part of ``text`` (already cut at its first stop) safe to show now: all of it once the response has ended;
    while it runs, without a tail that may still grow into a stop string, and without a trailing half character."""
    if final:
        return text
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                hold = max(hold, k)
                break
    visible = text[: len(text) - hold] if hold else text
    return visible.rstrip("\ufffd")
