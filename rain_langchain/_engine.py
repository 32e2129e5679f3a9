"""What `RainLLM` and `ChatRain` share: LangChain's view of the settings.

No search logic lives here. The fields, the shared engine and the per-call config come from
`rain_core.integrations.settings.RainSettings` (the LlamaIndex integration uses the same); this module adds
LangChain's metadata (identifying params, tracing names, per-call model checks). Both classes run a request through
`Rain.run` (`Rain.generate` when not streaming).
"""

from __future__ import annotations

from typing import Any, ClassVar

from rain_core import ConfigError, GenerationResult, LoadedModel, Rain, RainConfig, TransformersBackend
from rain_core.integrations.settings import RainSettings


def model_label(model: Any) -> str:
    """A model name without loading anything (for tracing metadata)."""
    if isinstance(model, Rain):
        return model.model_name
    if isinstance(model, TransformersBackend):
        return model.name
    if isinstance(model, LoadedModel):
        return model.name
    return str(model)


class RainFields(RainSettings):
    """`RainLLM` and `ChatRain`'s settings (`rain_core.integrations.settings.RainSettings`) plus LangChain's metadata."""

    #: Keyword arguments LangChain itself passes along to a model; they carry no RAIN option.
    IGNORED_OPTIONS: ClassVar[frozenset[str]] = frozenset({"ls_structured_output_format", "parallel_tool_calls",
                                                           "strict"})
    #: LangChain's standard chat-model arguments that a local RAIN model has no use for.
    UNUSED_ARGUMENTS: ClassVar[frozenset[str]] = frozenset({"temperature", "max_retries"})
    UNUSED_ARGUMENTS_WHY: ClassVar[str] = ("RAIN draws its candidates at temperature 1 as the reference does, and a "
                                           "served model's transient faults are retried by the engine itself.")

    @property
    def _identifying_params(self) -> dict[str, Any]:
        """What identifies this model to LangChain (caching, tracing): the model and the effective RAIN options."""
        return {"model_name": self.model_name, "prompt_format": self.prompt_format,
                **{k: v for k, v in self.rain_config({}).to_dict().items() if v is not None}}

    @property
    def model_name(self) -> str:
        return self._rain.model_name if self._rain is not None else model_label(self.model)

    def ls_rain(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Tracing metadata: provider, model (a per-call ``model`` wins), the effective max_new_tokens."""
        return {"ls_provider": "rain", "ls_model_name": kwargs.get("model") or self.model_name,
                "ls_max_tokens": self.rain_config({}).max_new_tokens}

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


def usage(result: GenerationResult) -> dict[str, int]:
    prompt, completion = result.stats.prompt_tokens, result.stats.completion_tokens
    return {"input_tokens": prompt, "output_tokens": completion, "total_tokens": prompt + completion}
