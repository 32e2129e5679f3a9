"""The self-evaluation prompt as a LangChain prompt, and the judge built on it.

`SelfEvaluationPrompt` wraps a `rain_core.EvaluationPrompt`. It is what `RainLLM`/`ChatRain` judge their own
continuations with (``evaluation_prompt=...``), and on its own it is a prompt template over ``input`` (the user's
request) and ``output`` (a response): ``prompt | model`` asks any model the multiple-choice question, and
`SelfEvaluationPrompt.as_judge` scores an (input, output) pair in [-1, 1] so it can guard any chain.
"""

from __future__ import annotations

from typing import Any, Sequence

from langchain_core.language_models import BaseLanguageModel
from langchain_core.messages import HumanMessage
from langchain_core.prompt_values import ChatPromptValue, PromptValue, StringPromptValue
from langchain_core.prompts import BasePromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda

from rain_core import EvaluationPrompt, Exchange, Judgement, Rain, RainError, TransformersBackend
from rain_core.integrations.registry import shared_engine

from ._engine import RainFields


class SelfEvaluationPrompt(BasePromptTemplate[str]):
    """A self-evaluation question about an (``input``, ``output``) exchange with two options: lettered (``(A)``/
    ``(B)``, the reference) or named by label (``safe``/``unsafe``, the built-in ``harmless``).

    Build one with `SelfEvaluationPrompt.builtin` (``"harmless"``, ``"sentiment"``, ``"harmless-conversation"``,
    ``"harmless-letters"``), `from_principles`, or from a `rain_core.EvaluationPrompt`. ``good_first`` picks the
    option order `format` renders (RAIN asks both).
    """

    evaluation: EvaluationPrompt
    good_first: bool = True
    input_variables: list[str] = ["input", "output"]

    model_config = {"arbitrary_types_allowed": True}

    # ------------------------------------------------------------------------------------------------ builders
    @classmethod
    def builtin(cls, name: str = "harmless") -> "SelfEvaluationPrompt":
        return cls(evaluation=EvaluationPrompt.resolve(name))

    @classmethod
    def harmless(cls) -> "SelfEvaluationPrompt":
        return cls.builtin("harmless")

    @classmethod
    def sentiment(cls) -> "SelfEvaluationPrompt":
        return cls.builtin("sentiment")

    @classmethod
    def from_principles(cls, principles: Sequence[str], **kwargs: Any) -> "SelfEvaluationPrompt":
        """A rubric: the response is judged against each principle (see `EvaluationPrompt.from_principles`)."""
        return cls(evaluation=EvaluationPrompt.from_principles(principles, **kwargs))

    # ------------------------------------------------------------------------------------------------ options
    @property
    def labels(self) -> tuple[str, str]:
        """The (good, bad) option labels."""
        return self.evaluation.good, self.evaluation.bad

    @property
    def letters(self) -> tuple[str, str]:
        return tuple(self.evaluation.letters)  # type: ignore[return-value]

    @property
    def good_letter(self) -> str:
        return self.letters[0] if self.good_first else self.letters[1]

    # ------------------------------------------------------------------------------------------------ template
    @property
    def _prompt_type(self) -> str:
        return "rain-self-evaluation"

    def format(self, **kwargs: Any) -> str:
        kwargs = self._merge_partial_and_user_variables(**kwargs)
        return self.evaluation.render(Exchange.single_turn(kwargs["input"], kwargs["output"]), good_first=self.good_first)

    def format_prompt(self, **kwargs: Any) -> PromptValue:
        """The question as text, or, for ``chat`` prompts, as one human message (a chat model adds its template)."""
        if not self.evaluation.chat:
            return StringPromptValue(text=self.format(**kwargs))
        kwargs = self._merge_partial_and_user_variables(**kwargs)
        question = self.evaluation.question_text(Exchange.single_turn(kwargs["input"], kwargs["output"]), self.good_first)
        return ChatPromptValue(messages=[HumanMessage(question)])

    def swapped(self) -> "SelfEvaluationPrompt":
        """The same question with the options in the other order."""
        return self.model_copy(update={"good_first": not self.good_first})

    def parse_answer(self, text: str) -> bool | None:
        """True when a model's answer picks the good option, False for the bad one, None when it picks neither.
        Reads the option letter (``letter`` prompts) or the first label word it finds (``label`` prompts)."""
        return self.evaluation.parse_answer(text, self.good_first)

    # ------------------------------------------------------------------------------------------------ judging
    def as_judge(self, model: Any) -> Runnable[Any, dict[str, Any]]:
        """A runnable scoring ``{"input": ..., "output": ...}`` (or an ``(input, output)`` pair).

        On a RAIN model (`ChatRain`, `RainLLM`, `rain_core.Rain` or a backend) it reads the option probabilities
        under both orders: ``{"score", "p_good", "verdict", "passed"}``. On any other LangChain model it asks the
        question in both orders as text and votes: ``{"score", "verdict", "passed", "answers"}``.
        """
        if isinstance(model, (RainFields, Rain, TransformersBackend)):
            rain = _judge_engine(model, self.evaluation)
            return RunnableLambda(lambda value: _probability_verdict(rain, *_pair(value)), name="RainJudge")
        if isinstance(model, BaseLanguageModel) or isinstance(model, Runnable):
            return RunnableLambda(lambda value: self._text_verdict(model, *_pair(value)), name="TextJudge")
        raise RainError(f"Cannot judge with {model!r}: pass a ChatRain, a RainLLM, a rain_core.Rain or a LangChain "
                        "model.")

    def _text_verdict(self, model: Runnable, prompt: str, response: str) -> dict[str, Any]:
        answers, votes = [], []
        for template in (self, self.swapped()):
            answer = model.invoke(template.format_prompt(input=prompt, output=response))
            text = answer if isinstance(answer, str) else getattr(answer, "text", str(answer))
            text = text if isinstance(text, str) else text()
            answers.append(text)
            picked = template.parse_answer(text)
            votes.append(0 if picked is None else (1 if picked else -1))
        score = sum(votes) / 2
        return {"score": score, "verdict": Judgement(score).verdict, "passed": score >= 0, "answers": answers}


def _judge_engine(model: Any, evaluation: EvaluationPrompt) -> Rain:
    """The engine that judges with ``evaluation`` on ``model``'s loaded model and with ``model``'s own judge
    settings (``soft``: a graded score, the default, or the hard vote), so ``as_judge(ChatRain(soft=False))`` votes."""
    if isinstance(model, RainFields):
        backend, soft = model.engine.backend, model.judge_soft
    elif isinstance(model, Rain):
        backend, soft = model.backend, getattr(model.evaluator, "soft", None)
    else:
        backend, soft = model, None  # the default config's
    return shared_engine(backend, evaluation, soft=soft, similarity=False)


def _pair(value: Any) -> tuple[str, str]:
    if isinstance(value, dict):
        return str(value["input"]), str(value["output"])
    prompt, response = value
    return str(prompt), str(response)


def _probability_verdict(rain: Rain, prompt: str, response: str) -> dict[str, Any]:
    judgement = rain.judgement(prompt, response, prompt_format="plain")
    return {"score": judgement.score, "p_good": judgement.p_good, "verdict": judgement.verdict,
            "passed": judgement.score >= 0}
