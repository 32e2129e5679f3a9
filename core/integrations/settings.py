"""The settings every framework integration exposes, and how they become one call's `RainConfig`.

LangChain's and LlamaIndex's model classes are pydantic models on different base classes. Both inherit these
fields and the lazily resolved, process-shared engine from `RainSettings`, so an option means the same thing in
either framework and is validated the same way. The search options are not written here: one field per
`RainConfig` option declared with `option(...)`, with its help text and first alias, is generated from it.
"""

from __future__ import annotations

import dataclasses
import typing
import warnings
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, create_model, model_validator

from ..backends.served.options import SERVER_FIELDS, ServerOptions
from ..config import RainConfig, option_aliases, user_options
from ..engine import Rain
from ..errors import ConfigError
from .registry import shared_engine

def _server_help(name: str) -> str:
    """A served-model option's help, from its one declaration (`ServerOptions`)."""
    return next(f.metadata["help"] for f in dataclasses.fields(ServerOptions) if f.name == name).capitalize() + "."


#: Every RainConfig field name: what a per-call option may set.
CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(RainConfig) if f.init)


def _option_fields() -> dict[str, Any]:
    """A pydantic field per exposed RainConfig option: None (not set) by default, so the base config decides."""
    hints = typing.get_type_hints(RainConfig)
    out: dict[str, Any] = {}
    for f in user_options():
        annotation: Any = list[str] if typing.get_origin(hints[f.name]) is tuple else hints[f.name]
        aliases = f.metadata["aliases"]
        out[f.name] = (annotation | None, Field(default=None, alias=aliases[0] if aliases else None,
                                                description=f.metadata["help"]))
    return out


#: The generated option fields, as a base class RainSettings builds on.
RainOptions = create_model("RainOptions", __base__=BaseModel, **_option_fields())
#: The option fields' names (what this object's own settings may override in a call's config).
OPTION_FIELDS = tuple(f.name for f in user_options())


class RainSettings(RainOptions):
    """Model, judge and RAIN options of an integration object; `engine` is the shared `rain_core.Rain` they name."""

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True, protected_namespaces=())

    #: Per-call option names that mean a RainConfig field (an integration may add its framework's names).
    ALIASES: ClassVar[dict[str, str]] = option_aliases()
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
    similarity: Any = Field(default=True, description="Sentence encoder for similarity credit and widening; "
                            "False turns both off.")
    prompt_format: str = Field(default="auto", description="'auto' (the chat template when the tokenizer has one, "
                               "else 'plain'), 'chat', 'plain' (Human:/Assistant:) or 'raw' (continue the text).")
    base_url: str | None = Field(default=None, description=_server_help("base_url"))
    api_key: str | None = Field(default=None, description=_server_help("api_key"))
    timeout: float | None = Field(default=None, description=_server_help("timeout"))
    served_model: str | None = Field(default=None, description=_server_help("served_model"))
    judge_model: Any = Field(default=None, description="The model the judge runs on when it is not the generator: a "
                             "model spec, a server URL (http://host:8000/v1), a rain_core.Rain or a backend.")
    device: str | None = Field(default=None, description="Where a model spec is loaded ('cpu', 'cuda', ...).")
    dtype: str | None = Field(default=None, description="Torch dtype of a model spec loaded here.")

    _rain: Rain | None = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        self.rain_config({})  # a bad setting fails where the object is built, not at its first call
        unused = self.server_options().unused()
        if unused:  # the framework's conventions pass api_key / timeout to every model: say they do nothing here
            warnings.warn(f"{type(self).__name__} ignores {', '.join(unused)}: they apply to a served model "
                          "(base_url=...), and this model runs in this process.", stacklevel=3)

    def server_options(self) -> ServerOptions:
        """Where the model runs (``base_url`` and its options; none: in this process)."""
        return ServerOptions.pick({name: getattr(self, name) for name in SERVER_FIELDS})

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
            self._rain = shared_engine(self.model, self.evaluation_prompt, soft=self.judge_soft,
                                       similarity=self.similarity, device=self.device, dtype=self.dtype,
                                       server=self.server_options(), judge_model=self.judge_model)
        return self._rain

    @property
    def judge_soft(self) -> bool:
        """How this object's judge scores outside a generation (``as_judge``, ``judge``): as its generations do,
        by its config's ``soft`` (set, or its search strategy's default)."""
        return self.rain_config({}).soft

    def rain_config(self, options: dict[str, Any], stop: list[str] | None = None) -> RainConfig:
        """One call's RAIN config: the base config, then this object's fields, then the call's ``options`` (any
        RainConfig field or alias; None leaves a setting alone), then ``stop``. An unknown option raises."""
        base = self.config or (self.model.config if isinstance(self.model, Rain) else RainConfig())
        overrides: dict[str, Any] = {name: getattr(self, name) for name in OPTION_FIELDS
                                     if getattr(self, name) is not None}
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
