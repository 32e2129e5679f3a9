"""`rain bench` for this engine and a previous one (a copy made by ``gpu_bench.py prepare``) in one process,
alternating, so both see the same machine load. Prints each round's seconds per inner iteration and the medians.

    OMP_NUM_THREADS=1 python scripts/compare_bench.py --old .bench_old --rounds 2 --max-new-tokens 16 --prompts 1
        [--same-judge] [--search reference|lookahead]

Seconds per iteration depend on the judge (its prompt length, and the tree its values grow: evaluation-cache hits are
cheap iterations, expansions dear), so an engine comparison uses ``--same-judge``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--old", default=".bench_old")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--same-judge", action="store_true",
                        help="give the new engine the old engine's harmless judge (built-in 'harmless-conversation'; "
                             "the default 'harmless' now reads the reply only), so both search the same values")
    parser.add_argument("--search", choices=("reference", "lookahead"), default="reference",
                        help="the search both engines run (an engine older than the choice runs its only one)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(args.old).resolve()))
    import rain_core_old  # type: ignore[import-not-found]
    from rain_core_old.bench import run_bench as old_bench  # type: ignore[import-not-found]

    from rain_core import RainConfig
    from rain_core.bench import run_bench as new_bench

    figures: dict[str, list[float]] = {"old": [], "new": []}
    for round_ in range(args.rounds):
        for name, bench, config in (("old", old_bench, rain_core_old.RainConfig), ("new", new_bench, RainConfig)):
            judge = {"evaluator": "harmless-conversation"} if name == "new" and args.same_judge else {}
            # both engines run the same search (a93ab4f has only the reference one, and no `search` field)
            fields = getattr(config, "__dataclass_fields__", {})
            settings = {"search": args.search} if "search" in fields else {}
            report = bench(model=args.model, device="cpu",
                           config=config(max_new_tokens=args.max_new_tokens, **settings),
                           n_prompts=args.prompts, progress=False, **judge)
            figures[name].append(report["seconds_per_inner_iteration"])
            print(json.dumps({"round": round_, "engine": name, "s_per_iteration": report["seconds_per_inner_iteration"],
                              "iterations": report["inner_iterations"],
                              "rain_s_per_token": report["rain_seconds_per_token"]}), flush=True)
    print(json.dumps({k: {"median_s_per_iteration": statistics.median(v), "rounds": v} for k, v in figures.items()}))


if __name__ == "__main__":
    main()
