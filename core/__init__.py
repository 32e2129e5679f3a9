"""rain_core: rewindable auto-regressive inference (RAIN) on any transformers causal LM.

Start with `Rain`::

    from rain_core import Rain
    rain = Rain("smollm2", evaluator="sentiment", max_new_tokens=32)
    print(rain.generate("The movie was", prompt_format="raw").text)
"""

from .backends.transformers import TransformersBackend
from .config import RainConfig
from .engine import Rain
from .constrained import ConstraintError, JsonSchemaConstraint
from .errors import ConfigError, EvaluatorError, ModelLoadError, PromptError, PromptTooLongError, RainError
from .evaluator import CallableEvaluator, EvaluationPrompt, Evaluator, Judgement, SelfEvaluator, resolve_evaluator
from .exchange import Exchange
from .models import DEFAULT_MODEL, LoadedModel, load_model
from .registry import clear_shared_models, shared_backend
from .results import CommitTrace, GenerationResult, SearchStats

__all__ = [
    "Rain", "RainConfig", "GenerationResult", "SearchStats", "CommitTrace", "Exchange",
    "Evaluator", "SelfEvaluator", "CallableEvaluator", "EvaluationPrompt", "Judgement", "resolve_evaluator",
    "TransformersBackend", "LoadedModel", "load_model", "shared_backend", "clear_shared_models", "DEFAULT_MODEL",
    "RainError", "ConfigError", "EvaluatorError", "ModelLoadError", "PromptError", "PromptTooLongError",
    "JsonSchemaConstraint", "ConstraintError",
]
__version__ = "0.1.0"
