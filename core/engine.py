"""`Rain`: the public engine. Loads a model once, holds the judge and the encoder, and runs generations.

Every entry point takes the model lock for its whole run, so one loaded model can be shared by many threads and
many framework objects (LangChain, LlamaIndex) without two searches interleaving on its caches.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any, Callable, Iterator, Sequence

import torch

from .backend import ResponseGuard, RowSpec, TransformersBackend
from .config import RainConfig
from .embedder import make_embedder
from .errors import ConfigError, PromptTooLongError
from .evaluator import EvaluationPrompt, Evaluator, SelfEvaluator, make_evaluator
from .exchange import Exchange, FormattedPrompt, Message, PromptFormat, format_prompt
from .models import DEFAULT_MODEL, LoadedModel, load_model
from .results import GenerationResult, SearchStats
from .search import ProgressCallback, RainSearch

_loaded: dict[tuple[str, str | None, str | None], LoadedModel] = {}
_backends: dict[int, TransformersBackend] = {}
_registry_lock = threading.Lock()


def shared_backend(model: str | LoadedModel = DEFAULT_MODEL, *, device: str | None = None,
                   dtype: str | None = None) -> TransformersBackend:
    """One backend per loaded model in this process, so every `Rain` (and integration object) shares it."""
    with _registry_lock:
        if isinstance(model, str):
            key = (model, device, dtype)
            if key not in _loaded:
                _loaded[key] = load_model(model, device=device, dtype=dtype)
            model = _loaded[key]
        if id(model) not in _backends:
            _backends[id(model)] = TransformersBackend(model)
        return _backends[id(model)]


class Rain:
    """Rewindable auto-regressive inference on a transformers causal LM.

    Args:
        model: a model spec (``"smollm2"``, a local folder, a ``.gguf`` file, a cached HF id), a `LoadedModel`,
            or a `TransformersBackend` to share.
        evaluator: ``"harmless"`` (default), ``"sentiment"``, a prompt file path, an `EvaluationPrompt`, an
            `Evaluator`, or a function of the conversation text (or of prompt and response) returning [-1, 1].
        config: a `RainConfig`; keyword overrides of its fields may be passed too (``max_new_tokens=32``).
        soft: score self-evaluations by probability margin instead of the reference hard vote.
        similarity: sentence encoder for similarity credit and widening (see `make_embedder`); False turns both off.
        prompt_format: ``auto``, ``chat``, ``plain`` or ``raw`` (see exchange.py).
    """

    def __init__(self, model: str | LoadedModel | TransformersBackend = DEFAULT_MODEL, *,
                 evaluator: Any = "harmless", config: RainConfig | None = None, soft: bool = False,
                 similarity: Any = True, prompt_format: PromptFormat = "auto", device: str | None = None,
                 dtype: str | None = None, **overrides: Any) -> None:
        self.backend = model if isinstance(model, TransformersBackend) else shared_backend(model, device=device,
                                                                                             dtype=dtype)
        self.config = (config or RainConfig()).updated(**overrides) if overrides else (config or RainConfig())
        self.evaluator: Evaluator = make_evaluator(evaluator, self.backend, soft=soft)
        self.embedder = make_embedder(similarity, self.backend)
        self.prompt_format: PromptFormat = prompt_format
        format_prompt(self.backend.tokenizer, "check", prompt_format)  # fail now on a bad format

    # ------------------------------------------------------------------------------------------ properties
    @property
    def tokenizer(self) -> Any:
        return self.backend.tokenizer

    @property
    def model_name(self) -> str:
        return self.backend.loaded.name

    @property
    def context_window(self) -> int:
        return self.backend.context_window

    @property
    def lock(self) -> threading.RLock:
        return self.backend.lock

    def count_tokens(self, text: str) -> int:
        return len(self.backend.encode(text))

    # ------------------------------------------------------------------------------------------ preparation
    def _prepare(self, prompt: str | Sequence[Message], overrides: dict[str, Any],
                 prompt_format: PromptFormat | None) -> tuple[FormattedPrompt, list[int], RainConfig]:
        config = self.config.updated(**overrides) if overrides else self.config
        formatted = format_prompt(self.tokenizer, prompt, prompt_format or self.prompt_format)
        ids = list(self.tokenizer(formatted.text, add_special_tokens=formatted.add_special_tokens)["input_ids"])
        needed = len(ids) + config.max_new_tokens + config.max_simulation_tokens
        if needed > self.context_window:
            raise PromptTooLongError(
                f"The prompt is {len(ids)} tokens; with max_new_tokens={config.max_new_tokens} and "
                f"max_simulation_tokens={config.max_simulation_tokens} it needs {needed} positions, but the model's "
                f"context window is {self.context_window}. Shorten the prompt or lower max_new_tokens."
            )
        return formatted, ids, config

    def _generator(self, seed: int | None) -> torch.Generator:
        generator = torch.Generator(device=self.backend.device)
        generator.manual_seed(seed if seed is not None else random.SystemRandom().randrange(2**62))
        return generator

    # ------------------------------------------------------------------------------------------ RAIN
    def stream(self, prompt: str | Sequence[Message], *, trace: bool = False,
               on_progress: ProgressCallback | None = None, on_result: Callable[[GenerationResult], None] | None = None,
               prompt_format: PromptFormat | None = None, **overrides: Any) -> Iterator[str]:
        """Yield committed text pieces as RAIN commits them; ``on_result`` receives the final `GenerationResult`."""
        formatted, ids, config = self._prepare(prompt, overrides, prompt_format)
        with self.lock:
            self.backend.reset_cache()
            search = RainSearch(model=self.backend, evaluator=self.evaluator, embedder=self.embedder, config=config,
                                prompt=formatted, prompt_ids=ids, generator=self._generator(config.seed), trace=trace,
                                on_progress=on_progress)
            yield from search.run()
        if on_result is not None and search.result is not None:
            on_result(search.result)

    def generate(self, prompt: str | Sequence[Message], *, trace: bool = False,
                 on_progress: ProgressCallback | None = None, prompt_format: PromptFormat | None = None,
                 **overrides: Any) -> GenerationResult:
        """Run RAIN to the end of the response and return text, token ids, finish reason and statistics."""
        results: list[GenerationResult] = []
        for _ in self.stream(prompt, trace=trace, on_progress=on_progress, on_result=results.append,
                             prompt_format=prompt_format, **overrides):
            pass
        return results[0]

    # ------------------------------------------------------------------------------------------ baselines
    def generate_plain(self, prompt: str | Sequence[Message], *, sample: bool = False, num_samples: int = 1,
                       prompt_format: PromptFormat | None = None, **overrides: Any) -> list[GenerationResult]:
        """Plain KV-cached decoding (greedy, or ``num_samples`` temperature-1 samples in one batch): the baseline."""
        if num_samples < 1 or (not sample and num_samples != 1):
            raise ConfigError("generate_plain: num_samples must be >= 1, and 1 when sample=False.")
        formatted, ids, config = self._prepare(prompt, overrides, prompt_format)
        stops = tuple(config.stop) + formatted.stop_markers
        with self.lock:
            self.backend.reset_cache()
            start = time.perf_counter()
            calls0, tokens0 = self.backend.forward_calls, self.backend.tokens_processed
            rows = [RowSpec("full" if sample else "greedy", config.max_new_tokens)] * num_samples
            guard = ResponseGuard.no_repeat_ngrams(config.no_repeat_ngram_size, start=len(ids))
            rollouts = self.backend.rollouts(ids, rows, self._generator(config.seed), guard)
            wall = time.perf_counter() - start
            calls, tokens = self.backend.forward_calls - calls0, self.backend.tokens_processed - tokens0
        results = []
        for rollout in rollouts:
            out = list(rollout.tokens)
            finish = "length"
            if rollout.finish == "eos":
                out.pop()
                finish = "eos"
            text = self.backend.decode(out)
            hits = [i for i in (text.find(s) for s in stops) if i >= 0]
            if hits:
                text, finish = text[: min(hits)], "stop"
            stats = SearchStats(forward_calls=calls, tokens_processed=tokens, prompt_tokens=len(ids),
                                completion_tokens=len(out), wall_seconds=wall)
            results.append(GenerationResult(text=text, token_ids=out, finish_reason=finish, stats=stats))
        return results

    # ------------------------------------------------------------------------------------------ judging
    def _exchange(self, prompt: str | Sequence[Message], response: str,
                  prompt_format: PromptFormat | None) -> Exchange:
        fmt = prompt_format or self.prompt_format
        if fmt == "raw" and isinstance(prompt, str):  # judging a text on its own: the prefix may be empty
            return Exchange(prompt=prompt, response=response, history=prompt, raw=True)
        formatted = format_prompt(self.tokenizer, prompt, fmt)
        return Exchange(prompt=formatted.last_user, response=response, history=formatted.history, raw=formatted.raw)

    def judge(self, prompt: str | Sequence[Message], response: str, *, evaluator: Any = None,
              prompt_format: PromptFormat | None = None) -> float:
        """Score ``response`` to ``prompt`` in [-1, 1] with this engine's judge (or ``evaluator``)."""
        judge = self.evaluator if evaluator is None else make_evaluator(evaluator, self.backend)
        exchange = self._exchange(prompt, response, prompt_format)
        with self.lock:
            return float(judge.score(exchange))

    def evaluation_probabilities(self, prompt: str | Sequence[Message], response: str, *,
                                 prompt_format: PromptFormat | None = None) -> tuple[float, float]:
        """P(good) under both option orders, for a `SelfEvaluator` (useful to inspect the judge)."""
        if not isinstance(self.evaluator, SelfEvaluator):
            raise ConfigError("evaluation_probabilities needs a self-evaluation prompt as the evaluator.")
        exchange = self._exchange(prompt, response, prompt_format)
        with self.lock:
            return self.evaluator.good_probabilities(exchange)


