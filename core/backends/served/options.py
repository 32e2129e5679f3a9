"""The served-model options, declared once: `Rain`, the LangChain and LlamaIndex classes and the CLI's
``--base-url`` / ``--api-key`` / ``--timeout`` / ``--served-model`` flags are all made from `ServerOptions`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ...errors import ConfigError


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class ServerOptions:
    """Where the model runs when it is served rather than loaded here."""

    base_url: str | None = field(default=None, metadata=_help(
        "run the model on an OpenAI-compatible server (vLLM, SGLang) at this API root, e.g. http://127.0.0.1:8000/v1; "
        "the model spec then only names the tokenizer (and, by default, the served model)"))
    api_key: str | None = field(default=None, metadata=_help("bearer token for the server (if it asks for one)"))
    timeout: float = field(default=60.0, metadata=_help("seconds one server request may take before it is retried"))
    served_model: str | None = field(default=None, metadata=_help(
        "the server's name for the model (its --served-model-name); default: the model spec if the server serves it, "
        "else the server's only model"))

    def __post_init__(self) -> None:
        if self.base_url is not None and not str(self.base_url).startswith(("http://", "https://")):
            raise ConfigError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, not {self.base_url!r}.")
        if not self.timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds, not {self.timeout!r}.")

    @property
    def served(self) -> bool:
        return self.base_url is not None

    def unused(self) -> list[str]:
        """The options given that mean nothing without ``base_url`` (the model then runs in this process)."""
        if self.served:
            return []
        return [f.name for f in fields(self) if f.name != "base_url" and getattr(self, f.name) != f.default]

    def unused_message(self) -> str:
        return (f"{', '.join(self.unused())} only mean something for a served model: give base_url too (e.g. "
                "base_url='http://127.0.0.1:8000/v1'), or drop them to run the model in this process.")

    @classmethod
    def pick(cls, values: dict[str, Any]) -> "ServerOptions":
        """The options among ``values`` (other keys ignored; None leaves a default)."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if values.get(f.name) is not None})


#: The option names (what the integrations and the CLI expose).
SERVER_FIELDS = tuple(f.name for f in fields(ServerOptions))
