"""Seeded RAIN runs on the tiny model whose outputs were recorded before the search learned parallel leaves.

`python tests/core/golden_runs.py` rewrites ``data/search_golden.json`` (done once, on main at a93ab4f);
test_parallel.py checks that ``parallel_leaves=1`` still reproduces every recorded run token for token.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

GOLDEN = Path(__file__).parent / "data" / "search_golden.json"
PROMPTS = ("How are you today?", "Write a review of the movie.")
CASES = (
    {"name": "harmless-hidden", "evaluator": "harmless-letters", "similarity": "hidden", "soft": False},
    {"name": "sentiment-soft", "evaluator": "sentiment", "similarity": False, "soft": True},
    {"name": "length-judge", "evaluator": "length", "similarity": "hidden", "soft": False},
)


def length_judge(text: str) -> float:
    """A judge that prefers short conversations: deterministic and independent of the model."""
    return max(-1.0, 1.0 - len(text) / 120.0)


def run_case(rain_cls, backend, case: dict, prompt: str, seed: int, **overrides) -> dict:
    evaluator = length_judge if case["evaluator"] == "length" else case["evaluator"]
    rain = rain_cls(backend, evaluator=evaluator, similarity=case["similarity"], soft=case["soft"])
    result = rain.generate(prompt, seed=seed, max_new_tokens=14, **overrides)
    return {"tokens": result.token_ids, "inner_iterations": result.stats.inner_iterations,
            "evaluations": result.stats.evaluations}


def record() -> dict:
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from tiny_model import build_tiny_model

    from rain_core import Rain, shared_backend

    torch.set_num_threads(1)
    backend = shared_backend(build_tiny_model(seed=0))
    out = {}
    for case in CASES:
        for i, prompt in enumerate(PROMPTS):
            out[f"{case['name']}/{i}"] = run_case(Rain, backend, case, prompt, seed=11 + i, search="reference")
    return out


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(record(), indent=1) + "\n")
    print(GOLDEN.read_text()[:400])
