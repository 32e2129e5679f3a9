"""Fixtures of the LangChain tests: small RAIN budgets on the tiny random model (fast) and on SmolLM2 (real)."""

from __future__ import annotations

import pytest

from rain_core import RainConfig
from rain_langchain import SelfEvaluationPrompt

#: The judge on the tiny model: a lettered rubric (its tokenizer cannot tell "safe" from "unsafe" by first token).
TINY_JUDGE = SelfEvaluationPrompt.from_principles(["Be polite.", "Stay on topic."])

#: A tiny search: every test still runs the real RAIN loop (search, judge, commit), just briefly.
TINY_BUDGET = dict(config=RainConfig(max_new_tokens=8, max_iterations=2, min_iterations=1, num_candidates=2),
                   similarity=False, evaluation_prompt=TINY_JUDGE)
REAL_BUDGET = dict(config=RainConfig(max_new_tokens=16, max_iterations=1, min_iterations=1, num_candidates=2,
                                     max_simulation_tokens=8), similarity=False)


@pytest.fixture(scope="session")
def tiny_llm(tiny_backend):
    from rain_langchain import RainLLM

    return RainLLM(model=tiny_backend, seed=0, **TINY_BUDGET)


@pytest.fixture(scope="session")
def tiny_chat(tiny_backend):
    from rain_langchain import ChatRain

    return ChatRain(model=tiny_backend, seed=0, **TINY_BUDGET)
