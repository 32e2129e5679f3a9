"""The judgement's default is declared once (`RainConfig.soft`, from `STRATEGY_DEFAULTS`): the lookahead search and
guard mode on it score by probability margin, the reference search keeps the paper's hard vote, an explicit value
wins everywhere, and every surface (the engine, its per-call config, the CLI, both integrations) reads the same
declaration."""

from __future__ import annotations

import pytest

from rain_core import Rain, RainConfig
from rain_core.cli import build_parser
from rain_core.cli_options import config_from
from rain_core.errors import ConfigError
from rain_core.evaluator import EvaluationPrompt, SelfEvaluator
from rain_core.exchange import Exchange


def test_each_strategy_declares_its_judgement_and_an_explicit_value_wins():
    assert RainConfig().soft is True and RainConfig(mode="guard").soft is True
    assert RainConfig(search="reference").soft is False
    assert RainConfig().updated(search="reference").soft is False  # the strategy's default follows the strategy
    assert RainConfig(search="reference").updated(search="lookahead").soft is True
    assert RainConfig(soft=False).updated(search="lookahead", max_iterations=4).soft is False
    assert RainConfig(search="reference", soft=True).soft is True
    with pytest.raises(ConfigError, match="soft"):
        RainConfig(soft="yes")


def test_cli_takes_soft_and_no_soft_and_leaves_it_to_the_strategy_otherwise():
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction").choices["generate"]
    assert config_from(sub.parse_args(["hi"])).soft is True
    assert config_from(sub.parse_args(["hi", "--no-soft"])).soft is False
    assert config_from(sub.parse_args(["hi", "--search", "reference"])).soft is False
    assert config_from(sub.parse_args(["hi", "--search", "reference", "--soft"])).soft is True


def test_the_engine_judges_as_each_request_config_says(tiny_backend):
    rain = Rain(tiny_backend, evaluator="sentiment", similarity=False)
    assert rain.evaluator.soft is True
    assert rain.judge_for(rain.resolve_config(None, {"search": "reference"})).soft is False
    hard = Rain(tiny_backend, evaluator="sentiment", similarity=False, soft=False)
    assert hard.config.soft is False and hard.evaluator.soft is False
    assert hard.judge_for(hard.resolve_config(None, {"search": "lookahead"})).soft is False  # explicit: kept
    # the graded score is what the search reads: a hard vote is one of three values
    ex = Exchange(prompt="", response="A lovely, warm film.", history="", raw=True)
    assert rain.evaluator.score(ex) not in (-1.0, 0.0, 1.0)
    assert rain.judge_for(RainConfig(soft=False)).score(ex) in (-1.0, 0.0, 1.0)


def test_a_passed_evaluator_keeps_its_own_scoring_unless_the_config_sets_soft(tiny_backend):
    mine = SelfEvaluator(tiny_backend, EvaluationPrompt.builtin("sentiment"), soft=False)
    rain = Rain(tiny_backend, evaluator=mine, similarity=False)
    assert rain.judge_for(rain.config) is mine
    assert rain.judge_for(rain.config.updated(soft=True)).soft is True


def test_the_two_scorings_share_one_judge_and_its_caches(tiny_backend):
    judge = SelfEvaluator(tiny_backend, EvaluationPrompt.builtin("sentiment"), soft=True)
    hard = judge.scoring(False)
    assert hard is judge.scoring(False) and hard.scoring(True) is judge and judge.scoring(True) is judge
    ex = Exchange(prompt="", response="Dull and far too long.", history="", raw=True)
    soft_score = judge.score(ex)
    calls = tiny_backend.forward_calls
    assert hard.score(ex) == float((judge.good_probabilities(ex)[0] > 0.5) + (judge.good_probabilities(ex)[1] > 0.5) - 1)
    assert hard._baselines is judge._baselines and soft_score == judge.score(ex)
    assert calls <= tiny_backend.forward_calls


def test_integrations_inherit_the_declaration(tiny_backend):
    from rain_langchain import ChatRain
    from rain_llamaindex import RainLLM

    assert ChatRain(model=tiny_backend, similarity=False).rain_config({}).soft is True
    assert ChatRain(model=tiny_backend, similarity=False, search="reference").judge_soft is False
    assert RainLLM(tiny_backend, similarity=False, soft=False).rain_config({}).soft is False
    assert RainLLM(tiny_backend, similarity=False).rain_config({"soft": False}).soft is False


def test_guard_threshold_follows_the_scoring_unless_given():
    """The soft judge scores plain text just above 0, so its guard threshold is 0.1; the hard vote's stays 0."""
    assert RainConfig(mode="guard").guard_threshold == 0.1
    assert RainConfig(mode="guard", soft=False).guard_threshold == 0.0
    assert RainConfig(mode="guard").updated(search="reference").guard_threshold == 0.0
    assert RainConfig(mode="guard").updated(soft=False).guard_threshold == 0.0
    assert RainConfig(guard_threshold=0.3).updated(soft=False).guard_threshold == 0.3
