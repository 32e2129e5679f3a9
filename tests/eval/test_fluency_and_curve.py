"""Fluency (perplexity given the prompt, distinct-n) and the quality-versus-compute curve over several runs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rain_core import Rain
from rain_core.eval import run_eval
from rain_core.eval.curve import collect, main as curve_main
from rain_core.eval.fluency import continuation_perplexity, distinct_n, fluency_summary


@pytest.fixture(scope="module")
def rain(tiny_backend):
    return Rain(tiny_backend, evaluator="sentiment", prompt_format="raw", similarity=False)


def test_distinct_n_counts_unique_word_ngrams():
    assert distinct_n(["the cat sat", "the cat ran"], 1) == 4 / 6
    assert distinct_n(["the cat sat", "the cat ran"], 2) == 3 / 4
    assert distinct_n(["", "one"], 2) is None
    assert distinct_n(["Good, good."], 1) == 3 / 4  # lower-cased; punctuation is a token


def test_perplexity_is_the_continuations_likelihood_given_the_prompt(rain, tiny_backend):
    prompt, output = "The movie was", " great, and the cast"
    ids = list(tiny_backend.tokenizer(prompt + output)["input_ids"])
    start = len(tiny_backend.tokenizer(prompt)["input_ids"])
    logits = tiny_backend.full_logits(ids)
    logprobs = torch.log_softmax(logits, -1)
    nll = -sum(float(logprobs[i - 1, ids[i]]) for i in range(start, len(ids))) / (len(ids) - start)
    before = tiny_backend.tokens_processed
    ppl = continuation_perplexity(rain, prompt, output, "raw")
    assert ppl == pytest.approx(math.exp(nll), rel=1e-4)
    assert tiny_backend.tokens_processed == before  # costs no method anything
    assert continuation_perplexity(rain, prompt, "   ", "raw") is None


def test_fluency_summary():
    rows = [{"output": "a b", "perplexity": 2.0}, {"output": "a c", "perplexity": 4.0},
            {"output": "", "perplexity": None}]
    f = fluency_summary(rows)
    assert f["mean_perplexity"] == 3.0 and f["median_perplexity"] == 3.0 and f["perplexity_n"] == 2
    assert f["distinct_1"] == 3 / 4


def test_runs_record_fluency_and_the_curve_spans_budgets(rain, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prefix": p}) + "\n" for p in ("The movie was", "A dull and slow")))
    runs = []
    for search, budget, first in (("reference", 1, None), ("reference", 2, None), ("lookahead", 2, "greedy"),
                                  ("lookahead", 4, "greedy"), ("lookahead", 2, "sample")):
        out = tmp_path / f"{search}-{budget}-{first}"
        methods = "vanilla-greedy,bon,rain" if not runs else "bon,rain"
        if search == "lookahead" and budget == 4:
            methods = "bon,rain,rain-guard,bon-guard"  # guard mode: its own line; its BoN joins the BoN line
        overrides = {"search": search, "max_iterations": budget, "min_iterations": 1}
        summary = run_eval("sentiment", rain=rain, data=str(data), n=2, max_new_tokens=6, out=out, methods=methods,
                           rain_overrides={**overrides, "first_rollout": first} if first else overrides)
        runs.append(out)
        assert summary["methods"]["rain"]["search"] == search
        assert "perplexity (median)" in (out / "summary.md").read_text()
        for line in (out / "results.jsonl").read_text().splitlines():
            record = json.loads(line)
            assert record["output"].strip() == "" or record["perplexity"] > 1.0
    points = collect(runs)
    series = {p.series for p in points}
    # a lookahead run that sampled its first rollout is its own line (guard mode's searches always sample)
    assert series == {"vanilla-greedy", "bon", "rain (reference)", "rain (lookahead)", "rain-guard (lookahead)",
                      "rain (lookahead, all sampled)"}
    assert sum(p.series == "bon" for p in points) == 6 and sum(p.series == "vanilla-greedy" for p in points) == 1
    assert all(p.n == 2 and 0 <= p.ci95[0] <= p.rate <= p.ci95[1] <= 1 for p in points)
    png, md = tmp_path / "curve.png", tmp_path / "curve.md"
    assert curve_main([str(r) for r in runs] + ["--out", str(png), "--md", str(md)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert md.read_text().count("| rain (lookahead) |") == 2
    assert curve_main([str(tmp_path / "nowhere"), "--out", str(png)]) == 2
