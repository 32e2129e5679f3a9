"""`Rain`: the public engine. Loads a model once, holds the judge and the encoder, and runs generations.

Every generation goes through one path, `Rain.run`: the request's settings become one `RainConfig` here (the
engine's config, then the call's ``config=`` or keyword overrides), the prompt is formatted and checked against the
context window, and the search runs in its own backend session (its own KV caches over the shared pinned few-shot
block), yielding committed text and then the final result. `generate` and `stream` consume it; the LangChain and
LlamaIndex integrations (sync, streaming and async) call it too. Sessions share nothing a request writes, so one
loaded model serves many threads and framework objects at once, each request computing exactly what it would alone;
on CUDA their decode steps share forward passes (backends/transformers/batching.py); on a served model the server
batches them (backends/served/).
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from .backends.served import ServedBackend
from .backends.served.options import ServerOptions
from .backends.transformers import TransformersBackend
from .model import LanguageModel, ResponseGuard, RowSpec
from .config import RainConfig
from .constrained import JsonSchemaConstraint, parse_schema
from .embedder import make_embedder
from .errors import ConfigError, PromptTooLongError
from .evaluator import EvaluationPrompt, Evaluator, Judgement, SelfEvaluator, resolve_evaluator
from .exchange import Exchange, FormattedPrompt, Message, PromptFormat, format_prompt
from .models import DEFAULT_MODEL, LoadedModel
from .registry import judge_backend, shared_backend
from .results import GenerationResult, SearchStats
from .guard import GuardedGeneration
from .lookahead import search_class
from .search import ProgressCallback

Prompt = str | Sequence[Message]


class Rain:
    """Rewindable auto-regressive inference on a transformers causal LM.

    Args:
        model: a model spec (``"smollm2"``, a local folder, a ``.gguf`` file, a cached HF id), a `LoadedModel`,
            or a backend to share (`TransformersBackend`, `ServedBackend`).
        evaluator: ``"harmless"`` (default), ``"sentiment"``, a prompt file path, an `EvaluationPrompt`, an
            `Evaluator`, or a function of the conversation text (or of prompt and response) returning [-1, 1].
        config: a `RainConfig`; keyword overrides of its fields may be passed too (``max_new_tokens=32``).
        soft: the judge scores by probability margin (True) or the paper's hard vote (False); None, the default,
            leaves it to the config (`RainConfig.soft`: soft for the lookahead search, hard for the reference). A
            value given here is the engine config's ``soft``.
        similarity: sentence encoder for similarity credit and widening (see `make_embedder`); False turns both off.
        prompt_format: ``auto``, ``chat``, ``plain`` or ``raw`` (see exchange.py).
        base_url, api_key, timeout, served_model: run the model on an OpenAI-compatible server (vLLM, SGLang)
            instead of in this process (`ServerOptions`); ``model`` then names the tokenizer to load here.
        judge_model: the model the self-evaluation runs on, when it is not the generator: a model spec, a server URL
            (``http://host:8000/v1``), a `Rain` or a backend. A larger judge is the remedy for a 135M model's weak
            harm judgements.
    """

    def __init__(self, model: str | LoadedModel | LanguageModel = DEFAULT_MODEL, *,
                 evaluator: Any = "harmless", config: RainConfig | None = None, soft: bool | None = None,
                 similarity: Any = True, prompt_format: PromptFormat = "auto", device: str | None = None,
                 dtype: str | None = None, base_url: str | None = None, api_key: str | None = None,
                 timeout: float | None = None, served_model: str | None = None, judge_model: Any = None,
                 **overrides: Any) -> None:
        server = ServerOptions.pick(dict(base_url=base_url, api_key=api_key, timeout=timeout,
                                         served_model=served_model))
        if server.unused() and judge_model is None:
            raise ConfigError(server.unused_message())
        if isinstance(model, (TransformersBackend, ServedBackend)):
            self.backend: Any = model
        else:
            self.backend = shared_backend(model, device=device, dtype=dtype, server=server)
        if soft is not None:
            overrides = {"soft": soft, **overrides}
        self.config = (config or RainConfig()).updated(**overrides) if overrides else (config or RainConfig())
        self.judge_backend = self.backend if judge_model is None else judge_backend(judge_model, server, device=device,
                                                                                      dtype=dtype)
        self.evaluator: Evaluator = resolve_evaluator(evaluator, self.judge_backend, soft=self.config.soft)
        #: whether the config's ``soft`` decides how the judge scores: always for a judge built here from a prompt;
        #: for an evaluator object passed in, only where a config sets ``soft`` explicitly
        self._judge_follows_config = isinstance(evaluator, (str, Path, EvaluationPrompt))
        self.embedder = make_embedder(similarity, self.backend)
        self.prompt_format: PromptFormat = prompt_format
        format_prompt(self.backend.tokenizer, "check", prompt_format)  # fail now on a bad format

    # ------------------------------------------------------------------------------------------ properties
    @property
    def tokenizer(self) -> Any:
        return self.backend.tokenizer

    @property
    def model_name(self) -> str:
        return self.backend.name

    @property
    def context_window(self) -> int:
        return self.backend.context_window

    @property
    def lock(self) -> threading.RLock:
        """The backend's pinning lock. Generations no longer need it: each runs in its own session."""
        return self.backend.lock

    def count_tokens(self, text: str) -> int:
        return len(self.backend.encode(text))

    # ------------------------------------------------------------------------------------------ preparation
    def resolve_config(self, config: RainConfig | None = None, overrides: dict[str, Any] | None = None) -> RainConfig:
        """The request's one `RainConfig`: ``config`` (else this engine's), with ``overrides`` applied."""
        base = config if config is not None else self.config
        return base.updated(**overrides) if overrides else base

    def judge_for(self, config: RainConfig) -> Evaluator:
        """The judge a request with ``config`` runs: this engine's, scoring soft or hard as ``config.soft`` says
        (the same prompt, model and caches either way) when the engine built it or the config sets ``soft``."""
        judge = self.evaluator
        if isinstance(judge, SelfEvaluator) and (self._judge_follows_config or "soft" not in config.defaulted):
            return judge.scoring(config.soft)
        return judge

    def _prepare(self, prompt: Prompt, config: RainConfig,
                 prompt_format: PromptFormat | None) -> tuple[FormattedPrompt, list[int]]:
        formatted = format_prompt(self.tokenizer, prompt, prompt_format or self.prompt_format)
        ids = list(self.tokenizer(formatted.text, add_special_tokens=formatted.add_special_tokens)["input_ids"])
        room = self.context_window - len(ids) - config.max_simulation_tokens  # new tokens that fit after the prompt
        if room < 1:
            raise PromptTooLongError(
                f"The prompt is {len(ids)} tokens; with max_simulation_tokens={config.max_simulation_tokens} it leaves "
                f"no room for a response in the model's context window of {self.context_window}. Shorten the prompt."
            )
        if config.max_new_tokens > room:  # the prompt fits: the setting is what is too large
            raise ConfigError(
                f"max_new_tokens={config.max_new_tokens} is too large for this model: its context window is "
                f"{self.context_window} tokens, the prompt takes {len(ids)} and the search's simulations "
                f"{config.max_simulation_tokens} (max_simulation_tokens), so at most {room} new tokens fit. "
                f"Lower max_new_tokens to {room} or less."
            )
        return formatted, ids

    def _generator(self, seed: int | None) -> torch.Generator:
        generator = torch.Generator(device=self.backend.device)
        generator.manual_seed(seed if seed is not None else random.SystemRandom().randrange(2**62))
        return generator

    # ------------------------------------------------------------------------------------------ RAIN
    def run(self, prompt: Prompt, *, config: RainConfig | None = None, prompt_format: PromptFormat | None = None,
            trace: bool = False, on_progress: ProgressCallback | None = None,
            until: Callable[[str], bool] | None = None, json_schema: Any = None,
            **overrides: Any) -> Iterator[str | GenerationResult]:
        """The one run path: committed text pieces as RAIN commits them, then the final `GenerationResult`.
        ``config.mode`` picks the runner: the search before every commit (``full``), or plain drafting with the
        search only where the judge rejects a clause (``guard``, core/guard.py; its pieces are accepted clauses).

        ``json_schema`` (a dict, JSON text, or a `JsonSchemaConstraint`): every candidate, simulation and prior is
        decoded under the schema's grammar, so the response is a JSON document the schema accepts.

        ``until(text_so_far)`` returning True ends the generation after that commit (finish reason ``stop``; the
        result carries what was committed and counted so far). The search runs in its own backend session, set only
        while it computes (never across a yield), so concurrent runs on one model neither wait for nor disturb each
        other; closing the iterator early closes the search and drops its session.
        """
        config = self.resolve_config(config, overrides)
        formatted, ids = self._prepare(prompt, config, prompt_format)
        self._check_guards(config, json_schema, "the search")
        runner = GuardedGeneration if config.mode == "guard" else search_class(config.search)
        search = runner(model=self.backend, evaluator=self.judge_for(config), embedder=self.embedder, config=config,
                        prompt=formatted, prompt_ids=ids, generator=self._generator(config.seed), trace=trace,
                        on_progress=on_progress, constraint=self.constraint(json_schema))
        pieces = search.run()
        text = ""
        self.backend.reset_cache()  # calls outside a generation (judging) start afresh after each, as they always did
        with self.backend.session() as session:
            try:
                while True:
                    with self.backend.using(session):
                        piece = next(pieces, None)
                    if piece is None:
                        break
                    yield piece
                    text += piece
                    if until is not None and until(text):
                        with self.backend.using(session):
                            early = search.stopped_early()
                        yield early
                        return
            finally:
                pieces.close()
        if search.result is not None:
            yield search.result

    def stream(self, prompt: Prompt, *, on_result: Callable[[GenerationResult], None] | None = None,
               **options: Any) -> Iterator[str]:
        """Yield committed text pieces as RAIN commits them; ``on_result`` receives the final `GenerationResult`.
        Takes the options of `run`."""
        for item in self.run(prompt, **options):
            if isinstance(item, str):
                yield item
            elif on_result is not None:
                on_result(item)

    def generate(self, prompt: Prompt, **options: Any) -> GenerationResult:
        """Run RAIN to the end of the response and return text, token ids, finish reason and statistics. Takes the
        options of `run` (``config=``, ``prompt_format=``, ``trace=``, ``on_progress=``, keyword overrides)."""
        item: str | GenerationResult | None = None
        for item in self.run(prompt, **options):
            pass
        assert isinstance(item, GenerationResult)
        return item

    # ------------------------------------------------------------------------------------------ baselines
    def generate_plain(self, prompt: Prompt, *, sample: bool = False, num_samples: int = 1,
                       prompt_format: PromptFormat | None = None, json_schema: Any = None,
                       **overrides: Any) -> list[GenerationResult]:
        """Plain KV-cached decoding (greedy, or ``num_samples`` temperature-1 samples in one batch): the baseline.
        ``json_schema``: decode under the schema's grammar, as `run` does."""
        if num_samples < 1 or (not sample and num_samples != 1):
            raise ConfigError("generate_plain: num_samples must be >= 1, and 1 when sample=False.")
        config = self.resolve_config(None, overrides)
        formatted, ids = self._prepare(prompt, config, prompt_format)
        self._check_guards(config, json_schema, "plain decoding")
        served_schema = json_schema is not None and not getattr(self.backend, "supports_guards", True)
        constraint = None if served_schema else self.constraint(json_schema)
        stops = tuple(config.stop) + formatted.stop_markers
        self.backend.reset_cache()
        with self.backend.session() as session, self.backend.using(session):
            start = time.perf_counter()
            calls0, tokens0 = self.backend.forward_calls, self.backend.tokens_processed
            rows = [RowSpec("full" if sample else "greedy", config.max_new_tokens)] * num_samples
            guard = ResponseGuard.build(len(ids), no_repeat_ngram_size=config.no_repeat_ngram_size,
                                        constraint=constraint)
            if served_schema:  # the server's structured outputs constrain the whole completion
                rollouts = self.backend.structured(ids, config.max_new_tokens, parse_schema(json_schema), sample=sample,
                                                   seed=config.seed or 0, n=num_samples)
            elif not sample and guard is None:
                rollouts = [self.backend.greedy(ids, config.max_new_tokens)]
            else:
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

    def _check_guards(self, config: RainConfig, json_schema: Any, where: str) -> None:
        """Refuse, before any work, rules the backend cannot apply to every sampled token (a served model)."""
        if getattr(self.backend, "supports_guards", True):
            return
        if config.no_repeat_ngram_size:
            raise ConfigError(f"no_repeat_ngram_size={config.no_repeat_ngram_size} cannot run on a served model "
                              f"({self.backend.base_url}): the rule acts on every sampled token inside the server. "
                              "Set it to 0.")
        if json_schema is not None and where == "the search":
            raise ConfigError(f"json_schema cannot constrain {where} on a served model ({self.backend.base_url}): "
                              "the server's structured outputs start from the beginning of the completion, and the "
                              "search continues mid-response. Use generate_plain(json_schema=...) there.")

    def constraint(self, json_schema: Any) -> JsonSchemaConstraint | None:
        """The grammar constraint for ``json_schema`` (a dict or JSON text) on this model; a `JsonSchemaConstraint`
        passes through, None means no constraint."""
        if json_schema is None or isinstance(json_schema, JsonSchemaConstraint):
            return json_schema
        return JsonSchemaConstraint(parse_schema(json_schema), self.tokenizer, vocab_size=self.backend.vocab_size)

    # ------------------------------------------------------------------------------------------ judging
    def _exchange(self, prompt: Prompt, response: str,
                  prompt_format: PromptFormat | None) -> Exchange:
        fmt = prompt_format or self.prompt_format
        if fmt == "raw" and isinstance(prompt, str):  # judging a text on its own: the prefix may be empty
            return Exchange(prompt=prompt, response=response, history=prompt, raw=True)
        formatted = format_prompt(self.tokenizer, prompt, fmt)
        return Exchange(prompt=formatted.last_user, response=response, history=formatted.history, raw=formatted.raw)

    def judgement(self, prompt: Prompt, response: str, *, evaluator: Any = None,
                  prompt_format: PromptFormat | None = None) -> Judgement:
        """Judge ``response`` to ``prompt`` with this engine's judge (or ``evaluator``): the score in [-1, 1] and, for
        a self-evaluation prompt, P(good) under both option orders, from one pass of the judge."""
        judge = self.evaluator if evaluator is None else resolve_evaluator(evaluator, self.judge_backend,
                                                                           soft=self.config.soft)
        exchange = self._exchange(prompt, response, prompt_format)
        return judge.judge(exchange)

    def judge(self, prompt: Prompt, response: str, *, evaluator: Any = None,
              prompt_format: PromptFormat | None = None) -> float:
        """Score ``response`` to ``prompt`` in [-1, 1] with this engine's judge (or ``evaluator``)."""
        return self.judgement(prompt, response, evaluator=evaluator, prompt_format=prompt_format).score

    def evaluation_probabilities(self, prompt: Prompt, response: str, *,
                                 prompt_format: PromptFormat | None = None) -> tuple[float, float]:
        """P(good) under both option orders, for a `SelfEvaluator` (useful to inspect the judge)."""
        if not isinstance(self.evaluator, SelfEvaluator):
            raise ConfigError("evaluation_probabilities needs a self-evaluation prompt as the evaluator.")
        p_good = self.judgement(prompt, response, prompt_format=prompt_format).p_good
        assert p_good is not None
        return p_good


__all__ = ["Rain", "shared_backend"]
