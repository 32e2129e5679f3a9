"""``rain bench``: what RAIN costs against plain KV-cached greedy decoding on a few fixed prompts.

Reported: seconds per inner search iteration, seconds per committed token for RAIN and for greedy decoding, and
their ratio; with ``concurrency`` (``rain bench --concurrency 1,4,16``), committed tokens per second when that many
seeded requests run at once on the one loaded model, and the forwards the model ran per committed token (requests
share rollouts and prefills, see docs/performance.md). With ``mode="guard"`` (``rain bench --mode guard``) one run
compares guard mode and full RAIN with plain greedy decoding on two prompt sets, everyday requests
(`BENIGN_PROMPTS`) and the first harmful dev prompts, and reports the share of clauses the judge sent to the search.
Figures are printed, never asserted: speed is measured, not tested.
"""

from __future__ import annotations

import platform
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import torch

from .backends.served.options import ServerOptions
from .config import RainConfig
from .engine import Rain
from .guard import guard_clause_tokens, guard_threshold
from .registry import shared_backend
from .models import load_random_init

BENCH_PROMPTS = (
    "How do I get my neighbor's dog to stop barking at night?",
    "Write a short note thanking a friend for their help with moving.",
    "What should I do if I find a wallet on the street?",
    "Explain why the sky is blue in two sentences.",
)


#: Everyday requests a guard layer should wave through: guard mode's cost when nothing needs correcting.
BENIGN_PROMPTS = (
    "What is a good way to start learning to cook at home?",
    "Can you suggest a name for my new orange cat?",
    "How do I keep basil plants alive on a windowsill?",
    "Write a short birthday message for my grandmother.",
    "What are some tips for sleeping better at night?",
    "How can I make my morning routine less rushed?",
    "Explain how a rainbow forms.",
    "What should I pack for a weekend camping trip?",
    "How do I politely decline an invitation to a party?",
    "Give me three ideas for a quick vegetarian dinner.",
)
#: How many of the harmful dev prompts (hh_redteam_dev.jsonl) the guard bench runs.
HARMFUL_PROMPTS = 8


def run_bench(*, model: str = "smollm2", device: str | None = None, dtype: str | None = None,
              config: RainConfig | None = None, evaluator: str = "harmless", soft: bool | None = None,
              similarity: bool = True, n_prompts: int | None = None, random_init: str | None = None,
              progress: bool = True, concurrency: Sequence[int] = (),
              server: ServerOptions | None = None) -> dict[str, Any]:
    """``server``: bench the model served there (vLLM) instead of in this process; the same prompts and judge."""
    config = config or RainConfig(max_new_tokens=32)
    loaded: Any = load_random_init(random_init, device=device, dtype=dtype) if random_init else model
    backend = shared_backend(loaded, device=device, dtype=dtype, server=server)
    rain = Rain(backend, evaluator=evaluator, config=config, soft=soft, similarity=similarity)
    if config.mode == "guard":
        report = run_guard_bench(rain, n_prompts=n_prompts, progress=progress)
    else:
        report = _full_bench(rain, config, n_prompts=n_prompts, progress=progress)
    if concurrency:
        report["concurrency"] = concurrency_levels(rain, concurrency, progress=progress)
    return report


def concurrency_levels(rain: Rain, counts: Sequence[int], *, progress: bool = False) -> dict[str, Any]:
    """Throughput one request at a time (each bench prompt once, seeds as below) and `concurrent_throughput` at
    each request count, with every level's speedup over one at a time (the same prompt mix, so the figure does not
    depend on which prompt a lone request happens to get)."""
    serial = serial_throughput(rain, len(BENCH_PROMPTS))
    levels: list[dict[str, Any]] = []
    for n in counts:
        level = concurrent_throughput(rain, n)
        level["speedup_vs_one_at_a_time"] = round(level["tokens_per_s"] / serial["tokens_per_s"], 2)
        levels.append(level)
        if progress:
            print(f"[{n} at once] {level['tokens_per_s']} tokens/s ({level['speedup_vs_one_at_a_time']}x one at a "
                  f"time), {level['calls_per_token']} forwards per token", file=sys.stderr, flush=True)
    return {"one_at_a_time": serial, "levels": levels}


def serial_throughput(rain: Rain, n: int, *, seconds: float | None = None, prompts: Sequence[str] = BENCH_PROMPTS,
                      **overrides: Any) -> dict[str, Any]:
    """The requests `concurrent_throughput` would start together (prompt ``i % len(prompts)``, seed ``i``), run one
    after another instead: the baseline its throughput is compared with. With ``seconds``, the request running then
    stops at its next iteration (its committed tokens count) and no further one starts."""
    calls0 = getattr(rain.backend, "model_calls", 0)
    start = time.perf_counter()
    outcomes = []
    for i in range(n):
        outcomes.append(_capped_request(rain, prompts, i, start, seconds, overrides))
        if not outcomes[-1][1]:
            break
    return _throughput(rain, n, outcomes, time.perf_counter() - start, calls0)


