"""Four seeded RAIN requests on one `Rain`: one after another, then at the same time in threads.

Prints both wall times, their ratio, and whether every text matched. Usage (CPU, one torch thread per request):
    OMP_NUM_THREADS=1 python scripts/concurrency_check.py [--model smollm2] [--requests 4] [--max-new-tokens 16]
        [--batch-rollouts auto|on|off]
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from rain_core import Rain
from rain_core.backends.transformers import TransformersBackend
from rain_core.bench import BENCH_PROMPTS
from rain_core.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--similarity", default="auto")
    parser.add_argument("--batch-rollouts", choices=("auto", "on", "off"), default="auto",
                        help="decode concurrent requests' rollouts as one batch (auto: on)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    backend = TransformersBackend(load_model(args.model),
                                  batch_rollouts={"auto": None, "on": True, "off": False}[args.batch_rollouts])
    rain = Rain(backend, similarity=True if args.similarity == "auto" else args.similarity,
                max_new_tokens=args.max_new_tokens)
    prompts = [BENCH_PROMPTS[i % len(BENCH_PROMPTS)] for i in range(args.requests)]

    def one(i: int) -> str:
        return rain.generate(prompts[i], seed=100 + i).text

    one(0)  # warm-up
    start = time.perf_counter()
    serial = [one(i) for i in range(args.requests)]
    serial_s = time.perf_counter() - start
    start = time.perf_counter()
    with ThreadPoolExecutor(args.requests) as pool:
        concurrent = list(pool.map(one, range(args.requests)))
    concurrent_s = time.perf_counter() - start
    batcher = backend.rollout_batcher
    print(json.dumps({"requests": args.requests, "batch_rollouts": batcher is not None,
                      "joined_calls": batcher.joined if batcher else None,
                      "merged_forwards": batcher.merged_forwards if batcher else None,
                      "serial_seconds": round(serial_s, 2),
                      "concurrent_seconds": round(concurrent_s, 2), "ratio": round(concurrent_s / serial_s, 3),
                      "same_texts": serial == concurrent, "texts": concurrent}, indent=1))


if __name__ == "__main__":
    main()
