"""The settings every framework integration exposes, and how they become one call's `RainConfig`.

LangChain's and LlamaIndex's model classes are pydantic models on different base classes. Both inherit these
fields and the lazily resolved, process-shared engine from `RainSettings`, so an option means the same thing in
either framework and is validated the same way. The integrations add only their framework's plumbing.

This module needs pydantic (both frameworks bring it); nothing else in rain_core imports it.
"""

from __future__ import annotations

import warnings
from dataclasses import fields as dataclass_fields
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from .config import RainConfig
from .engine import Rain, shared_engine
from .errors import ConfigError

#: Every RainConfig field name: what a per-call option may set.
CONFIG_FIELDS = frozenset(f.name for f in dataclass_fields(RainConfig))
#: The object fields that override the base config when set.
_FIELD_OVERRIDES = ("max_new_tokens", "max_iterations", "min_iterations", "value_threshold", "num_candidates", "seed",
                    "no_repeat_ngram_size")


class RainSettings(BaseModel):
    """Model, judge and RAIN options of an integration object; `engine` is the shared `rain_core.Rain` they name."""

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True, protected_namespaces=())

    #: Per-call option names that mean a RainConfig field (an integration may add its framework's names).
    ALIASES: ClassVar[dict[str, str]] = {"max_tokens": "max_new_tokens", "Vt": "value_threshold", "T": "max_iterations"}
    #: Per-call options the framework passes along that carry no RAIN option.
    IGNORED_OPTIONS: ClassVar[frozenset[str]] = frozenset()
    #: Per-call options the integration handles itself (named in the unknown-option error).
    OWN_OPTIONS: ClassVar[frozenset[str]] = frozenset()
    #: Constructor arguments a framework's conventions pass to every model that mean nothing here: dropped with a
    #: warning saying so (any other unknown argument is an error).
    UNUSED_ARGUMENTS: ClassVar[frozenset[str]] = frozenset()
    UNUSED_ARGUMENTS_WHY: ClassVar[str] = ""

    model: Any = Field(default="smollm2", description="A model spec ('smollm2', the embedded default; a local "
                       "folder; a .gguf file; a cached HF id) or a loaded engine: a rain_core.Rain, a "
                       "TransformersBackend or a LoadedModel. Loaded once per process and shared.")
    evaluation_prompt: Any = Field(default=None, description="The judge: 'harmless' (default), 'sentiment', the "
                                   "framework's evaluation prompt object, a rain_core.EvaluationPrompt, a prompt file "
                                   "path, or a function of (prompt, response) returning a score in [-1, 1].")
    config: RainConfig | None = Field(default=None, description="Base RAIN hyperparameters (reference defaults; "
                                      "those of a passed rain_core.Rain).")
    max_new_tokens: int | None = Field(default=None, alias="max_tokens", description="Committed tokens at most.")
    max_iterations: int | None = Field(default=None, description="Search budget per commit (T).")
    min_iterations: int | None = Field(default=None, description="Fresh inner iterations every commit gets.")
    value_threshold: float | None = Field(default=None, description="Early-stop value threshold (Vt).")
    num_candidates: int | None = Field(default=None, description="Children made per expansion.")
    seed: int | None = Field(default=None, description="Makes the search reproducible.")
    no_repeat_ngram_size: int | None = Field(default=None, description="No n-gram of this size twice in the "
                                             "response (0: off, the reference).")
    stop: list[str] | None = Field(default=None, description="Strings that end the response (not returned).")
    soft: bool = Field(default=False, description="Score self-evaluations by probability margin (not hard vote).")
    similarity: Any = Field(default=True, description="Sentence encoder for similarity credit and widening; "
                            "False turns both off.")
    prompt_format: str = Field(default="auto", description="'auto' (the chat template when the tokenizer has one, "
                               "else 'plain'), 'chat', 'plain' (Human:/Assistant:) or 'raw' (continue the text).")
    device: str | None = Field(default=None, description="Where a model spec is loaded ('cpu', 'cuda', ...).")
    dtype: str | None = Field(default=None, description="Torch dtype of a model spec loaded here.")

    _rain: Rain | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_settings(cls, data: Any) -> Any:
        """Refuse a constructor argument that is no field of the class (both frameworks would drop it silently,
        so ``RainLLM(max_iteration=4)`` would run the full reference budget without a word)."""
        if isinstance(data, dict):
            unused = sorted(k for k in data if k in cls.UNUSED_ARGUMENTS and data[k] is not None)
            if unused:
                warnings.warn(f"{cls.__name__} ignores {', '.join(unused)}: {cls.UNUSED_ARGUMENTS_WHY}", stacklevel=4)
            data = {k: v for k, v in data.items() if k not in cls.UNUSED_ARGUMENTS}
            known = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
            unknown = sorted(k for k in data if k not in known)
            if unknown:
                raise ConfigError(f"{cls.__name__} got unknown argument(s) {', '.join(map(repr, unknown))}. RAIN "
                                  f"settings: {', '.join(n for n in RainSettings.model_fields)} (a RainConfig "
                                  "field not listed goes in config=RainConfig(...) or as a per-call option).")
        return data

    @property
    def engine(self) -> Rain:
        """The shared `rain_core.Rain` this object runs on (the model is loaded on first use)."""
        if self._rain is None:
            self._rain = shared_engine(self.model, self.evaluation_prompt, soft=self.soft,
                                       similarity=self.similarity, device=self.device, dtype=self.dtype)
        return self._rain

    def rain_config(self, options: dict[str, Any], stop: list[str] | None = None) -> RainConfig:
        """One call's RAIN config: the base config, then this object's fields, then the call's ``options`` (any
        RainConfig field or alias; None leaves a setting alone), then ``stop``. An unknown option raises."""
        base = self.config or (self.model.config if isinstance(self.model, Rain) else RainConfig())
        overrides: dict[str, Any] = {name: getattr(self, name) for name in _FIELD_OVERRIDES
                                     if getattr(self, name) is not None}
        if self.stop:
            overrides["stop"] = tuple(self.stop)
        for name, value in options.items():
            if name in self.IGNORED_OPTIONS:
                continue
            name = self.ALIASES.get(name, name)
            if name not in CONFIG_FIELDS:
                known = CONFIG_FIELDS | set(self.ALIASES) | self.OWN_OPTIONS
                raise ConfigError(f"Unknown option {name!r} for a {type(self).__name__} call. Known options: "
                                  f"{', '.join(sorted(known))}.")
            if value is not None or name == "seed":
                overrides[name] = tuple([value] if isinstance(value, str) else value) if name == "stop" else value
        if stop is not None:
            overrides["stop"] = tuple(stop)
        return base.updated(**overrides)
