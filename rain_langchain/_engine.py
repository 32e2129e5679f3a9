"""What `RainLLM` and `ChatRain` share: the fields, the engine they resolve to, and the per-call RAIN config.

No search logic lives here. A LangChain object holds a model spec (or an already loaded engine) and settings; the
first call turns them into a `rain_core.Rain`, taken from a process-wide cache so that every LangChain object over
the same loaded model and judge shares one engine (one model in memory, one pinned few-shot block).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import fields as dataclass_fields
from typing import Any, AsyncIterator, Callable, Iterator

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from rain_core import ConfigError, GenerationResult, LoadedModel, Rain, RainConfig, SearchStats, TransformersBackend
from rain_core.engine import shared_engine as resolve_engine

#: Per-call option names that mean a RainConfig field.
ALIASES = {"max_tokens": "max_new_tokens", "Vt": "value_threshold", "T": "max_iterations"}
#: Keyword arguments LangChain itself passes along to a model; they carry no RAIN option.
LANGCHAIN_KWARGS = {"ls_structured_output_format", "parallel_tool_calls", "strict"}
CONFIG_FIELDS = {f.name for f in dataclass_fields(RainConfig)}

def model_label(model: Any) -> str:
    """A model name without loading anything (for tracing metadata)."""
    if isinstance(model, Rain):
        return model.model_name
    if isinstance(model, TransformersBackend):
        return model.loaded.name
    if isinstance(model, LoadedModel):
        return model.name
    return str(model)


class RainFields(BaseModel):
    """Settings common to `RainLLM` and `ChatRain`."""

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True, protected_namespaces=())

    model: Any = Field(default="smollm2", description="A model spec ('smollm2', the embedded default; a local "
                       "folder; a .gguf file; a cached HF id) or a loaded engine: a rain_core.Rain, a "
                       "TransformersBackend or a LoadedModel. Loaded once per process and shared.")
    evaluation_prompt: Any = Field(default=None, description="The judge: 'harmless' (default), 'sentiment', a "
                                   "SelfEvaluationPrompt, a rain_core.EvaluationPrompt, a prompt file path, or a "
                                   "function of (prompt, response) returning a score in [-1, 1].")
    config: RainConfig | None = Field(default=None, description="Base RAIN hyperparameters (reference defaults).")
    max_new_tokens: int | None = Field(default=None, alias="max_tokens", description="Committed tokens at most.")
    max_iterations: int | None = Field(default=None, description="Search budget per commit (T).")
    min_iterations: int | None = Field(default=None, description="Fresh inner iterations every commit gets.")
    value_threshold: float | None = Field(default=None, description="Early-stop value threshold (Vt).")
    num_candidates: int | None = Field(default=None, description="Children made per expansion.")
    seed: int | None = Field(default=None, description="Makes the search reproducible.")
    stop: list[str] | None = Field(default=None, description="Strings that end the response (not returned).")
    soft: bool = Field(default=False, description="Score self-evaluations by probability margin (not hard vote).")
    similarity: Any = Field(default=True, description="Sentence encoder for similarity credit and widening; "
                            "False turns both off.")
    prompt_format: str = Field(default="auto", description="'auto', 'chat', 'plain' or 'raw' (see rain_core).")
    device: str | None = Field(default=None, description="Where a model spec is loaded ('cpu', 'cuda', ...).")
    dtype: str | None = Field(default=None, description="Torch dtype of a model spec loaded here.")

    _rain: Rain | None = PrivateAttr(default=None)

    # ------------------------------------------------------------------------------------------------ engine
    @property
    def engine(self) -> Rain:
        """The shared `rain_core.Rain` this object runs on (loaded on first use)."""
        if self._rain is None:
            self._rain = resolve_engine(self.model, self.evaluation_prompt, soft=self.soft,
                                        similarity=self.similarity, device=self.device, dtype=self.dtype)
        return self._rain

    @property
    def _identifying_params(self) -> dict[str, Any]:
        """What identifies this model to LangChain (caching, tracing): the model and the effective RAIN options."""
        return {"model_name": self.model_name, "prompt_format": self.prompt_format,
                **{k: v for k, v in self.call_config(None, {}).to_dict().items() if v is not None}}

    @property
    def model_name(self) -> str:
        return self._rain.model_name if self._rain is not None else model_label(self.model)

    def ls_rain(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Tracing metadata: provider, model (a per-call ``model`` wins), the effective max_new_tokens."""
        return {"ls_provider": "rain", "ls_model_name": kwargs.get("model") or self.model_name,
                "ls_max_tokens": self.call_config(None, {}).max_new_tokens}

    def call_config(self, stop: list[str] | None, kwargs: dict[str, Any]) -> RainConfig:
        """This call's RAIN config: the base config, then this object's fields, then the call's options."""
        base = self.config or (self.model.config if isinstance(self.model, Rain) else RainConfig())
        overrides: dict[str, Any] = {name: getattr(self, name) for name in
                                     ("max_new_tokens", "max_iterations", "min_iterations", "value_threshold",
                                      "num_candidates", "seed") if getattr(self, name) is not None}
        if self.stop:
            overrides["stop"] = tuple(self.stop)
        for name, value in kwargs.items():
            if name in LANGCHAIN_KWARGS:
                continue
            name = ALIASES.get(name, name)
            if name not in CONFIG_FIELDS:
                raise ConfigError(f"Unknown option {name!r} for a RAIN call. Known options: "
                                  f"{', '.join(sorted(CONFIG_FIELDS | set(ALIASES)))}.")
            overrides[name] = tuple(value) if name == "stop" else value
        if stop is not None:
            overrides["stop"] = tuple(stop)
        return base.updated(**overrides)

    def check_model_override(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Drop a per-call ``model`` that names this model; refuse one that names another."""
        kwargs = dict(kwargs)
        requested = kwargs.pop("model", None)
        if requested is not None and requested not in (self.model_name, model_label(self.model)):
            raise ConfigError(f"This object serves {self.model_name!r}; a per-call model={requested!r} cannot switch "
                              "the loaded model. Create another object for that model.")
        return kwargs


# ---------------------------------------------------------------------------------------------------- running
def run(rain: Rain, prompt: Any, config: RainConfig, prompt_format: str,
        until: Callable[[str], bool] | None = None) -> GenerationResult:
    """One generation under the model lock. ``until(text_so_far)`` returning True ends it early, after a commit
    (the search is closed; the result then carries the statistics counted so far and finish reason ``stop``)."""
    results: list[GenerationResult] = []
    live: list[SearchStats] = []
    text = ""
    with rain.lock:
        pieces = rain.stream(prompt, on_result=results.append, on_progress=lambda s: live[:1] or live.append(s),
                             prompt_format=prompt_format, **config.to_dict())
        try:
            for piece in pieces:
                text += piece
                if until is not None and until(text):
                    break
        finally:
            pieces.close()
    if results:
        return results[0]
    stats = live[0] if live else SearchStats()
    ids = rain.backend.encode(text)
    stats.completion_tokens = len(ids)
    return GenerationResult(text=text, token_ids=ids, finish_reason="stop", stats=stats)


def stream(rain: Rain, prompt: Any, config: RainConfig, prompt_format: str) -> Iterator[str | GenerationResult]:
    """Committed pieces, then the final `GenerationResult`. Consume it in one thread (it holds the model lock)."""
    results: list[GenerationResult] = []
    with rain.lock:
        pieces = rain.stream(prompt, on_result=results.append, prompt_format=prompt_format, **config.to_dict())
        try:
            yield from pieces
        finally:
            pieces.close()
    if results:
        yield results[0]


async def astream(rain: Rain, prompt: Any, config: RainConfig, prompt_format: str) -> AsyncIterator[Any]:
    """`stream` run entirely in one worker thread, handed to the event loop through a queue: the loop never blocks,
    and stopping early tells the worker to close the search (and release the model lock) at its next piece."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    cancelled = threading.Event()
    done = object()

    def work() -> None:
        try:
            iterator = stream(rain, prompt, config, prompt_format)
            try:
                for item in iterator:
                    loop.call_soon_threadsafe(queue.put_nowait, item)
                    if cancelled.is_set():
                        break
            finally:
                iterator.close()
            loop.call_soon_threadsafe(queue.put_nowait, done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            loop.call_soon_threadsafe(queue.put_nowait, exc)

    worker = loop.run_in_executor(None, work)
    try:
        while True:
            item = await queue.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancelled.set()
        await asyncio.shield(worker)


def usage(result: GenerationResult) -> dict[str, int]:
    prompt, completion = result.stats.prompt_tokens, result.stats.completion_tokens
    return {"input_tokens": prompt, "output_tokens": completion, "total_tokens": prompt + completion}