def _capped_request(rain: Rain, prompts: Sequence[str], i: int, start: float, seconds: float | None,
                    overrides: dict[str, Any]) -> tuple[int, bool]:
    """Bench request ``i`` (prompt ``i % len(prompts)``, seed ``i``): the tokens it committed, and whether it
    finished before ``seconds`` from ``start`` had passed (else it stopped at its next iteration after that)."""
    live = {"tokens": 0}

    def progress(stats: Any) -> None:
        live["tokens"] = stats.completion_tokens
        if seconds is not None and time.perf_counter() - start > seconds:
            raise _Deadline

    try:
        result = rain.generate(prompts[i % len(prompts)], seed=i, on_progress=progress, **overrides)
    except _Deadline:
        return live["tokens"], False
    return len(result.token_ids), True


def _throughput(rain: Rain, n: int, outcomes: list[tuple[int, bool]], wall: float, calls0: int) -> dict[str, Any]:
    """The figures of ``n`` bench requests that committed ``outcomes`` (tokens, finished) in ``wall`` seconds, the
    model having run ``calls0`` forwards before them."""
    tokens = sum(t for t, _ in outcomes)
    counted = hasattr(rain.backend, "model_calls")  # an engine from before the counter (a benchmark's old copy) has none
    calls = rain.backend.model_calls - calls0 if counted else None
    return {"requests": n, "tokens": tokens, "finished": sum(done for _, done in outcomes), "wall_s": round(wall, 2),
            "tokens_per_s": round(tokens / wall, 3), "model_calls": calls,
            "calls_per_token": round(calls / max(1, tokens), 2) if calls is not None else None}


def _full_bench(rain: Rain, config: RainConfig, *, n_prompts: int | None, progress: bool) -> dict[str, Any]:
    """RAIN against plain greedy decoding, prompt by prompt (the default ``rain bench``)."""
    backend = rain.backend
    prompts = BENCH_PROMPTS[: max(1, n_prompts or 3)]
    rain.generate_plain(prompts[0], max_new_tokens=4)  # warm-up (allocations, kernels)
    runs = []
    for i, prompt in enumerate(prompts):
        plain = rain.generate_plain(prompt)[0]
        started = time.perf_counter()
        result = rain.generate(prompt, seed=config.seed if config.seed is not None else i)
        wall = time.perf_counter() - started
        s = result.stats
        runs.append({"prompt": prompt, "rain_seconds": wall, "rain_tokens": s.completion_tokens,
                     "inner_iterations": s.inner_iterations, "commits": s.commits, "rewinds": s.rewinds,
                     "evaluations": s.evaluations, "forward_calls": s.forward_calls,
                     "tokens_processed": s.tokens_processed, "plain_seconds": plain.stats.wall_seconds,
                     "plain_tokens": plain.stats.completion_tokens})
        if progress:
            print(f"[{i + 1}/{len(prompts)}] {s.inner_iterations} iterations, {s.completion_tokens} tokens, "
                  f"{wall:.1f} s (greedy {plain.stats.wall_seconds:.2f} s)", file=sys.stderr, flush=True)
    rain_s = sum(r["rain_seconds"] for r in runs)
    iterations = sum(r["inner_iterations"] for r in runs)
    rain_tokens = sum(max(1, r["rain_tokens"]) for r in runs)
    plain_s = sum(r["plain_seconds"] for r in runs)
    plain_tokens = sum(max(1, r["plain_tokens"]) for r in runs)
    rain_per_token = rain_s / rain_tokens
    plain_per_token = plain_s / plain_tokens
    return {
        "model": rain.model_name,
        "device": str(backend.device),
        "server": getattr(backend, "base_url", None),
        "device_name": torch.cuda.get_device_name(0) if str(backend.device).startswith("cuda") else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "prompts": len(runs),
        "max_new_tokens": config.max_new_tokens,
        "search": config.search, "max_iterations": config.max_iterations, "min_iterations": config.min_iterations,
        "seconds_per_inner_iteration": round(rain_s / max(1, iterations), 4),
        "rain_seconds_per_token": round(rain_per_token, 4),
        "plain_seconds_per_token": round(plain_per_token, 4),
        "rain_to_plain_time_ratio": round(rain_per_token / plain_per_token, 1),
        "inner_iterations": iterations,
        "runs": runs,
    }


class _Deadline(Exception):
    """Raised from a request's progress callback when its time cap has passed."""


def concurrent_throughput(rain: Rain, n: int, *, seconds: float | None = None,
                          prompts: Sequence[str] = BENCH_PROMPTS, **overrides: Any) -> dict[str, Any]:
    """``n`` seeded requests (prompt ``i % len(prompts)``, seed ``i``) started together from ``n`` threads on one
    engine: committed tokens per second, and the forwards the model actually ran per committed token (a forward
    shared by several requests counts once). With ``seconds``, requests still running then stop at their next
    iteration and count the tokens they committed. ``overrides`` go to every request (e.g. ``search=...``)."""
    if n < 1:
        raise ValueError(f"concurrent requests must be at least 1, got {n}")
    batcher = getattr(rain.backend, "rollout_batcher", None)
    calls0 = getattr(rain.backend, "model_calls", 0)
    merged0 = batcher.merged_forwards if batcher is not None else 0
    rounds0 = batcher.static_rounds if batcher is not None else 0
    barrier = threading.Barrier(n)
    start = 0.0

    def one(i: int) -> tuple[int, bool]:
        barrier.wait()  # start together, so the requests really overlap
        return _capped_request(rain, prompts, i, start, seconds, overrides)

    start = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        outcomes = list(pool.map(one, range(n)))
    return {**_throughput(rain, n, outcomes, time.perf_counter() - start, calls0),
            "merged_rollout_forwards": batcher.merged_forwards - merged0 if batcher is not None else None,
            "static_rounds": batcher.static_rounds - rounds0 if batcher is not None else None}


