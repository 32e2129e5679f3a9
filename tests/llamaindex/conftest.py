"""Fixtures of the LlamaIndex tests: small RAIN budgets on the tiny random model (fast) and on SmolLM2 (real)."""

from __future__ import annotations

import pytest

from rain_core import EvaluationPrompt, RainConfig
from rain_llamaindex import RainEvaluationPrompt

#: The judge on the tiny model: a short lettered question (its tokenizer cannot tell "safe" from "unsafe" by first
#: token, and the built-in few-shot lettered prompt is longer than its context).
TINY_JUDGE = RainEvaluationPrompt(EvaluationPrompt(
    name="tiny-letters", instructions="Judge the assistant's reply.\n\n", item="Conversation:{conversation}\n\n",
    question="Question: Does the reply follow the rules?", good="It follows the rules.", bad="It breaks a rule."))

#: A tiny search: every test still runs the real RAIN loop (search, judge, commit), just briefly.
TINY_BUDGET = dict(config=RainConfig(max_new_tokens=8, max_iterations=2, min_iterations=1, num_candidates=2),
                   similarity=False, evaluation_prompt=TINY_JUDGE)


@pytest.fixture(scope="session")
def tiny_judge():
    return TINY_JUDGE


@pytest.fixture(scope="session")
def tiny_budget():
    return dict(TINY_BUDGET)


@pytest.fixture(scope="session")
def tiny_llm(tiny_backend):
    from rain_llamaindex import RainLLM

    return RainLLM(tiny_backend, seed=0, **TINY_BUDGET)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run the models on one intra-op thread. On this 2-core machine, shared with other jobs, two threads mostly
    wait on each other: measured on SmolLM2, one RAIN answer took 20.6 s on 2 threads and 3.7 s on 1 (a worker
    thread, as in the async paths, already runs on 1: 4.2 s); the tiny model gains as much."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


#: A short ReAct system header with one worked example: small models copy the format of an example far more
#: reliably than they follow the default header's instructions (and the tiny model's context fits it).
REACT_HEADER = """You answer questions. You have these tools:
{tool_desc}

Use a tool like this:
Thought: I need to use a tool.
Action: one of {tool_names}
Action Input: {{"word": "apple"}}

Then you get an Observation. When you know the answer, write:
Thought: I can answer now.
Answer: the answer

Example:
Question: How many letters are in the word "apple"?
Thought: I need to use a tool.
Action: count_letters
Action Input: {{"word": "apple"}}
Observation: 5
Thought: I can answer now.
Answer: 5
"""


def count_letters(word: str) -> int:
    """Count the letters of a word."""
    return len(word.strip().strip('"'))


@pytest.fixture
def react_agent():
    """A workflow ReActAgent with the short header and the count_letters tool, for a given LLM."""
    from llama_index.core.agent.react import ReActChatFormatter
    from llama_index.core.agent.workflow import ReActAgent
    from llama_index.core.tools import FunctionTool

    def make(llm, **kwargs):
        return ReActAgent(tools=[FunctionTool.from_defaults(count_letters)], llm=llm,
                          formatter=ReActChatFormatter.from_defaults(system_header=REACT_HEADER), **kwargs)

    return make
