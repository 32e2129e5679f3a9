"""RAIN budgets of the LangChain tests: small on the tiny random model (fast), smaller still on SmolLM2 (real)."""

from __future__ import annotations

from rain_core import RainConfig
from rain_langchain import SelfEvaluationPrompt

#: The judge on the tiny model: a lettered rubric (its tokenizer cannot tell "safe" from "unsafe" by first token).
TINY_JUDGE = SelfEvaluationPrompt.from_principles(["Be polite.", "Stay on topic."])

#: A tiny search: every test still runs the real RAIN loop (search, judge, commit), just briefly.
TINY_BUDGET = dict(config=RainConfig(max_new_tokens=8, max_iterations=2, min_iterations=1, num_candidates=2),
                   similarity=False, evaluation_prompt=TINY_JUDGE)
REAL_BUDGET = dict(config=RainConfig(max_new_tokens=16, max_iterations=1, min_iterations=1, num_candidates=2,
                                     max_simulation_tokens=8), similarity=False)
