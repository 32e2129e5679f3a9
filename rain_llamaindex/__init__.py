"""rain_llamaindex: RAIN (rewindable auto-regressive inference) for LlamaIndex.

- `RainLLM`: a LlamaIndex LLM (complete, chat, streaming, async) that writes under RAIN;
- `RainEvaluationPrompt`: the self-evaluation question as a `PromptTemplate` (``harmless``, ``sentiment``, principles);
- `RainEvaluator` (score an answer) and `RainGuard` (drop retrieved passages the judge rejects).

Every object shares one loaded model per process (with the LangChain integration too).
"""

from .base import RainLLM
from .evaluation import RainEvaluationPrompt, RainEvaluator, RainGuard

__all__ = ["RainLLM", "RainEvaluationPrompt", "RainEvaluator", "RainGuard"]
