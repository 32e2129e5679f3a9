"""`ChatRain`: RAIN as a LangChain chat model, with prompt-based tool calling."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterator, Sequence

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (AIMessage, AIMessageChunk, BaseMessage, ChatMessage, HumanMessage,
                                     SystemMessage, ToolMessage)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import field_validator

from rain_core import GenerationResult, RainConfig, SearchStats
from rain_core.exchange import format_prompt, resolve_format
from rain_core.integrations.streaming import iterate_in_thread

from ._engine import RainFields, usage
from .tools import (ANSWER_NOW, call_schema, complete_json_end, describe_tools, forced_name, parse_tool_calls,
                    render_call, tool_name)

Message = dict[str, str]
#: The least room a forced tool call (``tool_choice="any"``, a tool name, structured output) gets: it ends as soon as
#: its JSON object is complete, and a short answer budget (``max_new_tokens=16``) would otherwise cut it mid-object.
FORCED_CALL_TOKENS = 128


# ---------------------------------------------------------------------------------------------------- messages
def _template_caps(tokenizer: Any) -> tuple[bool, bool]:
    """Whether the chat template shows a system message, and whether it knows a ``tool`` role."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return True, False  # RAIN's plain format: the system text opens the conversation
    try:
        text = tokenizer.apply_chat_template([{"role": "system", "content": "SYS-7f3a"},
                                              {"role": "user", "content": "hi"}], tokenize=False)
        system_ok = "SYS-7f3a" in text
    except Exception:  # noqa: BLE001 - templates without a system role raise
        system_ok = False
    return system_ok, "tool" in str(template)


def _message_text(message: BaseMessage) -> str:
    """A message's text: a property in current langchain-core, a method in older releases."""
    return message.text if isinstance(message.text, str) else message.text()


def to_rain_messages(messages: Sequence[BaseMessage], *, system_ok: bool = True, tool_role_ok: bool = False,
                     tool_instruction: str | None = None, answer_now: bool = False) -> tuple[list[Message], str]:
    """LangChain messages as RAIN chat messages, plus the text of a trailing AI message (the reply continues it).

    Same-role neighbours are merged; system text is folded into the first user turn when the template has no
    system role; tool results become ``tool`` turns, or user turns naming the tool when the template lacks the role;
    past tool calls are shown in the JSON format the model is asked to write. ``answer_now`` (``tool_choice="none"``)
    ends trailing tool results with the user's question and a request for a plain-text answer: small models copy the
    last call from the history otherwise, and an agent then loops until its recursion limit.
    """
    out: list[Message] = []
    system = [tool_instruction] if tool_instruction else []
    for message in messages:
        text = _message_text(message)
        if isinstance(message, SystemMessage):
            system.append(text)
            continue
        if isinstance(message, AIMessage):
            calls = [render_call(c["name"], c["args"]) for c in message.tool_calls]
            role, text = "assistant", "\n".join([t for t in [text.strip()] if t] + calls)
        elif isinstance(message, ToolMessage):
            error = getattr(message, "status", "success") == "error"
            name = message.name or message.tool_call_id
            role = "tool" if tool_role_ok else "user"
            text = text if tool_role_ok else f"Tool {'error' if error else 'result'} ({name}): {text}"
        elif isinstance(message, HumanMessage):
            role = "user"
        elif isinstance(message, ChatMessage):
            role = {"human": "user", "ai": "assistant"}.get(message.role, message.role)
        else:
            raise ValueError(f"ChatRain cannot send a {type(message).__name__} to the model.")
        if out and out[-1]["role"] == role:
            out[-1]["content"] += "\n\n" + text
        else:
            out.append({"role": role, "content": text})
    if answer_now and messages and isinstance(messages[-1], ToolMessage):
        question = next((_message_text(m) for m in reversed(messages) if isinstance(m, HumanMessage)), "")
        out[-1]["content"] += f"\n\n{ANSWER_NOW.format(question=question.strip())}".rstrip()
    prefill = ""
    if out and out[-1]["role"] == "assistant" and any(m["role"] != "assistant" for m in out):
        prefill = out.pop()["content"]
    if system:
        system_text = "\n\n".join(system)
        if system_ok:
            out.insert(0, {"role": "system", "content": system_text})
        elif out and out[0]["role"] == "user":
            out[0] = {"role": "user", "content": f"{system_text}\n\n{out[0]['content']}"}
        else:
            out.insert(0, {"role": "user", "content": system_text})
    return out, prefill


# ---------------------------------------------------------------------------------------------------- one call
@dataclass
class _Call:
    """What one chat call sends to the engine and how its output is read back."""

    prompt: str | list[Message]
    prompt_format: str
    config: RainConfig
    prefix: str = ""  # forced start of a tool call: part of the reply the model did not write
    tool_names: list[str] = field(default_factory=list)
    constraint: Any = None  # a forced call's grammar (rain_core.JsonSchemaConstraint), resuming after the prefix


