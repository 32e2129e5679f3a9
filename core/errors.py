"""Errors with messages that say what is wrong and what to do about it.

Every error the library raises on bad input derives from `RainError`, so callers (and the CLI) can catch one type
and show its message without a traceback.
"""


class RainError(Exception):
    """Base class of every error rain raises on bad input or a bad environment."""


class ConfigError(RainError, ValueError):
    """A `RainConfig` (or per-call override) value is out of range or unknown."""


class ModelLoadError(RainError):
    """A model spec could not be resolved to a loadable model (unknown id, missing package, not in the local cache)."""


class PromptTooLongError(RainError, ValueError):
    """The prompt plus the requested new tokens does not fit the model's context window."""


class EvaluatorError(RainError, ValueError):
    """A self-evaluation template or judge is unusable (missing slot, letters that are not single tokens, ...)."""


class PromptError(RainError, ValueError):
    """The prompt is unusable as given: empty, or a message with a role no model turn has."""


class ServerError(RainError):
    """A served model (an OpenAI-compatible server such as vLLM) could not answer: unreachable, wrong model name,
    a limit below what the search needs, a timeout, a server error. The message names the URL and the cause."""


class GenerationCancelled(RainError):
    """The request was abandoned (a stream's consumer went away) while the model was still working on it."""