_engines: dict[tuple, tuple[Any, Rain]] = {}
_engines_lock = threading.Lock()


def _key(spec: Any) -> Any:
    """A hashable key for an evaluator or similarity spec (strings and prompts by value, objects by identity)."""
    try:
        hash(spec)
    except TypeError:
        return ("id", id(spec))
    return spec if isinstance(spec, (str, bool, EvaluationPrompt, type(None))) else ("id", id(spec))


def _evaluator_spec(evaluator: Any) -> Any:
    """Unwrap a framework prompt wrapper (anything holding an ``evaluation`` prompt) to what `Rain` accepts."""
    inner = getattr(evaluator, "evaluation", None)
    return inner if isinstance(inner, EvaluationPrompt) else evaluator


def shared_engine(model: Any, evaluator: Any = None, *, soft: bool = False, similarity: Any = True,
                   device: str | None = None, dtype: str | None = None) -> Rain:
    """The shared `Rain` for ``model`` (a spec, `Rain`, backend or `LoadedModel`) judged by ``evaluator``: one engine per
    (loaded model, judge) in the process, so every LangChain and LlamaIndex object over it shares the pinned few-shot
    block and the calibration."""
    if isinstance(model, Rain) and evaluator is None:
        return model
    if isinstance(model, Rain):
        backend = model.backend
    elif isinstance(model, TransformersBackend):
        backend = model
    elif isinstance(model, (str, LoadedModel)):
        backend = shared_backend(model, device=device, dtype=dtype)
    else:
        raise ConfigError(f"Cannot use {model!r} as a RAIN model: pass a model spec such as 'smollm2', a local "
                          "folder or .gguf file, a rain_core.Rain, a TransformersBackend or a LoadedModel.")
    evaluator = _evaluator_spec("harmless" if evaluator is None else evaluator)
    key = (id(backend), _key(evaluator), soft, _key(similarity))
    with _engines_lock:
        if key not in _engines:
            rain = Rain(backend, evaluator=evaluator, soft=soft, similarity=similarity)
            _engines[key] = ((backend, evaluator, similarity), rain)  # keep the objects alive: ids stay unique
        return _engines[key][1]


__all__ = ["Rain", "shared_backend", "shared_engine", "EvaluationPrompt"]
