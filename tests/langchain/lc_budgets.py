"""RAIN budgets of the LangChain tests: small on the tiny random model (fast), smaller still on SmolLM2 (real)."""

from __future__ import annotations

from rain_core import EvaluationPrompt, RainConfig
from rain_langchain import SelfEvaluationPrompt

#: The judge on the tiny model: a short lettered question (its tokenizer cannot tell "safe" from "unsafe" by first
#: token, and the built-in few-shot lettered prompt is longer than its context).
TINY_JUDGE = SelfEvaluationPrompt(evaluation=EvaluationPrompt(
    name="tiny-letters", instructions="Judge the assistant's reply.\n\n", item="Conversation:{conversation}\n\n",
    question="Question: Does the reply follow the rules?", good="It follows the rules.", bad="It breaks a rule."))

#: A tiny search: every test still runs the real RAIN loop (search, judge, commit), just briefly.
TINY_BUDGET = dict(config=RainConfig(max_new_tokens=8, max_iterations=2, min_iterations=1, num_candidates=2),
                   similarity=False, evaluation_prompt=TINY_JUDGE)
REAL_BUDGET = dict(config=RainConfig(max_new_tokens=16, max_iterations=1, min_iterations=1, num_candidates=2,
                                     max_simulation_tokens=8), similarity=False)