def harmful_prompts(n: int = HARMFUL_PROMPTS) -> list[str]:
    """The first ``n`` prompts of the harmful dev set (found as ``rain eval harmless`` finds it)."""
    from .eval.tasks import load_rows, make_task, resolve_data

    task = make_task("harmless")
    return [row[task.field] for row in load_rows(task, resolve_data(task, None), n)]


def _per_token(result: Any) -> float:
    return result.stats.wall_seconds / max(1, result.stats.completion_tokens)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def run_guard_bench(rain: Rain, *, n_prompts: int | None = None, progress: bool = True,
                    sets: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Plain greedy, guard mode and full RAIN on each prompt of each set (benign and harmful by default), one after
    the other so that all three see the same machine load. Per set: the median over prompts of seconds per token
    relative to plain greedy, for guard mode and for full RAIN, and the share of drafted clauses that were searched.

    ``n_prompts`` (``rain bench --prompts``) runs only the first prompts of each set; None runs them whole."""
    config = rain.config
    if sets is None:
        sets = {"benign": list(BENIGN_PROMPTS), "harmful": harmful_prompts()}
    if n_prompts is not None:
        sets = {name: prompts[: max(1, n_prompts)] for name, prompts in sets.items()}
    rain.generate_plain(next(iter(sets.values()))[0], max_new_tokens=4)  # warm-up (allocations, kernels)
    rain.judge("Hello", "Hello.")  # and the judge's pinned instructions
    runs: list[dict[str, Any]] = []
    judge = rain.judge_for(config)
    report: dict[str, Any] = {
        "model": rain.model_name, "device": str(rain.backend.device), "torch_threads": torch.get_num_threads(),
        "max_new_tokens": config.max_new_tokens, "guard_threshold": guard_threshold(config, judge),
        "guard_clause_tokens": guard_clause_tokens(config, judge), "guard_horizon": config.guard_horizon,
        "guard_searches": config.guard_searches, "max_iterations": config.max_iterations,
        "min_iterations": config.min_iterations, "sets": {}}
    for name, prompts in sets.items():
        rows = []
        for i, prompt in enumerate(prompts):
            seed = config.seed if config.seed is not None else i
            plain = rain.generate_plain(prompt)[0]
            guard = rain.generate(prompt, mode="guard", seed=seed)
            full = rain.generate(prompt, mode="full", seed=seed)
            g = guard.stats
            row = {"set": name, "prompt": prompt, "plain_seconds_per_token": round(_per_token(plain), 4),
                   "guard_seconds_per_token": round(_per_token(guard), 4),
                   "full_seconds_per_token": round(_per_token(full), 4),
                   "guard_to_plain": round(_per_token(guard) / _per_token(plain), 2),
                   "full_to_plain": round(_per_token(full) / _per_token(plain), 2),
                   "plain_tokens": plain.stats.completion_tokens, "guard_tokens": g.completion_tokens,
                   "full_tokens": full.stats.completion_tokens, "clauses_drafted": g.clauses_drafted,
                   "clauses_rejected": g.clauses_rejected, "guard_searches": g.searches,
                   "guard_iterations": g.inner_iterations, "guard_finish": guard.finish_reason,
                   "full_iterations": full.stats.inner_iterations}
            rows.append(row)
            if progress:
                print(f"[{name} {i + 1}/{len(prompts)}] guard {row['guard_to_plain']}x, full {row['full_to_plain']}x "
                      f"plain; {g.clauses_rejected}/{g.clauses_drafted} clauses searched ({guard.finish_reason})",
                      file=sys.stderr, flush=True)
        drafted = sum(r["clauses_drafted"] for r in rows)
        report["sets"][name] = {
            "prompts": len(rows),
            "guard_to_plain_median": round(_median([r["guard_to_plain"] for r in rows]), 2),
            "full_to_plain_median": round(_median([r["full_to_plain"] for r in rows]), 2),
            "plain_seconds_per_token_median": round(_median([r["plain_seconds_per_token"] for r in rows]), 4),
            "clauses_drafted": drafted,
            "clauses_searched": sum(r["clauses_rejected"] for r in rows),
            "share_of_clauses_searched": round(sum(r["clauses_rejected"] for r in rows) / max(1, drafted), 3),
            "guard_ended_rejected": sum(1 for r in rows if r["guard_finish"] == "rejected"),
        }
        runs.extend(rows)
    report["runs"] = runs
    return report
