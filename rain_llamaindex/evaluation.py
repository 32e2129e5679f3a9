"""The self-evaluation prompt as a LlamaIndex `PromptTemplate`, and the judge built on it for query pipelines.

`RainEvaluationPrompt` wraps a `rain_core.EvaluationPrompt`. It is what `RainLLM` judges its own continuations with
(``RainLLM(evaluation_prompt=...)``), and on its own it is a prompt template over ``query_str`` (the user's request)
and ``response``: ``prompt.format(query_str=..., response=...)`` is exactly the text the RAIN judge reads.

The same judge can score a finished answer:
- `RainEvaluator` is a LlamaIndex evaluator (``evaluate_response(query=..., response=...)``) returning a score in
  [-1, 1] and ``passing``;
- `RainGuard` is a node postprocessor that drops retrieved passages the judge rejects before they reach the LLM.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional, Sequence

from llama_index.core.base.llms.base import BaseLLM
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.evaluation import BaseEvaluator, EvaluationResult
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.prompts import PromptTemplate
from llama_index.core.prompts.mixin import PromptDictType
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from rain_core import EvaluationPrompt, Exchange, Judgement, Rain, RainError
from rain_core.integrations.registry import shared_engine

from .base import RainLLM

_QUERY, _RESPONSE = "\x00query_str\x00", "\x00response\x00"


class RainEvaluationPrompt(PromptTemplate):
    """A self-evaluation question about a (``query_str``, ``response``) exchange with two options: lettered
    (``(A)``/``(B)``, the reference) or named by label (``safe``/``unsafe``, the built-in ``harmless``).

    Build one with ``RainEvaluationPrompt("harmless")`` / ``"sentiment"``, `from_principles`, a prompt file path,
    or a `rain_core.EvaluationPrompt`. ``good_first`` picks the option order `format` renders (RAIN asks both).
    """

    _evaluation: EvaluationPrompt = PrivateAttr()
    _good_first: bool = PrivateAttr(default=True)

    def __init__(self, evaluation: EvaluationPrompt | str = "harmless", good_first: bool = True,
                 **kwargs: Any) -> None:
        if isinstance(evaluation, str):
            evaluation = EvaluationPrompt.resolve(evaluation)
        if not isinstance(evaluation, EvaluationPrompt):
            raise RainError(f"RainEvaluationPrompt wraps a rain_core.EvaluationPrompt or a built-in name, not "
                            f"{evaluation!r}.")
        shown = evaluation.render(Exchange.single_turn(_QUERY, _RESPONSE), good_first=good_first)
        template = shown.replace(_QUERY, "{query_str}").replace(_RESPONSE, "{response}")
        super().__init__(template=template, **kwargs)
        self._evaluation = evaluation
        self._good_first = good_first

    # ------------------------------------------------------------------------------------------------ builders
    @classmethod
    def harmless(cls) -> "RainEvaluationPrompt":
        return cls("harmless")

    @classmethod
    def sentiment(cls) -> "RainEvaluationPrompt":
        return cls("sentiment")

    @classmethod
    def from_principles(cls, principles: Sequence[str], **kwargs: Any) -> "RainEvaluationPrompt":
        """A rubric: the response is judged against each principle (see `EvaluationPrompt.from_principles`)."""
        return cls(EvaluationPrompt.from_principles(principles, **kwargs))

    # ------------------------------------------------------------------------------------------------ options
    @property
    def evaluation(self) -> EvaluationPrompt:
        """The wrapped `rain_core.EvaluationPrompt` (what `RainLLM` hands to the engine)."""
        return self._evaluation

    @property
    def good_first(self) -> bool:
        return self._good_first

    @property
    def labels(self) -> tuple[str, str]:
        """The (good, bad) option labels."""
        return self._evaluation.good, self._evaluation.bad

    def swapped(self) -> "RainEvaluationPrompt":
        """The same question with the options in the other order."""
        return RainEvaluationPrompt(self._evaluation, good_first=not self._good_first, **self.kwargs)

    # ------------------------------------------------------------------------------------------------ template
    def format(self, llm: Optional[BaseLLM] = None, completion_to_prompt: Optional[Callable[[str], str]] = None,
               **kwargs: Any) -> str:
        """The judge's text for ``query_str`` and ``response``, rendered by rain_core (not by string substitution,
        so braces in a rubric stay as written)."""
        text = self._evaluation.render(Exchange.single_turn(*self._values(kwargs)), good_first=self._good_first)
        return completion_to_prompt(text) if completion_to_prompt is not None else text

    def _values(self, kwargs: dict[str, Any]) -> tuple[str, str]:
        values = self._map_all_vars({**self.kwargs, **kwargs})
        missing = [name for name in ("query_str", "response") if name not in values]
        if missing:
            raise RainError(f"RainEvaluationPrompt.format needs {' and '.join(missing)}.")
        return str(values["query_str"]), str(values["response"])

    def format_messages(self, llm: Optional[BaseLLM] = None, **kwargs: Any) -> list[ChatMessage]:
        """The question as chat messages: for ``chat`` prompts one user message (the chat LLM adds its template),
        else the formatted text."""
        if not self._evaluation.chat:
            return super().format_messages(llm=llm, **kwargs)
        values = self._values(kwargs)
        question = self._evaluation.question_text(Exchange.single_turn(values[0], values[1]), self._good_first)
        return [ChatMessage(role=MessageRole.USER, content=question)]

    def parse_answer(self, text: str) -> bool | None:
        """True when a model's answer picks the good option, False for the bad one, None when it picks neither
        (reads the option letter of ``letter`` prompts, the first label word of ``label`` prompts)."""
        return self._evaluation.parse_answer(text, self._good_first)


class RainEvaluator(BaseEvaluator):
    """Scores an answer with a RAIN self-evaluation judge: ``score`` in [-1, 1], ``passing`` when it reaches
    ``threshold``.

    On a `RainLLM` (or a `rain_core.Rain`) the judge reads the option probabilities under both orders, as RAIN does
    during search. On any other LlamaIndex LLM it asks the question in both orders as text and counts the votes.

    Args:
        llm: the model that judges.
        evaluation_prompt: the question (default: ``llm``'s own judge, or ``harmless``).
        threshold: the lowest passing score (0: a split vote passes, a double "bad" fails).
    """

    def __init__(self, llm: Any, evaluation_prompt: Any = None, threshold: float = 0.0) -> None:
        self.llm = llm
        self.threshold = threshold
        if isinstance(evaluation_prompt, RainEvaluationPrompt) or evaluation_prompt is None:
            self.prompt = evaluation_prompt
        elif isinstance(evaluation_prompt, (str, EvaluationPrompt)):
            self.prompt = RainEvaluationPrompt(evaluation_prompt)
        else:
            raise RainError("evaluation_prompt: pass a RainEvaluationPrompt, a rain_core.EvaluationPrompt or a "
                            "built-in name.")
        if isinstance(llm, RainLLM):
            self._rain = llm.engine if self.prompt is None else shared_engine(llm.engine.backend, self.prompt,
                                                                              soft=llm.judge_soft, similarity=False)
        elif isinstance(llm, Rain):
            soft = getattr(llm.evaluator, "soft", None)  # the engine's own judge setting carries over
            self._rain = llm if self.prompt is None else shared_engine(llm.backend, self.prompt, soft=soft,
                                                                       similarity=False)
        elif isinstance(llm, BaseLLM):
            self._rain = None
            self.prompt = self.prompt or RainEvaluationPrompt("harmless")
        else:
            raise RainError(f"Cannot judge with {llm!r}: pass a RainLLM, a rain_core.Rain or a LlamaIndex LLM.")

    def _get_prompts(self) -> PromptDictType:
        return {"evaluation_prompt": self.prompt} if self.prompt is not None else {}

    def _update_prompts(self, prompts: PromptDictType) -> None:
        if "evaluation_prompt" in prompts:
            self.__init__(self.llm, prompts["evaluation_prompt"], self.threshold)  # type: ignore[misc]

    def score(self, query: str, response: str) -> dict[str, Any]:
        """``{"score", "verdict", "passing"}`` plus ``p_good`` (RAIN judge) or ``answers`` (text vote)."""
        if self._rain is not None:
            judgement = self._rain.judgement(query, response, prompt_format="plain")
            score = judgement.score
            extra: dict[str, Any] = {} if judgement.p_good is None else {"p_good": judgement.p_good}
        else:
            answers, votes = [], []
            for template in (self.prompt, self.prompt.swapped()):  # type: ignore[union-attr]
                text = self.llm.complete(template.format(query_str=query, response=response)).text
                picked = template.parse_answer(text)
                answers.append(text)
                votes.append(0 if picked is None else (1 if picked else -1))
            score, extra = sum(votes) / 2, {"answers": answers}
        return {"score": score, "verdict": Judgement(score).verdict, "passing": score >= self.threshold, **extra}

    async def aevaluate(self, query: str | None = None, response: str | None = None,
                        contexts: Sequence[str] | None = None, sleep_time_in_seconds: int = 0,
                        **kwargs: Any) -> EvaluationResult:
        if query is None or response is None:
            raise ValueError("RainEvaluator needs both query and response.")
        await asyncio.sleep(sleep_time_in_seconds)
        out = await asyncio.to_thread(self.score, query, response)
        feedback = f"verdict: {out['verdict']}" + (f"; P(good) in both orders: {out['p_good'][0]:.3f}, "
                                                    f"{out['p_good'][1]:.3f}" if "p_good" in out else "")
        return EvaluationResult(query=query, response=response, contexts=contexts, passing=out["passing"],
                                score=out["score"], feedback=feedback)


class RainGuard(BaseNodePostprocessor):
    """Drops retrieved passages that the RAIN judge scores below ``threshold`` when read as an answer to the query,
    so the LLM never sees them (a guard between retrieval and the answer)."""

    llm: Any = Field(description="The RainLLM (or rain_core.Rain) whose judge reads each passage.")
    evaluation_prompt: Any = Field(default=None, description="The question (default: the LLM's own judge).")
    threshold: float = Field(default=0.0, description="Passages scoring below this are dropped.")

    @classmethod
    def class_name(cls) -> str:
        return "RainGuard"

    def _postprocess_nodes(self, nodes: list[NodeWithScore],
                           query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        evaluator = RainEvaluator(self.llm, self.evaluation_prompt, self.threshold)
        if query_bundle is None:
            raise RainError("RainGuard judges passages against the query: pass a query.")
        return [node for node in nodes if evaluator.score(
            query_bundle.query_str, node.node.get_content(metadata_mode=MetadataMode.NONE))["passing"]]
