"""``rain bench``: what RAIN costs against plain KV-cached greedy decoding on a few fixed prompts.

Reported: seconds per inner search iteration, seconds per committed token for RAIN and for greedy decoding, and
their ratio. Figures are printed, never asserted: speed is measured, not tested.
"""

from __future__ import annotations

import platform
import sys
import time
from typing import Any

import torch

from .config import RainConfig
from .engine import Rain
from .registry import shared_backend
from .models import load_random_init

BENCH_PROMPTS = (
    "How do I get my neighbor's dog to stop barking at night?",
    "Write a short note thanking a friend for their help with moving.",
    "What should I do if I find a wallet on the street?",
    "Explain why the sky is blue in two sentences.",
)


def run_bench(*, model: str = "smollm2", device: str | None = None, dtype: str | None = None,
              config: RainConfig | None = None, evaluator: str = "harmless", soft: bool = False,
              similarity: bool = True, n_prompts: int = 3, random_init: str | None = None,
              progress: bool = True) -> dict[str, Any]:
    config = config or RainConfig(max_new_tokens=32)
    loaded: Any = load_random_init(random_init, device=device, dtype=dtype) if random_init else model
    backend = shared_backend(loaded, device=device, dtype=dtype)
    rain = Rain(backend, evaluator=evaluator, config=config, soft=soft, similarity=similarity)
    prompts = BENCH_PROMPTS[: max(1, n_prompts)]
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
        "device_name": torch.cuda.get_device_name(0) if str(backend.device).startswith("cuda") else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "prompts": len(runs),
        "max_new_tokens": config.max_new_tokens,
        "seconds_per_inner_iteration": round(rain_s / max(1, iterations), 4),
        "rain_seconds_per_token": round(rain_per_token, 4),
        "plain_seconds_per_token": round(plain_per_token, 4),
        "rain_to_plain_time_ratio": round(rain_per_token / plain_per_token, 1),
        "inner_iterations": iterations,
        "runs": runs,
    }
