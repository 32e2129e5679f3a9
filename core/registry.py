"""Process-wide registries: one loaded model (and its backend) per model spec, shared by every `Rain`.

Loading SmolLM2 takes a second and its KV caches, pinned judge prefix and lock belong to the loaded weights, so
every engine and integration object over the same model must share one backend. `Registry` is the small
thread-safe map behind that; `clear()` empties it (tests, or a long-running process that wants the memory back).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Generic, Hashable, TypeVar

from .backends.transformers import TransformersBackend
from .models import DEFAULT_MODEL, LoadedModel, load_model

V = TypeVar("V")


class Registry(Generic[V]):
    """A thread-safe ``key -> value`` map that builds a value once. ``keep`` holds objects whose ``id()`` is part
    of a key alive, so the id cannot be reused by another object while the entry exists."""

    def __init__(self) -> None:
        self._items: dict[Hashable, tuple[Any, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], V], keep: Any = None) -> V:
        with self._lock:
            if key not in self._items:
                self._items[key] = (keep, make())
            return self._items[key][1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


_models: Registry[LoadedModel] = Registry()
_backends: Registry[TransformersBackend] = Registry()


def shared_backend(model: str | LoadedModel = DEFAULT_MODEL, *, device: str | None = None,
                   dtype: str | None = None) -> TransformersBackend:
    """One backend per loaded model in this process, so every `Rain` (and integration object) shares it."""
    if isinstance(model, str):
        spec = model
        model = _models.get((spec, device, dtype), lambda: load_model(spec, device=device, dtype=dtype))
    loaded = model
    return _backends.get(id(loaded), lambda: TransformersBackend(loaded), keep=loaded)


def clear_shared_models() -> None:
    """Forget every shared model and backend (later calls load again)."""
    _backends.clear()
    _models.clear()
