"""The decoding methods compared: plain greedy, one plain sample, RAIN, Best-of-N at RAIN's compute, RAIN in guard
mode (plain drafting, search only where the judge rejects a clause), and Best-of-N at guard mode's compute.

Every method returns an `Outcome`: the output text, what it cost in model tokens (input positions the model ran,
counted by the backend, judging included where the method judges), wall seconds, and method-specific details.

Best-of-N at equal compute: RAIN spends model tokens on simulations, expansions and self-evaluations. BoN gets the
same number of tokens for the same item: it samples complete answers in batches and scores every one with the
same self-evaluator (`Rain.judge`), spending until another candidate would exceed RAIN's count, and keeps the best
(ties: the earliest sample). Its spend is measured, not estimated: backend token counter deltas around the sampling
and around each judgement.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import RainError

METHODS = ("vanilla-greedy", "vanilla-sample", "rain", "bon", "rain-guard", "bon-guard")
ALIASES = {"vanilla": ("vanilla-greedy", "vanilla-sample"), "greedy": ("vanilla-greedy",),
           "sample": ("vanilla-sample",), "sampled": ("vanilla-sample",), "best-of-n": ("bon",),
           "guard": ("rain-guard",)}
#: Each Best-of-N method and the method whose per-item token count it gets.
BON_BUDGET_OF = {"bon": "rain", "bon-guard": "rain-guard"}
#: BoN samples in batches of at most this many answers (memory stays small; one batch per forward step).
BON_BATCH = 32


@dataclass
class Outcome:
    output: str
    tokens: int
    seconds: float
    finish_reason: str
    details: dict[str, Any] = field(default_factory=dict)


def parse_methods(spec: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"vanilla,bon,rain"`` -> the method ids in run order (RAIN before BoN, which needs RAIN's cost; rain-guard
    before bon-guard, BoN at rain-guard's cost, which needs rain-guard)."""
    names = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not names:
        raise RainError("No methods given; use e.g. --methods vanilla,bon,rain.")
    chosen: set[str] = set()
    for name in names:
        if name in ALIASES:
            chosen.update(ALIASES[name])
        elif name in METHODS:
            chosen.add(name)
        else:
            raise RainError(f"Unknown method {name!r}; choose from vanilla (= greedy and sampled), "
                            f"{', '.join(METHODS)}.")
    if "bon-guard" in chosen and "rain-guard" not in chosen:
        raise RainError("Method bon-guard is Best-of-N at rain-guard's token count; add rain-guard to the methods.")
    return [m for m in METHODS if m in chosen]


def run_plain(rain: Any, prompt: str, *, sample: bool, seed: int, max_new_tokens: int,
              prompt_format: str | None = None) -> Outcome:
    result = rain.generate_plain(prompt, sample=sample, seed=seed, max_new_tokens=max_new_tokens,
                                 prompt_format=prompt_format)[0]
    return Outcome(output=result.text, tokens=result.stats.tokens_processed, seconds=result.stats.wall_seconds,
                   finish_reason=result.finish_reason, details={"completion_tokens": result.stats.completion_tokens})


def run_rain(rain: Any, prompt: str, *, seed: int, max_new_tokens: int, prompt_format: str | None = None,
             on_progress: Any = None, **budget: Any) -> Outcome:
    """RAIN with ``budget`` overrides of the engine's config (max_iterations, value_threshold, mode, ...)."""
    result = rain.generate(prompt, seed=seed, max_new_tokens=max_new_tokens, prompt_format=prompt_format,
                           on_progress=on_progress, **budget)
    stats = result.stats.to_dict()
    return Outcome(output=result.text, tokens=result.stats.tokens_processed, seconds=result.stats.wall_seconds,
                   finish_reason=result.finish_reason, details={"rain_stats": stats})


def run_best_of_n(rain: Any, prompt: str, *, seed: int, max_new_tokens: int, budget_tokens: int | None = None,
                  n: int | None = None, prompt_format: str | None = None) -> Outcome:
    """Sample answers and keep the one the self-evaluator scores highest.

    Exactly one of ``budget_tokens`` (equal compute: spend at most this many model tokens, sampling and judging
    together, with at least one candidate) and ``n`` (a fixed number of candidates) must be given.
    """
    if (budget_tokens is None) == (n is None):
        raise ValueError("run_best_of_n needs exactly one of budget_tokens and n")
    backend = rain.backend
    start = time.perf_counter()
    calls0 = backend.forward_calls
    spent = 0
    candidates: list[dict[str, Any]] = []
    prompt_cost = 0  # tokens one sampling call spends on the prompt itself
    prompt_spent = 0  # prompt tokens over all sampling calls so far
    batch_index = 0
    while True:
        if n is not None:
            size = min(BON_BATCH, n - len(candidates))
        elif not candidates:
            size = 1  # a pilot that measures what one candidate costs on this item (a bigger pilot would overspend
            # on items where RAIN stopped after one or two rollouts)
        else:
            per_candidate = (spent - prompt_spent) / len(candidates)  # measured: sampled tokens plus judgement
            size = math.floor((budget_tokens - spent - prompt_cost) / max(per_candidate, 1.0))
            size = min(BON_BATCH, size)
        if size < 1:
            break
        before = backend.tokens_processed
        samples = rain.generate_plain(prompt, sample=True, num_samples=size, seed=seed + 7919 * batch_index,
                                      max_new_tokens=max_new_tokens, prompt_format=prompt_format)
        sampling = backend.tokens_processed - before
        prompt_cost = samples[0].stats.prompt_tokens
        prompt_spent += prompt_cost
        judging = 0
        for sample in samples:
            before = backend.tokens_processed
            score = float(rain.judge(prompt, sample.text, prompt_format=prompt_format))
            cost = backend.tokens_processed - before
            judging += cost
            candidates.append({"text": sample.text, "score": score, "finish_reason": sample.finish_reason,
                               "completion_tokens": sample.stats.completion_tokens, "judge_tokens": cost})
        spent += sampling + judging
        batch_index += 1
        if n is not None and len(candidates) >= n:
            break
    best = max(range(len(candidates)), key=lambda i: (candidates[i]["score"], -i))
    chosen = candidates[best]
    scores = [c["score"] for c in candidates]
    details = {"n": len(candidates), "budget_tokens": budget_tokens, "forward_calls": backend.forward_calls - calls0,
               "batches": batch_index, "chosen_index": best,
               "chosen_score": chosen["score"], "tied_at_best": scores.count(chosen["score"]),
               "mean_candidate_score": sum(scores) / len(scores), "candidate_scores": scores}
    return Outcome(output=chosen["text"], tokens=spent, seconds=time.perf_counter() - start,
                   finish_reason=chosen["finish_reason"], details=details)
