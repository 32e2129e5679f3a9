"""How a prompt is shown to the generator, and how the exchange so far is shown to a judge.

Three prompt formats:
- ``chat``: the tokenizer's chat template with a generation prompt (instruct models);
- ``plain``: RAIN's own query format, ``"\\nHuman: " + prompt + "\\nAssistant:"`` (base models); a new ``"\\nHuman:"``
  turn ends the response;
- ``raw``: the prompt is continued as it is (e.g. the controlled-sentiment task: continue a review prefix).
``auto`` picks ``chat`` when the tokenizer has a chat template and ``plain`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

from .errors import PromptError, RainError

PromptFormat = Literal["auto", "chat", "plain", "raw"]
Message = dict[str, str]
PLAIN_TURN_MARKER = "\nHuman:"


@dataclass(frozen=True)
class Exchange:
    """What a judge sees: the user's request, the response so far, and the whole conversation as one text."""

    prompt: str
    response: str
    history: str  # the conversation before the response, in "Human:/Assistant:" form (or the raw prefix)
    raw: bool = False

    @classmethod
    def single_turn(cls, prompt: str, response: str) -> "Exchange":
        """A one-question exchange in RAIN's plain ``Human:/Assistant:`` form: how a guard step or an evaluator
        shows a (query, answer) pair to the judge."""
        return cls(prompt=prompt, response=response, history=f"\nHuman: {prompt.strip()}\nAssistant:")

    @property
    def conversation(self) -> str:
        if self.raw:
            return self.history + self.response
        return f"{self.history} {self.response.strip()}".rstrip()


@dataclass(frozen=True)
class FormattedPrompt:
    """The generator's input text, the new-turn markers that end a response, and the judge's view of the history."""

    text: str
    stop_markers: tuple[str, ...]
    last_user: str
    history: str
    raw: bool
    add_special_tokens: bool


#: The message roles a prompt may hold (the turns of a chat template; ``tool`` is a tool's result).
ROLES = ("system", "user", "assistant", "tool")
EMPTY_PROMPT = "The prompt is empty; pass some text to respond to."


def _as_messages(prompt: str | Sequence[Message]) -> list[Message]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    messages = [dict(m) for m in prompt]
    for m in messages:
        if "role" not in m or "content" not in m:
            raise PromptError(f"Each message needs 'role' and 'content' keys; got {m!r}.")
        if m["role"] not in ROLES:
            raise PromptError(f"Unknown message role {m['role']!r}; the accepted roles are {', '.join(ROLES)}.")
    if not any(str(m["content"]).strip() for m in messages if m["role"] != "system"):
        raise PromptError(EMPTY_PROMPT)  # the same refusal as an empty string prompt
    return messages


def _plain_history(messages: list[Message]) -> str:
    lines = []
    for m in messages:
        role = m["role"]
        if role == "system":
            lines.append(m["content"].strip())
        elif role == "assistant":
            lines.append(f"Assistant: {m['content'].strip()}")
        else:
            lines.append(f"Human: {m['content'].strip()}")
    return "\n" + "\n".join(lines) + "\nAssistant:"


def resolve_format(tokenizer: Any, fmt: PromptFormat) -> str:
    if fmt not in ("auto", "chat", "plain", "raw"):
        raise RainError(f"Unknown prompt format {fmt!r}; use auto, chat, plain or raw.")
    if fmt == "auto":
        return "chat" if getattr(tokenizer, "chat_template", None) else "plain"
    if fmt == "chat" and not getattr(tokenizer, "chat_template", None):
        raise RainError("prompt_format='chat' but this tokenizer has no chat template; use 'plain' or 'raw'.")
    return fmt


def format_prompt(tokenizer: Any, prompt: str | Sequence[Message], fmt: PromptFormat = "auto") -> FormattedPrompt:
    """Render ``prompt`` (a string or chat messages) for the generator and for the judge."""
    if isinstance(prompt, str) and not prompt.strip():
        raise PromptError(EMPTY_PROMPT)
    if not isinstance(prompt, str) and not prompt:
        raise PromptError("The message list is empty; pass at least one message.")
    fmt = resolve_format(tokenizer, fmt)
    if fmt == "raw":
        if not isinstance(prompt, str):
            raise RainError("prompt_format='raw' continues a text; pass a string, not messages.")
        return FormattedPrompt(prompt, (), prompt, prompt, raw=True, add_special_tokens=True)
    messages = _as_messages(prompt)
    users = [m["content"] for m in messages if m["role"] not in ("assistant", "system")]
    last_user = users[-1] if users else messages[-1]["content"]
    history = _plain_history(messages)
    if fmt == "plain":
        return FormattedPrompt(history, (PLAIN_TURN_MARKER,), last_user, history, raw=False, add_special_tokens=True)
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return FormattedPrompt(text, (), last_user, history, raw=False, add_special_tokens=False)