class ChatRain(RainFields, BaseChatModel):
    """A frozen chat model that aligns its replies with RAIN: it searches its own continuations, judges them with
    a self-evaluation prompt and rewinds the rejected ones.

    Tool calling is prompt based: `bind_tools` describes the tools in a system instruction and the JSON calls in
    the reply become ``AIMessage.tool_calls``; ``tool_choice="any"`` or a tool name forces a call, decoded under the
    tool's JSON schema.

    Example:
        .. code-block:: python

            from rain_langchain import ChatRain

            chat = ChatRain(max_tokens=48, max_iterations=4, min_iterations=2)
            chat.invoke([("system", "Be brief."), ("human", "How do I boil an egg?")])
    """

    streaming: bool = False

    @field_validator("prompt_format")
    @classmethod
    def _chat_format(cls, value: str) -> str:
        if value not in ("auto", "chat", "plain"):
            raise ValueError("ChatRain.prompt_format must be 'auto', 'chat' or 'plain' (use RainLLM to continue "
                             "raw text).")
        return value

    @property
    def _llm_type(self) -> str:
        return "rain-chat"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params.update(self.ls_rain(kwargs))
        if stop or self.stop:
            params["ls_stop"] = list(stop or self.stop or [])
        return params

    # ------------------------------------------------------------------------------------------------ tokens
    def get_token_ids(self, text: str) -> list[int]:
        """Token ids under this model's own tokenizer (not the GPT-2 default)."""
        return self.engine.backend.encode(text)

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence | None = None) -> int:
        """Tokens of the prompt the model would read for ``messages`` (chat template and tool instruction)."""
        schemas = [convert_to_openai_tool(t) for t in tools] if tools else None
        call = self._plan(messages, None, {"tools": schemas} if schemas else {})
        text = call.prompt if isinstance(call.prompt, str) else format_prompt(
            self.engine.tokenizer, call.prompt, call.prompt_format).text
        return len(self.engine.tokenizer(text, add_special_tokens=False)["input_ids"])

    # ------------------------------------------------------------------------------------------------ tools
    def bind_tools(self, tools: Sequence[dict[str, Any] | type | Callable | BaseTool], *,
                   tool_choice: str | dict | bool | None = None,
                   **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        """Describe ``tools`` to the model; its JSON calls come back as ``tool_calls``.

        tool_choice: None/"auto" (the model decides), "none", "any"/"required" (force a call), or a tool name.
            A forced call is decoded under the tool's JSON schema (always valid JSON with only the tool's
            arguments), ends when its JSON object closes and may use up to `FORCED_CALL_TOKENS` (128) tokens even
            when ``max_new_tokens`` is smaller.
        """
        schemas = [convert_to_openai_tool(t) for t in tools]
        forced_name(tool_choice, schemas)  # fail now on a name that is not bound
        return super().bind(tools=schemas, tool_choice=tool_choice, **kwargs)

    # ------------------------------------------------------------------------------------------------ planning
    def _plan(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]) -> _Call:
        kwargs = self.check_model_override(kwargs)
        tools = kwargs.pop("tools", None) or []
        tool_choice = kwargs.pop("tool_choice", None)
        config = self.rain_config(kwargs, stop)
        instruction = describe_tools(tools) if tools else None
        answer_now = tool_choice == "none" and bool(tools)  # tools stay described (past calls make sense), none run
        if answer_now:
            tools = []
        rain = self.engine
        system_ok, tool_role_ok = _template_caps(rain.tokenizer)
        msgs, prefill = to_rain_messages(messages, system_ok=system_ok, tool_role_ok=tool_role_ok,
                                         tool_instruction=instruction, answer_now=answer_now)
        if not msgs:
            raise ValueError("ChatRain needs at least one message that is not from the AI.")
        forced = forced_name(tool_choice, tools) if tools else None
        names = [tool_name(t) for t in tools]
        if not prefill and not forced:
            return _Call(msgs, self.prompt_format, config, tool_names=names)
        fmt = resolve_format(rain.tokenizer, self.prompt_format)
        text = format_prompt(rain.tokenizer, msgs, fmt).text + (" " if fmt == "plain" else "") + prefill  # type: ignore[arg-type]
        if forced is True:
            forced = self._likeliest_tool(text, names)
        prefix, constraint = "", None
        if forced:
            # the call is decoded under its schema; what the schema fixes (the name, the first key) is written for
            # the model, and the grammar resumes after it
            grammar = rain.constraint(call_schema(forced, tools))
            prefix = grammar.forced_text()
            constraint = grammar.with_prefix(prefix)
        if prefix and config.max_new_tokens < FORCED_CALL_TOKENS:  # a call stops when its JSON closes; never cut it
            config = config.updated(max_new_tokens=FORCED_CALL_TOKENS)
        return _Call(text + prefix, "raw", config, prefix=prefix, tool_names=names, constraint=constraint)

    def _likeliest_tool(self, text: str, names: list[str]) -> str:
        """The tool the model itself finds likeliest to call here: the log-probability of each name after the
        opening of a call (read from the prefix-cached model, no sampling)."""
        backend = self.engine.backend
        opening = text + '{"name": "'
        base = backend.encode(opening)
        scores = []
        for name in names:
            ids = backend.encode(opening + name + '"')
            start = max(1, next((i for i, (a, b) in enumerate(zip(base, ids)) if a != b), len(base)))
            scores.append(sum(float(backend.option_logprobs([ids[:i]], [ids[i]])[0, 0]) for i in range(start, len(ids))))
        return names[scores.index(max(scores))]

    def _run(self, call: _Call) -> GenerationResult:
        """Generate; a forced tool call ends as soon as its JSON object is complete (or needs no generation)."""
        if not call.prefix:
            return self.engine.generate(call.prompt, config=call.config, prompt_format=call.prompt_format)
        if complete_json_end(call.prefix) is not None:
            stats = SearchStats(prompt_tokens=len(self.engine.backend.encode(call.prompt)))  # type: ignore[arg-type]
            return GenerationResult(text="", token_ids=[], finish_reason="stop", stats=stats)
        return self.engine.generate(call.prompt, config=call.config, prompt_format=call.prompt_format,
                                    json_schema=call.constraint,
                                    until=lambda text: complete_json_end(call.prefix + text) is not None)

    def _message(self, call: _Call, result: GenerationResult) -> AIMessage:
        text = call.prefix + result.text
        end = complete_json_end(text) if call.prefix else None
        text = text[:end] if end is not None else text  # a forced reply is one call; drop what follows it
        content, calls = parse_tool_calls(text, call.tool_names) if call.tool_names else (text, [])
        if call.prefix and not calls:
            content = text  # a forced call the model did not finish: show what it wrote
        return AIMessage(content=content, tool_calls=calls, usage_metadata=usage(result),  # type: ignore[arg-type]
                         response_metadata=self._metadata(result, bool(calls)))

    def _metadata(self, result: GenerationResult, called: bool) -> dict[str, Any]:
        return {"model_name": self.model_name, "model_provider": "rain",
                "finish_reason": "tool_calls" if called else result.finish_reason,
                "rain": result.stats.to_dict()}

    # ------------------------------------------------------------------------------------------------ sync
    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        call = self._plan(messages, stop, kwargs)
        result = self._run(call)
        return ChatResult(generations=[ChatGeneration(message=self._message(call, result))],
                          llm_output={"model_name": self.model_name, "token_usage": usage(result)})

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        call = self._plan(messages, stop, kwargs)
        if call.tool_names:  # calls are parsed from the whole reply: one chunk
            yield self._whole(call, self._run(call))
            return
        for item in self.engine.run(call.prompt, config=call.config, prompt_format=call.prompt_format):
            chunk = self._chunk(item)
            if run_manager and isinstance(item, str):
                run_manager.on_llm_new_token(item, chunk=chunk)
            yield chunk

    # ------------------------------------------------------------------------------------------------ async
    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        return await asyncio.to_thread(self._generate, messages, stop, None, **kwargs)

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        call = await asyncio.to_thread(self._plan, messages, stop, kwargs)  # may load the model
        if call.tool_names:
            yield self._whole(call, await asyncio.to_thread(self._run, call))
            return
        engine = self.engine
        async for item in iterate_in_thread(lambda: engine.run(call.prompt, config=call.config,
                                                               prompt_format=call.prompt_format)):
            chunk = self._chunk(item)
            if run_manager and isinstance(item, str):
                await run_manager.on_llm_new_token(item, chunk=chunk)
            yield chunk

    # ------------------------------------------------------------------------------------------------ chunks
    def _chunk(self, item: str | GenerationResult) -> ChatGenerationChunk:
        if isinstance(item, str):
            return ChatGenerationChunk(message=AIMessageChunk(content=item))
        # the closing chunk: usage exactly once, why it ended, the model name
        return ChatGenerationChunk(message=AIMessageChunk(
            content="", usage_metadata=usage(item), response_metadata=self._metadata(item, False),
            chunk_position="last"))

    def _whole(self, call: _Call, result: GenerationResult) -> ChatGenerationChunk:
        message = self._message(call, result)
        chunks = [{"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i,
                   "type": "tool_call_chunk"} for i, c in enumerate(message.tool_calls)]
        return ChatGenerationChunk(message=AIMessageChunk(
            content=message.content, tool_call_chunks=chunks, usage_metadata=message.usage_metadata,
            response_metadata=message.response_metadata, chunk_position="last"))

