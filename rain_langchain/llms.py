"""`RainLLM`: RAIN as a LangChain text-completion model (string in, new text out)."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Iterator

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseLLM
from langchain_core.outputs import Generation, GenerationChunk, LLMResult

from rain_core import GenerationResult
from rain_core.integrations.streaming import iterate_in_thread

from ._engine import RainFields


def _info(result: GenerationResult) -> dict[str, Any]:
    return {"finish_reason": result.finish_reason, "rain": result.stats.to_dict()}


class RainLLM(RainFields, BaseLLM):
    """A frozen causal LM that searches over its own continuations and rewinds the ones its judge rejects.

    Returns only the new text; ``stop`` strings end the search itself and are cut from the text. Per-call options
    (``max_new_tokens``, ``max_iterations``, ``value_threshold``/``Vt``, any `rain_core.RainConfig` field) pass
    through ``invoke(..., **options)`` or ``.bind(**options)``.

    Example:
        .. code-block:: python

            from rain_langchain import RainLLM

            llm = RainLLM(max_new_tokens=32, max_iterations=4, min_iterations=2)
            llm.invoke("Write one sentence about rain.")
    """

    @property
    def _llm_type(self) -> str:
        return "rain"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params.update(self.ls_rain(kwargs))
        return params

    # ------------------------------------------------------------------------------------------------ sync
    def _generate(self, prompts: list[str], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> LLMResult:
        config = self.rain_config(self.check_model_override(kwargs), stop)
        results = [self.engine.generate(prompt, config=config, prompt_format=self.prompt_format)
                   for prompt in prompts]
        return self._result(results)

    def _stream(self, prompt: str, stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[GenerationChunk]:
        config = self.rain_config(self.check_model_override(kwargs), stop)
        for item in self.engine.run(prompt, config=config, prompt_format=self.prompt_format):
            chunk = self._chunk(item)
            if run_manager and chunk.text:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    # ------------------------------------------------------------------------------------------------ async
    async def _agenerate(self, prompts: list[str], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> LLMResult:
        config = self.rain_config(self.check_model_override(kwargs), stop)
        engine = await asyncio.to_thread(lambda: self.engine)  # the first call may load the model
        results = [await asyncio.to_thread(engine.generate, prompt, config=config, prompt_format=self.prompt_format)
                   for prompt in prompts]
        return self._result(results)

    async def _astream(self, prompt: str, stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[GenerationChunk]:
        config = self.rain_config(self.check_model_override(kwargs), stop)
        engine = await asyncio.to_thread(lambda: self.engine)
        pieces = iterate_in_thread(lambda: engine.run(prompt, config=config, prompt_format=self.prompt_format))
        async for item in pieces:
            chunk = self._chunk(item)
            if run_manager and chunk.text:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    # ------------------------------------------------------------------------------------------------ shaping
    def _chunk(self, item: str | GenerationResult) -> GenerationChunk:
        if isinstance(item, str):
            return GenerationChunk(text=item)
        return GenerationChunk(text="", generation_info=_info(item))  # the closing chunk: why it ended, stats

    def _result(self, results: list[GenerationResult]) -> LLMResult:
        prompt = sum(r.stats.prompt_tokens for r in results)
        completion = sum(r.stats.completion_tokens for r in results)
        return LLMResult(
            generations=[[Generation(text=r.text, generation_info=_info(r))] for r in results],
            llm_output={"token_usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                        "total_tokens": prompt + completion},
                        "model_name": self.model_name})
