"""One shared `Rain` per (loaded model, judge) for every LangChain and LlamaIndex object in the process.

Two objects over the same model and judge share one engine, so they share the judge's pinned instruction block
and its calibration baselines instead of computing them twice. Framework prompt wrappers (LangChain's
`SelfEvaluationPrompt`, LlamaIndex's `RainEvaluationPrompt`) are unwrapped here, so the engine never sees them.
"""

from __future__ import annotations

from typing import Any, Hashable

from ..backends.served import ServedBackend
from ..backends.served.options import ServerOptions
from ..backends.transformers import TransformersBackend
from ..engine import Rain
from ..errors import ConfigError
from ..evaluator import EvaluationPrompt
from ..models import LoadedModel
from ..registry import Registry, shared_backend

_engines: Registry[Rain] = Registry()


def judge_spec(evaluator: Any) -> Any:
    """What `Rain` accepts for a judge: a framework wrapper's ``evaluation`` prompt, else ``evaluator`` itself."""
    inner = getattr(evaluator, "evaluation", None)
    return inner if isinstance(inner, EvaluationPrompt) else evaluator


def _key(spec: Any) -> Hashable:
    """Strings and prompts by value (equal prompts share an engine), everything else by identity."""
    if isinstance(spec, (str, bool, EvaluationPrompt, type(None))):
        return spec
    return ("id", id(spec))


def backend_of(model: Any, *, device: str | None = None, dtype: str | None = None,
               server: ServerOptions | None = None) -> Any:
    """The shared backend behind a model spec (on a server when ``server`` names one), `Rain`, backend or
    `LoadedModel`."""
    if isinstance(model, Rain):
        return model.backend
    if isinstance(model, (TransformersBackend, ServedBackend)):
        return model
    if isinstance(model, (str, LoadedModel)):
        return shared_backend(model, device=device, dtype=dtype, server=server)
    raise ConfigError(f"Cannot use {model!r} as a RAIN model: pass a model spec such as 'smollm2', a local "
                      "folder or .gguf file, a rain_core.Rain, a TransformersBackend or a LoadedModel.")


def shared_engine(model: Any, evaluator: Any = None, *, soft: bool | None = None, similarity: Any = True,
                  device: str | None = None, dtype: str | None = None, server: ServerOptions | None = None,
                  judge_model: Any = None) -> Rain:
    """The shared `Rain` for ``model`` judged by ``evaluator`` (a passed `Rain` with no other judge is used as is);
    ``server``: the model runs there; ``judge_model``: the judge runs on that model instead."""
    if isinstance(model, Rain) and evaluator is None and judge_model is None:
        return model
    backend = backend_of(model, device=device, dtype=dtype, server=server)
    spec = judge_spec("harmless" if evaluator is None else evaluator)
    key = (id(backend), _key(spec), soft, _key(similarity), _key(judge_model))
    # a served judge (judge_model=URL) inherits the object's api_key and timeout
    inherited = dict(timeout=server.timeout, api_key=server.api_key) if server and judge_model is not None else {}
    return _engines.get(key, lambda: Rain(backend, evaluator=spec, soft=soft, similarity=similarity,
                                          judge_model=judge_model, **inherited),
                        keep=(backend, spec, similarity, judge_model))


def clear_shared_engines() -> None:
    """Forget every shared engine (the next object builds its engine again)."""
    _engines.clear()
