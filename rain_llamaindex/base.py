"""`RainLLM`: RAIN (rewindable auto-regressive inference) as a LlamaIndex LLM.

The class translates between LlamaIndex types and a `rain_core.Rain`; the search itself lives in rain_core, and the
settings (fields, shared engine, per-call config) in `rain_core.integrations.settings.RainSettings`, which the
LangChain classes share. One loaded model serves every `RainLLM` (and every LangChain object) in the process, and two objects with
the same judge share one engine and its pinned few-shot block.

How a request reaches the model (the same in the streaming, non-streaming, sync and async paths):

- ``chat(messages)``: ``system_prompt`` is merged into the leading system message (once: a system message that
  already holds it is left alone). A custom ``messages_to_prompt``, or ``prompt_format="raw"``, turns the messages
  into a text the model continues as is; otherwise the message list goes to the engine, which applies the
  tokenizer's chat template (or RAIN's plain ``Human:/Assistant:`` format for a model without one).
- ``complete(prompt)``: unless ``formatted=True``, ``system_prompt`` is put in front (as a system message, or as
  ``system_prompt + "\\n\\n" + prompt`` for text) and a custom ``completion_to_prompt`` is applied, whose text is
  continued as is. Without a custom ``completion_to_prompt`` the prompt becomes one user message under the chat
  template (``formatted=True`` only skips the system prompt: the template is the engine's to apply).
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, ClassVar, Iterator, Sequence

from llama_index.core.base.llms.generic_utils import messages_to_prompt as generic_messages_to_prompt
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from llama_index.core.llms.llm import default_completion_to_prompt

from rain_core import ConfigError, GenerationResult
from rain_core.exchange import resolve_format
from rain_core.integrations.registry import shared_engine
from rain_core.integrations.settings import RainSettings
from rain_core.integrations.streaming import iterate_in_thread

#: Chat roles LlamaIndex has beyond the ones a chat template knows.
ROLES = {MessageRole.DEVELOPER: "system", MessageRole.CHATBOT: "assistant", MessageRole.MODEL: "assistant",
         MessageRole.FUNCTION: "tool"}

Request = tuple[Any, str]  # (a text or a message list, the prompt format to run it with)


class RainLLM(RainSettings, CustomLLM):
    """A local causal LM that writes under RAIN: it searches over its own continuations, judges them with a
    self-evaluation prompt and rewinds the bad ones before committing text.

    Examples:
        ```python
        from llama_index.core import Settings
        from rain_llamaindex import RainLLM

        Settings.llm = RainLLM(max_new_tokens=64, max_iterations=8)
        print(Settings.llm.complete("How do I stay safe on a night hike?").text)
        ```
    """

    #: Per-call option names that mean a RainConfig field (LlamaIndex calls the output budget ``num_output``).
    ALIASES: ClassVar[dict[str, str]] = {**RainSettings.ALIASES, "num_output": "max_new_tokens"}
    OWN_OPTIONS: ClassVar[frozenset[str]] = frozenset({"prompt_format"})

    def __init__(self, model: Any = "smollm2", **kwargs: Any) -> None:
        super().__init__(model=model, **kwargs)
        if self.prompt_format not in ("auto", "chat", "plain", "raw"):
            raise ConfigError(f"prompt_format={self.prompt_format!r}: use 'auto', 'chat', 'plain' or 'raw'.")

    @classmethod
    def class_name(cls) -> str:
        return "RainLLM"

    # ------------------------------------------------------------------------------------------------ engine
    @property
    def metadata(self) -> LLMMetadata:
        """From the loaded model: ``context_window`` is the positions a prompt and its response may use (the
        model's window less the search's simulation look-ahead, which the engine reserves), ``num_output`` the
        committed-token budget, ``is_chat_model`` whether requests go through the tokenizer's chat template."""
        rain, config = self.engine, self.rain_config({})
        return LLMMetadata(
            context_window=rain.context_window - config.max_simulation_tokens,
            num_output=config.max_new_tokens,
            is_chat_model=self._format() == "chat",
            is_function_calling_model=False,
            model_name=rain.model_name,
            system_role=MessageRole.SYSTEM,
        )

    #: One call's RAIN config (the base config, then this object's fields, then the call's options).
    call_config = RainSettings.rain_config

    def judge(self, query: str, response: str, evaluation_prompt: Any = None) -> float:
        """Score ``response`` to ``query`` in [-1, 1] with this LLM's judge (or ``evaluation_prompt``)."""
        rain = self.engine if evaluation_prompt is None else shared_engine(
            self.engine.backend, evaluation_prompt, soft=self.judge_soft, similarity=False)
        return rain.judge(query, response, prompt_format="plain")

    # ------------------------------------------------------------------------------------------------ requests
    def _format(self, kwargs: dict[str, Any] | None = None) -> str:
        requested = (kwargs or {}).pop("prompt_format", None) or self.prompt_format
        return resolve_format(self.engine.tokenizer, requested)

    def _system(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """The leading system messages merged into one, holding ``system_prompt`` once."""
        lead = 0
        while lead < len(messages) and messages[lead]["role"] == "system":
            lead += 1
        system = [m["content"] for m in messages[:lead]]
        if self.system_prompt and not any(self.system_prompt in s for s in system):
            system.insert(0, self.system_prompt)
        head = [{"role": "system", "content": "\n\n".join(system)}] if system else []
        return head + messages[lead:]

    def _chat_request(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> Request:
        fmt = self._format(kwargs)
        plain = self._system([{"role": ROLES.get(m.role, m.role.value), "content": m.content or ""}
                              for m in messages])
        if self.messages_to_prompt is not generic_messages_to_prompt or fmt == "raw":
            chat = [ChatMessage(role=m["role"], content=m["content"]) for m in plain]
            return self.messages_to_prompt(chat), "raw"
        return plain, fmt

    def _completion_request(self, prompt: str, formatted: bool, kwargs: dict[str, Any]) -> Request:
        fmt = self._format(kwargs)
        custom = self.completion_to_prompt is not default_completion_to_prompt
        system = self.system_prompt if not formatted else None
        if custom or fmt == "raw":
            text = f"{system}\n\n{prompt}" if system else prompt
            return (self.completion_to_prompt(text) if custom and not formatted else text), "raw"
        return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}], \
            fmt

    # ------------------------------------------------------------------------------------------------ running
    def _generate(self, request: Request, kwargs: dict[str, Any]) -> GenerationResult:
        prompt, fmt = request
        return self.engine.generate(prompt, config=self.rain_config(kwargs), prompt_format=fmt)

    def _stream(self, request: Request, kwargs: dict[str, Any]) -> Iterator[str | GenerationResult]:
        """Committed pieces, then the final result (`Rain.run`)."""
        prompt, fmt = request
        return self.engine.run(prompt, config=self.rain_config(kwargs), prompt_format=fmt)

    def _astream(self, request: Request, kwargs: dict[str, Any]) -> AsyncIterator[str | GenerationResult]:
        """`_stream` run whole in one worker thread and handed over through a queue, so the event loop never
        waits on the model; a consumer that stops early makes the worker close the search at its next piece."""
        config = self.rain_config(kwargs)
        prompt, fmt = request
        return iterate_in_thread(lambda: self.engine.run(prompt, config=config, prompt_format=fmt))

    # ------------------------------------------------------------------------------------------------ responses
    def _raw(self, result: GenerationResult) -> dict[str, Any]:
        prompt, completion = result.stats.prompt_tokens, result.stats.completion_tokens
        return {"model": self.engine.model_name, "finish_reason": result.finish_reason,
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion},
                "stats": result.stats.to_dict()}

    def _completions(self, items: Iterator[str | GenerationResult]) -> CompletionResponseGen:
        text = ""
        for item in items:
            if isinstance(item, GenerationResult):
                yield CompletionResponse(text=text, delta="", raw=self._raw(item))
            else:
                text += item
                yield CompletionResponse(text=text, delta=item)

    def _chats(self, items: Iterator[str | GenerationResult]) -> ChatResponseGen:
        for chunk in self._completions(items):
            yield _as_chat(chunk)

    # ------------------------------------------------------------------------------------------------ sync API
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        request = self._completion_request(prompt, formatted, kwargs)
        result = self._generate(request, kwargs)
        return CompletionResponse(text=result.text, raw=self._raw(result))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        request = self._completion_request(prompt, formatted, kwargs)
        return self._completions(self._stream(request, kwargs))

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        request = self._chat_request(messages, kwargs)
        result = self._generate(request, kwargs)
        return _as_chat(CompletionResponse(text=result.text, raw=self._raw(result)))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        request = self._chat_request(messages, kwargs)
        return self._chats(self._stream(request, kwargs))

    # ------------------------------------------------------------------------------------------------ async API
    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        request = self._completion_request(prompt, formatted, kwargs)
        result = await asyncio.to_thread(self._generate, request, kwargs)
        return CompletionResponse(text=result.text, raw=self._raw(result))

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False,
                               **kwargs: Any) -> CompletionResponseAsyncGen:
        request = self._completion_request(prompt, formatted, kwargs)
        return self._acompletions(self._astream(request, kwargs))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        request = self._chat_request(messages, kwargs)
        result = await asyncio.to_thread(self._generate, request, kwargs)
        return _as_chat(CompletionResponse(text=result.text, raw=self._raw(result)))

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        request = self._chat_request(messages, kwargs)
        return self._achats(self._astream(request, kwargs))

    async def _acompletions(self, items: AsyncIterator[str | GenerationResult]) -> CompletionResponseAsyncGen:
        text = ""
        try:
            async for item in items:
                if isinstance(item, GenerationResult):
                    yield CompletionResponse(text=text, delta="", raw=self._raw(item))
                else:
                    text += item
                    yield CompletionResponse(text=text, delta=item)
        finally:
            await items.aclose()  # type: ignore[attr-defined]

    async def _achats(self, items: AsyncIterator[str | GenerationResult]) -> ChatResponseAsyncGen:
        chunks = self._acompletions(items)
        try:
            async for chunk in chunks:
                yield _as_chat(chunk)
        finally:
            await chunks.aclose()


def _as_chat(chunk: CompletionResponse) -> ChatResponse:
    return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=chunk.text), delta=chunk.delta,
                        raw=chunk.raw)
