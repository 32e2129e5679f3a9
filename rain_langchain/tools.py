"""Prompt-based tool calling: describe the tools in a system instruction, read the model's JSON calls back.

A model that was never trained on a tool-calling format still writes a JSON object when shown one. The instruction
asks for ``{"name": ..., "arguments": {...}}``; `parse_tool_calls` finds such objects anywhere in the reply (bare,
fenced, or inside ``<tool_call>`` tags) and returns the remaining text as the message content. A forced call
(``tool_choice="any"`` or a tool name) is decoded under the call's JSON schema (`call_schema`): the part the schema
fixes is written for the model, which writes the argument values with every token checked by the grammar; with
several tools, the model's own likelihood picks the tool first.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, Sequence

from langchain_core.messages import ToolCall


def tool_name(tool: dict[str, Any]) -> str:
    return tool.get("function", tool)["name"]


ANSWER_NOW = "Using this result, answer in plain text: {question}"  # appended to tool results when no call may follow


def describe_tools(tools: Sequence[dict[str, Any]]) -> str:
    """The system instruction: one signature line per tool, then the call format."""
    lines = ["You can call these tools:"]
    for tool in tools:
        function = tool.get("function", tool)
        params = function.get("parameters", {}).get("properties", {})
        signature = ", ".join(f"{name}: {spec.get('type', 'any')}" for name, spec in params.items())
        lines.append(f"- {function['name']}({signature}): {function.get('description', '')}".rstrip(": "))
    lines.append('To call a tool, reply with only one JSON object: {"name": "<tool name>", "arguments": '
                 '{"<argument name>": <argument value>}}')
    lines.append("After a tool result arrives, answer the user in plain text. If no tool is needed, answer in "
                 "plain text.")
    return "\n".join(lines)


def forced_name(tool_choice: Any, tools: Sequence[dict[str, Any]]) -> str | None | bool:
    """What ``tool_choice`` forces: a tool name, True (one of several tools), or None (the model decides)."""
    if tool_choice in (None, "auto", "none", False):
        return None
    if isinstance(tool_choice, dict):
        tool_choice = tool_choice.get("function", tool_choice).get("name")
    if tool_choice in ("any", "required", True):
        return tool_name(tools[0]) if len(tools) == 1 else True
    names = [tool_name(t) for t in tools]
    if tool_choice not in names:
        raise ValueError(f"tool_choice={tool_choice!r} names no bound tool; bound tools: {', '.join(names)}.")
    return str(tool_choice)


def call_schema(name: str, tools: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The JSON schema of a reply that calls ``name``: ``{"name": <name>, "arguments": <its parameters>}``. A forced
    call is decoded under it (`rain_core.constrained`), so it always parses and carries only the tool's arguments."""
    function = next(t.get("function", t) for t in tools if tool_name(t) == name)
    params = dict(function.get("parameters") or {})
    params.setdefault("type", "object")
    params.setdefault("properties", {})
    return {"type": "object", "properties": {"name": {"const": name}, "arguments": params},
            "required": ["name", "arguments"], "additionalProperties": False}


def render_call(name: str, args: dict[str, Any]) -> str:
    """How a past call appears in the conversation the model reads (the same format it is asked to write)."""
    return json.dumps({"name": name, "arguments": args}, ensure_ascii=False)


_FENCE = re.compile(r"```(?:json)?|</?tool_call>")


def parse_tool_calls(text: str, names: Sequence[str]) -> tuple[str, list[ToolCall]]:
    """Split ``text`` into plain content and the calls of known tools it contains."""
    decoder = json.JSONDecoder()
    calls: list[ToolCall] = []
    spans: list[tuple[int, int]] = []
    i = text.find("{")
    while i >= 0:
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i = text.find("{", i + 1)
            continue
        call = _as_call(value, names)
        if call is not None:
            calls.append(call)
            spans.append((i, end))
        i = text.find("{", end if call is not None else i + 1)
    content = text
    for start, end in reversed(spans):
        content = content[:start] + content[end:]
    if calls:
        content = _FENCE.sub("", content)
    return content.strip(), calls


def _as_call(value: Any, names: Sequence[str]) -> ToolCall | None:
    if not isinstance(value, dict) or value.get("name") not in names:
        return None
    args = next((value[k] for k in ("arguments", "args", "parameters") if k in value), {})
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    if not isinstance(args, dict):
        return None
    return ToolCall(name=value["name"], args=args, id=f"call_{uuid.uuid4().hex[:24]}", type="tool_call")


def complete_json_end(text: str) -> int | None:
    """Where the first JSON object of ``text`` ends (exclusive), if it is already complete."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        _, end = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError:
        return None
    return end
