"""Real pipelines on SmolLM2 (CPU, small RAIN budgets): an LCEL chain, a guarded RAG chain over MiniLM embeddings,
a classic text ReAct agent, and `create_agent` driving prompt-based tool calls. Each prints its wall time."""

from __future__ import annotations

import time

import pytest
from langchain_core.documents import Document
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_core.tools import tool
from langchain_core.vectorstores import InMemoryVectorStore

from rain_core import RainConfig
from rain_langchain import ChatRain, RainEmbeddings, RainLLM, SelfEvaluationPrompt

pytestmark = pytest.mark.real

BUDGET = RainConfig(max_new_tokens=24, max_iterations=1, min_iterations=1, num_candidates=2, max_simulation_tokens=8,
                    seed=0)


@pytest.fixture(scope="module")
def chat(smollm2_backend):
    return ChatRain(model=smollm2_backend, config=BUDGET, similarity=False)


def _timed(label, fn):
    start = time.perf_counter()
    out = fn()
    print(f"\n[{label}] {time.perf_counter() - start:.1f} s")
    return out


def test_lcel_chain(smollm2_backend):
    llm = RainLLM(model=smollm2_backend, config=BUDGET, similarity=False)
    chain = PromptTemplate.from_template("Name one fruit that is {color}. Answer in one sentence.") | llm | \
        StrOutputParser()
    answer = _timed("LCEL chain", lambda: chain.invoke({"color": "yellow"}))
    assert isinstance(answer, str) and answer.strip()
    assert "Name one fruit" not in answer  # only new text


FACTS = ["Plimbo is the capital city of Zorland.", "The river Vask flows through the town of Dunmere.",
         "Zorland's national dish is a soup of lentils and dates.", "Dunmere hosts a kite festival every spring."]


def test_rag_chain_with_guard(chat, minilm_path):
    store = InMemoryVectorStore(RainEmbeddings(minilm_path))
    store.add_documents([Document(page_content=f) for f in FACTS])
    retriever = store.as_retriever(search_kwargs={"k": 1})
    prompt = ChatPromptTemplate.from_messages([("human", "Context: {context}\n\nQuestion: {question}\nAnswer in one "
                                                         "short sentence using the context.")])
    rag = {"context": retriever | (lambda docs: "\n".join(d.page_content for d in docs)),
           "question": RunnablePassthrough()} | prompt | chat | StrOutputParser()
    judge = SelfEvaluationPrompt.harmless().as_judge(chat)
    guarded = {"input": RunnablePassthrough(), "output": rag} | RunnablePassthrough.assign(verdict=judge)

    question = "What is the capital of Zorland?"
    assert retriever.invoke(question)[0].page_content == FACTS[0]
    result = _timed("RAG chain + guard", lambda: guarded.invoke(question))
    print("answer:", result["output"], "| verdict:", result["verdict"])
    assert "Plimbo" in result["output"]
    assert -1 <= result["verdict"]["score"] <= 1


REACT = """Answer the question. You can use these tools:

{tools}

Use this format:

Question: the question
Thought: what to do
Action: one of [{tool_names}]
Action Input: the input of the action
Observation: the result of the action
Thought: I now know the final answer
Final Answer: the answer

Example:
Question: How many letters are in the word "apple"?
Thought: I should count the letters with a tool.
Action: count_letters
Action Input: apple
Observation: 5
Thought: I now know the final answer
Final Answer: 5

Question: {input}
Thought:{agent_scratchpad}"""


@tool
def count_letters(word: str) -> int:
    """Count the letters of a word."""
    return len(word.strip().strip('"'))


def test_classic_react_agent(smollm2_backend):
    from langchain_classic.agents import AgentExecutor, create_react_agent

    llm = RainLLM(model=smollm2_backend, config=BUDGET.updated(max_new_tokens=40), similarity=False,
                  prompt_format="raw")
    agent = create_react_agent(llm, [count_letters], PromptTemplate.from_template(REACT))
    executor = AgentExecutor(agent=agent, tools=[count_letters], max_iterations=2, handle_parsing_errors=True,
                             return_intermediate_steps=True)
    result = _timed("ReAct agent", lambda: executor.invoke({"input": 'How many letters are in the word "banana"?'}))
    steps = result["intermediate_steps"]
    print("steps:", [(a.tool, a.tool_input, obs) for a, obs in steps], "| output:", result["output"])
    assert steps and steps[0][0].tool == "count_letters"
    assert steps[0][1] == 6  # the tool really ran on the model's input


@tool
def get_weather(location: str) -> str:
    """Get the weather at a location."""
    return f"It's sunny in {location}."


def test_create_agent_with_bound_tools(chat):
    from langchain.agents import create_agent
    from langchain.agents.middleware import wrap_model_call

    @wrap_model_call
    def call_a_tool_first(request, handler):
        """A 135M model rarely calls a tool unprompted, and once it has seen one call it repeats it forever (the agent
        then runs to its recursion limit): require one call, then ask for the answer."""
        answered = any(isinstance(m, ToolMessage) for m in request.messages)
        return handler(request.override(tool_choice="none" if answered else "any"))

    agent = create_agent(chat, tools=[get_weather], middleware=[call_a_tool_first])
    state = _timed("create_agent", lambda: agent.invoke(
        {"messages": [HumanMessage("What is the weather in Paris?")]}))
    calls = [c for m in state["messages"] if hasattr(m, "tool_calls") for c in m.tool_calls]
    print("calls:", calls, "| final:", state["messages"][-1].content)
    assert len(calls) == 1 and calls[0]["name"] == "get_weather" and "Paris" in calls[0]["args"].get("location", "")
    assert any(isinstance(m, ToolMessage) and "sunny" in m.content for m in state["messages"])
    assert state["messages"][-1].type == "ai" and not state["messages"][-1].tool_calls


def test_forced_call_for_tokyo_parses_and_closes(chat):
    """Issue 12's case: before decoding under the schema, this call wrote 128 tokens of invented nested JSON and
    returned no tool call. scripts/forced_calls.py runs ten such prompts and prints the time per call."""
    reply = _timed("forced call", lambda: chat.bind_tools([get_weather], tool_choice="get_weather").invoke(
        "What is the weather in Tokyo?"))
    print("call:", reply.tool_calls, "| tokens:", reply.usage_metadata["output_tokens"])
    assert [c["name"] for c in reply.tool_calls] == ["get_weather"]
    assert set(reply.tool_calls[0]["args"]) == {"location"} and "Tokyo" in reply.tool_calls[0]["args"]["location"]
    assert reply.response_metadata["finish_reason"] == "tool_calls" and reply.usage_metadata["output_tokens"] < 64
