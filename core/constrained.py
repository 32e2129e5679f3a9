"""Decoding under a JSON schema: a grammar masks every next token that would break the schema.

`JsonSchemaConstraint` is a transformers-style logits processor (``processor(input_ids, scores) -> scores``) built on
llguidance, which compiles a JSON schema into a grammar and computes the set of allowed tokens for the model's own
tokenizer in well under a millisecond a step. The backend applies it to every row it decodes — plain decoding, the
search's candidates and simulations, and the next-token priors of one-token children — so every path the search can
commit is a prefix of a document the schema accepts, and once the document is complete only end-of-sequence remains.

A grammar matcher is stateful, but rows in a search branch, rewind and share prefixes. So the constraint keeps no
"current row": it keys matcher states by the tokens a row has produced (its input ids) and advances a copy of the
longest known prefix. Siblings share their parent's state; a rewind simply asks for an older key.

The schema is tightened for decoding (`decoding_schema`): objects accept only their listed properties unless the
schema says otherwise, strings without a ``maxLength`` get one, arrays without ``maxItems`` get one, and whitespace
is fixed (``", "`` and ``": "``, as ``json.dumps`` writes). A small model otherwise invents keys or keeps a string
going until the token budget ends, and the call never closes.
"""

from __future__ import annotations

import copy
import json
import threading
from collections import OrderedDict
from typing import Any, Mapping

import torch

from .errors import RainError

#: Longest string value the model may write where the schema sets no ``maxLength`` (characters).
MAX_STRING_LENGTH = 64
#: Most items an array may hold where the schema sets no ``maxItems``.
MAX_ARRAY_ITEMS = 8
_SEPARATORS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
_STATES_KEPT = 4096

_tokenizers: dict[tuple[int, int], Any] = {}
_tokenizers_lock = threading.Lock()


class ConstraintError(RainError):
    """A schema the grammar compiler refuses, or a forced prefix the schema does not allow."""


def _llguidance() -> Any:
    try:
        import llguidance
        import llguidance.hf
        import llguidance.torch
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ConstraintError("Decoding under a JSON schema needs the llguidance package (a dependency of "
                              "rain-align): pip install llguidance") from exc
    return llguidance


def grammar_tokenizer(tokenizer: Any, vocab_size: int) -> Any:
    """llguidance's view of ``tokenizer`` (built once per tokenizer: it reads the whole vocabulary, ~1 s)."""
    llg = _llguidance()
    key = (id(tokenizer), vocab_size)
    with _tokenizers_lock:
        if key not in _tokenizers:
            _tokenizers[key] = (tokenizer, llg.hf.from_tokenizer(tokenizer, n_vocab=vocab_size))
        return _tokenizers[key][1]


