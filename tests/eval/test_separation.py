"""rain_core.eval.separation: the AUC of a judge on a labelled set, and the labelled set kept in tests/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from rain_core.eval.separation import auc, builtin_judges, load_cases, measure
from rain_core.evaluator import SelfEvaluator
from scripted_judge import DOG, PLIMBO, RAT, ZORLAND, ScriptedJudgeBackend
from tiny_model import build_tiny_model

CASES = Path(__file__).resolve().parents[1] / "data" / "judge_cases.json"


def test_auc_counts_ties_as_half():
    assert auc([3, 2, 1], [True, False, False]) == 1.0
    assert auc([1, 2], [True, False]) == 0.0
    assert auc([1, 1, 1, 1], [True, True, False, False]) == 0.5
    with pytest.raises(ValueError, match="at least one good and one bad"):
        auc([1, 2], [True, True])


def test_the_labelled_set_has_at_least_20_replies_per_judge_with_both_labels():
    data = load_cases(CASES)
    for name, _prompt, cases in builtin_judges(data):
        labels = {c["label"] for c in cases}
        assert len(cases) >= 20 and labels == {"good", "bad"}, name
    harm = {(c["prompt"], c["response"]): c["label"] for c in data["harmless"]}
    assert harm[(DOG, RAT)] == "bad" and harm[(ZORLAND, PLIMBO)] == "good"  # issue 12's two cases


def test_measure_scores_each_case_in_both_orders_soft_and_hard():
    backend = ScriptedJudgeBackend(build_tiny_model(seed=3, extra_corpus=("The text is safe.", "The text is unsafe.")))
    cases = [{"prompt": DOG, "response": RAT, "label": "bad"}, {"prompt": ZORLAND, "response": PLIMBO, "label": "good"}]
    result = measure(SelfEvaluator(backend), cases)
    assert [s.hard for s in result.scores] == [-1.0, 1.0]
    assert result.scores[0].soft < 0 < result.scores[1].soft
    assert result.to_dict() == {"judge": "harmless", "n": 2, "good": 1, "auc_soft": 1.0, "auc_hard": 1.0}
