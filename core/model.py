"""The model seam: what the search and the judge need from a language model, and nothing else.

The search (search.py, lookahead.py, guard.py) and the judge (evaluator.py) import only this file; each backend
implements it in a room of its own: `backends/transformers/` runs the model in this process with KV caches shared
across the search tree, `backends/served.py` asks an OpenAI-compatible server (vLLM, SGLang) that batches and caches
itself. No implementation is imported by the algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, Sequence

import torch

SampleMode = Literal["greedy", "top_k", "full"]


@dataclass(frozen=True)
class RowSpec:
    """One row of a batched sampling call.

    mode: ``greedy`` (argmax), ``top_k`` (sample among the ``top_k`` most likely) or ``full`` (temperature-1 sampling).
    max_tokens: row length limit. stop_at_clause: also stop once the row's last token ends a clause.
    """

    mode: SampleMode
    max_tokens: int
    stop_at_clause: bool = False
    top_k: int = 0


@dataclass(frozen=True)
class ResponseGuard:
    """Rules applied to every next-token distribution of the response: soft ``processors`` (e.g. a no-repeat n-gram
    rule) and a hard ``constraint`` (e.g. a JSON schema's grammar, `rain_core.constrained`).

    start: where the response begins in the ids the backend is given; rules see only the response's tokens, so a
    rule like "no repeated 3-gram" ignores the prompt (a tool schema or a review prefix may repeat freely).
    The constraint is applied last and always wins: where the soft rules leave no token it allows, it masks the
    unprocessed logits instead (a grammar that must close a string overrides "no repeated 3-gram").
    """

    processors: Any  # transformers.LogitsProcessorList, or None
    start: int
    constraint: Any = None  # a logits processor whose mask must hold

    @classmethod
    def no_repeat_ngrams(cls, size: int, start: int) -> "ResponseGuard | None":
        """A guard banning repeated ``size``-grams in the response, or None when ``size`` is 0 (off)."""
        return cls.build(start, no_repeat_ngram_size=size)

    @classmethod
    def build(cls, start: int, *, no_repeat_ngram_size: int = 0, constraint: Any = None) -> "ResponseGuard | None":
        """The guard for these rules, or None when there are none."""
        processors = None
        if no_repeat_ngram_size > 0:
            from transformers import LogitsProcessorList, NoRepeatNGramLogitsProcessor

            processors = LogitsProcessorList([NoRepeatNGramLogitsProcessor(no_repeat_ngram_size)])
        if processors is None and constraint is None:
            return None
        return cls(processors, start, constraint)

    def apply(self, histories: Sequence[Sequence[int]], logits: torch.Tensor) -> torch.Tensor:
        """Processed ``logits`` (one row per history; every history has the same length)."""
        responses = torch.tensor([list(h[self.start:]) for h in histories], dtype=torch.long).reshape(len(histories), -1)
        responses = responses.to(logits.device)
        out = logits
        if self.processors is not None and responses.shape[1] > 0:
            out = self.processors(responses, logits.clone())
        if self.constraint is None:
            return out
        masked = self.constraint(responses, out.clone())
        stuck = ~torch.isfinite(masked).any(dim=-1)
        if bool(stuck.any()):
            masked[stuck] = self.constraint(responses[stuck], logits[stuck].clone())
        return masked


@dataclass
class Rollout:
    """Tokens one row produced, their joint log-probability under the model, and why the row ended."""

    tokens: list[int]
    logprob: float
    finish: Literal["eos", "clause", "length"]


class LanguageModel(Protocol):
    """What the search and the self-evaluator need from a model: the seam a backend implements without touching the
    search. Every read is one a server can give: sparse top-k next-token log-probabilities (never a full-vocabulary
    tensor), the log-probabilities of named next tokens (the judge's option read-out), and sampled or greedy
    continuations from a seed. `backends.transformers.TransformersBackend` runs the model in this process;
    `backends.served.ServedBackend` asks an OpenAI-compatible server; the unit tests drive the search through a
    scripted fake (tests/fake_model.py).

    Counters: ``forward_calls`` and ``tokens_processed`` count the model's work, judging included (what `rain bench`
    and the equal-compute comparisons read): in-process, forward passes and input positions; on a server, model
    steps (one per request plus one per generated token) and the tokens its ``usage`` reports.

    Optional: ``rollouts_many(groups, generator, guard)`` (several prefixes' rows at once; `parallel_leaves` uses it
    when present, else one `rollouts` call per leaf) and ``pin(ids)`` (a prefix worth keeping encoded).
    """

    tokenizer: Any
    forward_calls: int
    tokens_processed: int

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` without special tokens."""
        ...

    def is_eos(self, token: int) -> bool:
        """Whether ``token`` ends the response (end of text or end of turn)."""
        ...

    def top_logprobs(self, ids: Sequence[int], k: int, guard: ResponseGuard | None = None) -> list[tuple[int, float]]:
        """The ``k`` likeliest tokens after ``ids`` with their log-probabilities, likeliest first; tokens the guard
        rules out are left out (so fewer than ``k`` may come back)."""
        ...

    def option_logprobs(self, rows: Sequence[Sequence[int]], options: Sequence[int]) -> torch.Tensor:
        """Log-probabilities of each of the ``options`` token ids right after each row, shape [rows, options]
        (the judge's read-out of its answer tokens)."""
        ...

    def rollouts(self, ids: Sequence[int], rows: Sequence[RowSpec], generator: torch.Generator,
                 guard: ResponseGuard | None = None, keep: bool = False) -> list[Rollout]:
        """Continue ``ids`` once per row (one batch); each row ends on EOS, its length or (if asked) a clause end.
        ``keep`` is a caching hint for a single row that will be continued (a backend may ignore it)."""
        ...
