"""Fluency and diversity of what a method wrote, as controlled-generation papers report them.

A method can raise a sentiment judge's score by abandoning the text it was asked to continue ("I made the following
changes: ..."); the judge reads the continuation alone and does not notice. Two measures make that visible:

- **perplexity** of the continuation given the prompt under the base model itself (lower is more fluent, more
  on-topic): exp of the mean negative log-likelihood of the continuation's tokens, the prompt as context. It is
  computed without the prefix cache and without touching the backend's token counters, so it costs no method
  anything.
- **distinct-n** across a method's outputs: distinct word n-grams over all word n-grams (1.0: no n-gram repeats;
  low values mean the method writes the same thing everywhere).
"""

from __future__ import annotations

import math
import re
import statistics
from typing import Any, Sequence

from ..exchange import format_prompt

_WORD = re.compile(r"\w+|[^\w\s]")


def continuation_perplexity(rain: Any, prompt: str, output: str, prompt_format: str | None = None) -> float | None:
    """Perplexity of ``output`` following ``prompt`` (rendered as the generator saw it) under ``rain``'s model;
    None for an empty output."""
    if not output.strip():
        return None
    formatted = format_prompt(rain.tokenizer, prompt, prompt_format or rain.prompt_format)
    encode = lambda text: list(rain.tokenizer(text, add_special_tokens=formatted.add_special_tokens)["input_ids"])  # noqa: E731
    context, full = encode(formatted.text), encode(formatted.text + output)
    start = 0  # the first token of the continuation: where the two encodings part (a boundary merge moves it left)
    while start < min(len(context), len(full)) and context[start] == full[start]:
        start += 1
    start = max(start, 1)
    if start >= len(full):
        return None
    logprobs = rain.backend.sequence_logprobs(full, start)
    nll = -sum(logprobs) / len(logprobs)
    return float(math.exp(float(nll)))


def distinct_n(texts: Sequence[str], n: int) -> float | None:
    """Distinct word ``n``-grams over all word ``n``-grams in ``texts`` (lower-cased); None when there are none."""
    total, seen = 0, set()
    for text in texts:
        words = _WORD.findall(text.lower())
        for i in range(len(words) - n + 1):
            seen.add(tuple(words[i:i + n]))
            total += 1
    return len(seen) / total if total else None


def fluency_summary(records: Sequence[dict]) -> dict[str, Any]:
    """Mean and median perplexity (over records that have one) and distinct-1/2 of the outputs of ``records``."""
    ppl = [r["perplexity"] for r in records if r.get("perplexity") is not None]
    outputs = [r["output"] for r in records]
    return {"mean_perplexity": statistics.fmean(ppl) if ppl else None,
            "median_perplexity": statistics.median(ppl) if ppl else None,
            "perplexity_n": len(ppl),
            "distinct_1": distinct_n(outputs, 1), "distinct_2": distinct_n(outputs, 2)}
