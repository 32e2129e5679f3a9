"""Second tier: one sentiment item on the real SmolLM2, every method, with a tiny RAIN budget."""

from __future__ import annotations

import json

import pytest

from rain_core import Rain
from rain_core.eval import run_eval

pytestmark = pytest.mark.real


def test_sentiment_item_on_smollm2(smollm2_backend, tmp_path):
    budget = {"max_iterations": 2, "min_iterations": 1}
    rain = Rain(smollm2_backend, evaluator="sentiment", prompt_format="raw", similarity=False, **budget)
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"prefix": "This movie was a total waste of"}) + "\n", encoding="utf-8")
    summary = run_eval("sentiment", rain=rain, data=str(data), out=tmp_path / "run", n=1, max_new_tokens=6,
                       rain_overrides=budget)
    rain_cost = summary["methods"]["rain"]["mean_tokens"]
    bon = summary["methods"]["bon"]
    assert bon["mean_n"] >= 1 and bon["mean_tokens"] <= rain_cost * 1.5
    assert all(m["n"] == 1 for m in summary["methods"].values())
