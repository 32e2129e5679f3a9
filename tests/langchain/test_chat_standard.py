"""LangChain's standard chat-model suites for `ChatRain`.

- Unit suite and a text-only integration suite on the tiny random model (fast tier): they test plumbing, so tool
  calling is declared unsupported there (random weights cannot write a tool call).
- The full integration suite, tool calling included, on the real SmolLM2 with a tiny RAIN budget and
  ``no_repeat_ngram_size=3`` (``real`` and ``slow``, run by `make test-standard-real`, 3-7 min). It is kept out of
  `make test` because a 135M model fails its 2 agent-loop tests (it never calls a tool unless forced); nothing is
  marked xfail.
"""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from rain_langchain import ChatRain

from lc_budgets import REAL_BUDGET, TINY_BUDGET


class _OnBackend:
    """Hands the session's loaded backend to the suite's model parameters."""

    backend = None

    @property
    def chat_model_class(self) -> type[ChatRain]:
        return ChatRain

    @property
    def chat_model_params(self) -> dict:
        return {"model": type(self).backend, "seed": 0, **self.budget}


class TestChatRainUnit(_OnBackend, ChatModelUnitTests):
    budget = TINY_BUDGET

    @pytest.fixture(autouse=True)
    def _backend(self, tiny_backend):
        type(self).backend = tiny_backend


class TestChatRainTinyIntegration(_OnBackend, ChatModelIntegrationTests):
    budget = TINY_BUDGET

    @pytest.fixture(autouse=True)
    def _backend(self, tiny_backend):
        type(self).backend = tiny_backend

    @property
    def has_tool_calling(self) -> bool:
        return False  # random weights: covered on SmolLM2 below


@pytest.mark.real
@pytest.mark.slow
class TestChatRainSmolLM2Integration(_OnBackend, ChatModelIntegrationTests):
    # no repeated 3-gram: left alone, SmolLM2 fills a forced JSON string with one phrase over and over
    budget = {**REAL_BUDGET, "config": REAL_BUDGET["config"].updated(no_repeat_ngram_size=3)}

    @pytest.fixture(autouse=True)
    def _backend(self, smollm2_backend):
        type(self).backend = smollm2_backend
