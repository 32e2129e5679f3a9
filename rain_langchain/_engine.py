"""What `RainLLM` and `ChatRain` share: LangChain's view of the settings, and running one generation.

No search logic lives here. The fields, the shared engine and the per-call config come from
`rain_core.settings.RainSettings` (the LlamaIndex integration uses the same); this module adds LangChain's
metadata (identifying params, tracing names, per-call model checks) and the sync/async run and stream helpers.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Callable, ClassVar, Iterator

from rain_core import ConfigError, GenerationResult, LoadedModel, Rain, RainConfig, SearchStats, TransformersBackend
from rain_core.engine import shared_engine as resolve_engine
from rain_core.settings import RainSettings
from rain_core.streaming import iterate_in_thread, pieces_then_result


def model_label(model: Any) -> str:
    """A model name without loading anything (for tracing metadata)."""
    if isinstance(model, Rain):
        return model.model_name
    if isinstance(model, TransformersBackend):
        return model.loaded.name
    if isinstance(model, LoadedModel):
        return model.name
    return str(model)


class RainFields(RainSettings):
    """`RainLLM` and `ChatRain`'s settings (`rain_core.settings.RainSettings`) plus LangChain's metadata."""

    #: Keyword arguments LangChain itself passes along to a model; they carry no RAIN option.
    IGNORED_OPTIONS: ClassVar[frozenset[str]] = frozenset({"ls_structured_output_format", "parallel_tool_calls",
                                                           "strict"})
    #: LangChain's standard chat-model arguments that a local RAIN model has no use for.
    UNUSED_ARGUMENTS: ClassVar[frozenset[str]] = frozenset({"temperature", "timeout", "max_retries", "api_key",
                                                            "base_url"})
    UNUSED_ARGUMENTS_WHY: ClassVar[str] = ("the model runs locally (no API key, endpoint, timeout or retries), and "
                                           "RAIN draws its candidates at temperature 1 as the reference does.")

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
        return self.rain_config(kwargs, stop)

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
    return pieces_then_result(rain, prompt, config, prompt_format)


def astream(rain: Rain, prompt: Any, config: RainConfig, prompt_format: str) -> AsyncIterator[Any]:
    """`stream` run whole in one worker thread: the event loop never blocks, and stopping early closes the search
    (and releases the model lock) at its next piece."""
    return iterate_in_thread(lambda: stream(rain, prompt, config, prompt_format))


def usage(result: GenerationResult) -> dict[str, int]:
    prompt, completion = result.stats.prompt_tokens, result.stats.completion_tokens
    return {"input_tokens": prompt, "output_tokens": completion, "total_tokens": prompt + completion}
