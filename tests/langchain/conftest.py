"""Fixtures of the LangChain tests: small RAIN budgets on the tiny random model (fast) and on SmolLM2 (real)."""

from __future__ import annotations

import pytest

from lc_budgets import TINY_BUDGET  # a uniquely named module: "conftest" is also tests/llamaindex's


@pytest.fixture(scope="session")
def tiny_llm(tiny_backend):
    from rain_langchain import RainLLM

    return RainLLM(model=tiny_backend, seed=0, **TINY_BUDGET)


@pytest.fixture(scope="session")
def tiny_chat(tiny_backend):
    from rain_langchain import ChatRain

    return ChatRain(model=tiny_backend, seed=0, **TINY_BUDGET)
