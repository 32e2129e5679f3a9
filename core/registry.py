"""Process-wide registries: one loaded model (and its backend) per model spec, shared by every `Rain`.

Loading SmolLM2 takes a second and its KV caches, pinned judge prefix and lock belong to the loaded weights, so
every engine and integration object over the same model must share one backend. `Registry` is the small
thread-safe map behind that; `clear()` empties it (tests, or a long-running process that wants the memory back).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Generic, Hashable, TypeVar

from .backends.served import ServedBackend
from .backends.served.backend import pick_model
from .backends.served.client import ServerClient
from .backends.served.options import ServerOptions
from .backends.transformers import TransformersBackend
from .errors import ConfigError
from .models import DEFAULT_MODEL, LoadedModel, load_model, load_tokenizer

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

    def values(self) -> list[V]:
        with self._lock:
            return [value for _, value in self._items.values()]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


_models: Registry[LoadedModel] = Registry()
_tokenizers: Registry[Any] = Registry()
_backends: Registry[TransformersBackend] = Registry()
_served: Registry[ServedBackend] = Registry()


def shared_backend(model: str | LoadedModel = DEFAULT_MODEL, *, device: str | None = None,
                   dtype: str | None = None,
                   server: ServerOptions | None = None) -> TransformersBackend | ServedBackend:
    """One backend per loaded model in this process, so every `Rain` (and integration object) shares it. With a
    ``server`` (``base_url``), one served backend per server, served model and tokenizer: the model spec then names
    the tokenizer to load here (and, unless ``served_model`` is given, the served model when the server has it)."""
    if server is not None and server.served:
        if not isinstance(model, str):
            raise ConfigError("With base_url, the model must be a spec naming the served model's tokenizer "
                              f"('smollm2', a folder, a cached HF id), not {type(model).__name__}.")
        return shared_served_backend(server, model)
    if isinstance(model, str):
        spec = model
        model = _models.get((spec, device, dtype), lambda: load_model(spec, device=device, dtype=dtype))
    loaded = model
    return _backends.get(id(loaded), lambda: TransformersBackend(loaded), keep=loaded)


def shared_served_backend(server: ServerOptions, tokenizer_spec: str | None = None) -> ServedBackend:
    """The shared backend for a served model; ``tokenizer_spec`` None loads the tokenizer by the served model's name
    (so ``judge_model="http://host:8000/v1"`` works for a server of a model this process can find)."""
    key = (server.base_url, server.api_key, server.timeout, server.served_model, tokenizer_spec)

    def make() -> ServedBackend:
        options = dict(api_key=server.api_key, timeout=server.timeout, model=server.served_model)
        if tokenizer_spec is not None:
            return ServedBackend(server.base_url, tokenizer=_tokenizers.get(tokenizer_spec,
                                 lambda: load_tokenizer(tokenizer_spec)), prefer=tokenizer_spec, **options)
        client = ServerClient(server.base_url, api_key=server.api_key, timeout=server.timeout)
        try:  # the tokenizer is found by the served model's name, so ask the server for it first
            name, _ = pick_model(client, server.served_model)
            tokenizer = _tokenizers.get(name, lambda: load_tokenizer(name))
            return ServedBackend(server.base_url, tokenizer=tokenizer, model=name, client=client)
        except BaseException:
            client.close()
            raise

    return _served.get(key, make)


def clear_shared_models() -> None:
    """Forget every shared model and backend (later calls load again)."""
    for backend in list(_served.values()):
        backend.close()
    _served.clear()
    _tokenizers.clear()
    _backends.clear()
    _models.clear()


def judge_backend(spec: Any, server: ServerOptions | None = None, *, device: str | None = None,
                  dtype: str | None = None) -> Any:
    """The backend a separate judge runs on: a URL (a served judge; the generator's api_key and timeout apply), a
    model spec loaded here, a `LoadedModel`, or an engine or backend to share."""
    if isinstance(spec, str) and spec.startswith(("http://", "https://")):
        base = server or ServerOptions()
        return shared_served_backend(ServerOptions(base_url=spec, api_key=base.api_key, timeout=base.timeout))
    if isinstance(spec, (str, LoadedModel)):
        return shared_backend(spec, device=device, dtype=dtype)
    backend = getattr(spec, "backend", spec)  # a Rain
    if hasattr(backend, "option_logprobs") and hasattr(backend, "encode"):
        return backend
    raise ConfigError(f"Cannot use {spec!r} as judge_model: pass a model spec, a server URL, a Rain or a backend.")