def decoding_schema(schema: Mapping[str, Any], *, max_string: int = MAX_STRING_LENGTH,
                    max_items: int = MAX_ARRAY_ITEMS) -> dict[str, Any]:
    """A copy of ``schema`` with the bounds that let a small model close its document (see the module docstring).
    Bounds the schema sets itself are kept."""
    out = copy.deepcopy(dict(schema))

    def tighten(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                tighten(item)
            return
        if not isinstance(node, dict):
            return
        kind = node.get("type")
        kinds = set(kind) if isinstance(kind, list) else {kind}
        if "object" in kinds or "properties" in node:
            node.setdefault("additionalProperties", False)
        if "string" in kinds and not {"enum", "const", "pattern", "format"} & set(node):
            node.setdefault("maxLength", max_string)
        if "array" in kinds:
            node.setdefault("maxItems", max_items)
        for key, value in node.items():
            if key in ("properties", "$defs", "definitions"):
                for sub in value.values():
                    tighten(sub)
            elif key in ("items", "anyOf", "oneOf", "allOf", "prefixItems", "additionalProperties", "not"):
                tighten(value)

    tighten(out)
    return out


class JsonSchemaConstraint:
    """Only tokens that keep the response a valid prefix of a JSON document matching ``schema``.

    Args:
        schema: the JSON schema of the whole response.
        tokenizer: the model's Hugging Face tokenizer.
        vocab_size: the width of the model's logits (may exceed the tokenizer's size).
        prefix: text that already opens the document but is part of the prompt (e.g. a forced tool call's
            ``{"name": "get_weather", "arguments": {``); the grammar starts after it.
        tighten: apply `decoding_schema`'s bounds (default True).
    """

    def __init__(self, schema: Mapping[str, Any], tokenizer: Any, *, vocab_size: int | None = None,
                 prefix: str = "", tighten: bool = True) -> None:
        if not isinstance(schema, Mapping):
            raise ConstraintError(f"A JSON schema must be a dict, not {type(schema).__name__}.")
        llg = _llguidance()
        self.schema = decoding_schema(schema) if tighten else dict(schema)
        self.vocab_size = int(vocab_size or len(tokenizer))
        self._tokenizer = tokenizer
        self._lltok = grammar_tokenizer(tokenizer, self.vocab_size)
        grammar = llg.LLMatcher.grammar_from_json_schema(json.dumps(self.schema), defaults=_SEPARATORS)
        root = llg.LLMatcher(self._lltok, grammar)
        if root.is_error():
            raise ConstraintError(f"The JSON schema cannot be compiled into a grammar: {root.get_error()}")
        self.prefix = ""
        self._root = root
        self._states: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._bits = torch.arange(32, dtype=torch.int32)
        self._eos = [i for i in {tokenizer.eos_token_id} if isinstance(i, int)]
        if prefix:
            opened = self.with_prefix(prefix)
            self._root, self.prefix = opened._root, opened.prefix

    def with_prefix(self, prefix: str) -> "JsonSchemaConstraint":
        """The same constraint for a prompt that already ends with ``prefix`` (e.g. `forced_text`): the grammar
        resumes after it. Raises `ConstraintError` when the schema does not allow ``prefix`` there."""
        other = copy.copy(self)
        other._root = self._root.deep_copy()
        other._states = OrderedDict()
        other.prefix = self.prefix + prefix
        ids = list(self._tokenizer.encode(prefix, add_special_tokens=False))
        if not other._root.consume_tokens(ids) or other._root.is_error():
            raise ConstraintError(f"The text {other.prefix!r} does not start a document this schema accepts.")
        return other

    # ------------------------------------------------------------------------------------------------ text
    def forced_text(self) -> str:
        """What the schema forces next from the start (after ``prefix``): e.g. ``{"name": "get_weather",
        "arguments": {"location": "`` for a one-tool call whose first argument is a required string."""
        return bytes(self._root.compute_ff_bytes()).decode("utf-8", errors="ignore")

    def accepts(self, text: str) -> bool:
        """Whether ``text`` (after ``prefix``) is a complete document under the (tightened) schema."""
        matcher = self._root.deep_copy()
        ids = list(self._tokenizer.encode(text, add_special_tokens=False))
        return matcher.consume_tokens(ids) and not matcher.is_error() and matcher.is_accepting()

    # ------------------------------------------------------------------------------------------------ state
    def _state(self, tokens: tuple[int, ...]) -> Any:
        """The matcher after ``tokens``: a copy of the longest known prefix's state, advanced by the rest."""
        if tokens in self._states:
            self._states.move_to_end(tokens)
            return self._states[tokens]
        known = len(tokens) - 1
        while known > 0 and tokens[:known] not in self._states:
            known -= 1
        matcher = (self._states[tokens[:known]] if known > 0 else self._root).deep_copy()
        for token in tokens[known:]:
            if matcher.is_error() or not matcher.consume_token(token):
                break
        self._states[tokens] = matcher
        while len(self._states) > _STATES_KEPT:
            self._states.popitem(last=False)
        return matcher

    # ------------------------------------------------------------------------------------------------ processor
    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Mask ``scores`` (one row per response in ``input_ids``, which holds the response tokens only) to the
        tokens the schema allows next; a finished document allows only end-of-sequence."""
        llg = _llguidance()
        rows, width = scores.shape
        words = llg.torch.allocate_token_bitmask(rows, self.vocab_size)
        broken = []
        for row in range(rows):
            matcher = self._state(tuple(int(t) for t in input_ids[row].tolist()))
            if matcher.is_error():  # a token from outside the grammar (never produced under this constraint)
                broken.append(row)
            else:
                llg.torch.fill_next_token_bitmask(matcher, words, row)
        allowed = ((words.unsqueeze(-1) >> self._bits) & 1).reshape(rows, -1)[:, :width].bool()
        if allowed.shape[1] < width:  # logits wider than the vocabulary: the padding ids are never allowed
            allowed = torch.cat([allowed, allowed.new_zeros(rows, width - allowed.shape[1])], dim=1)
        for row in broken:  # end such a row rather than let it write on
            allowed[row] = False
            allowed[row, self._eos] = True
        return scores.masked_fill(~allowed.to(scores.device), float("-inf"))


def parse_schema(schema: Any) -> dict[str, Any]:
    """A schema given as a dict or JSON text, checked to be an object."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise ConstraintError(f"The JSON schema is not valid JSON: {exc}") from exc
    if not isinstance(schema, Mapping):
        raise ConstraintError(f"A JSON schema must be an object, not {type(schema).__name__}.")
    return dict(schema)


__all__ = ["JsonSchemaConstraint", "ConstraintError", "decoding_schema", "grammar_tokenizer", "parse_schema",
           "MAX_STRING_LENGTH", "MAX_ARRAY_ITEMS"]
