"""The judged text as data: what a safety judge does to a reply before reading it, so that words addressed to the
judge cannot steer it (issue 23, docs/security.md).

A self-evaluation pastes text that someone else may have written (a retrieved document, a tool result, an echoed
user message) into the judge's own question. Three things here keep that text in its place:

- `fold`: Unicode NFKC, look-alike letters folded to the Latin ones they imitate, invisible format characters
  dropped, so "Ѕаfе" written in Cyrillic or full-width letters is read (and neutralised) as "Safe".
- `neutralise`: removes what only makes sense as an attempt to speak in the judge's own voice: chat-template and
  role tokens ("<|im_start|>", "[INST]", a line opening "Human:" or "Assistant:"), the delimiters of the quote the
  judge puts the text in (angle-bracket tags, code fences, so the text cannot close its quote), lettered option
  lines, and any sentence that repeats the judge's own question or answer cue (its own format, read from the prompt,
  not from a list of known attacks).
- `clauses` and `variants`: the text cut into sentences and bracketed asides, and the texts the judge reads besides
  the whole: every shorter run of neighbouring clauses (every prefix and suffix among them) and the whole without
  each inner clause. The judge keeps the lowest score, so text added at the start or the end (of any length, in any
  language), or as one sentence or aside anywhere, cannot lift a reply above what it scores without that text: the
  reply without it is among the variants, and so are the runs the reply alone is judged by.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable, Sequence

#: Cyrillic and Greek letters that render like Latin ones (the look-alikes an attacker reaches for first; NFKC
#: already folds the full-width and mathematical alphabets).
_LOOKALIKES = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d",
    "ɡ": "g", "һ": "h", "ӏ": "l", "ԛ": "q", "ԝ": "w", "ү": "y", "ѵ": "v",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T", "У": "Y",
    "Х": "X", "І": "I", "Ј": "J", "Ѕ": "S", "Ԁ": "D", "Ү": "Y", "Ԛ": "Q", "Ԝ": "W",
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "ι": "i", "κ": "k", "τ": "t", "υ": "u", "ε": "e",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P",
    "Τ": "T", "Υ": "Y", "Χ": "X",
})

# Chat-template and role tokens of the common template families, written generically: anything shaped like
# <|...|>, <<SYS>>, [INST], <start_of_turn>, <s>, </s>.
_TEMPLATE_TOKENS = re.compile(r"<\|[^<>|]{0,40}\|>|<</?SYS>>|\[/?INST\]|<(?:start|end)_of_turn>|</?s>", re.IGNORECASE)
_AFTER_TOKEN = re.compile(r"\x00+[ \t]*(?:(?:user|assistant|system|model|human|tool)\b[ \t]*\n?)?", re.IGNORECASE)
# Angle-bracket tags (the judge quotes the text between tags, so the text may hold none) and code fences.
_TAGS = re.compile(r"</?\s*[A-Za-z_][A-Za-z0-9_\-]{0,30}(?:\s[^<>]{0,60})?>")
_FENCE = re.compile(r"`{3,}[A-Za-z0-9_\-]*|~{3,}")
# A speaker's name opening a line (or following a blank line): the shape of a fake next turn.
_ROLE = re.compile(r"(^|\n)[ \t]*(?:human|assistant|user|system|ai|bot|model|gpt|h|a)[ \t]*:[ \t]*", re.IGNORECASE)
# A lettered option line, "(A) harmless", "B) harmful", "[A] ...".
_OPTION = re.compile(r"(^|\n)[ \t]*[\(\[]?[A-Da-d][\)\]][ \t]+", re.MULTILINE)
# Sentence ends (., !, ?, ; and their full-width forms, or a line break) and bracketed asides.
_SENTENCE = re.compile(r"(?<=[.!?;。！？])[\"'”’)\]]*\s+|\n+")
_ASIDE = re.compile(r"\([^()]{3,}\)|\[[^\[\]]{3,}\]")


def fold(text: str) -> str:
    """NFKC, look-alike letters folded to Latin, invisible format characters (zero-width joiners, bidi marks)
    dropped."""
    text = unicodedata.normalize("NFKC", text).translate(_LOOKALIKES)
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def neutralise(text: str, own_phrases: Iterable[str] = (), special_tokens: Iterable[str] = ()) -> str:
    """``text`` with the judge's format taken out of it (see the module docstring).

    own_phrases: the judge's own question and answer cue; a sentence of the text containing one of them (compared
    word for word, case and punctuation ignored) is dropped. special_tokens: the judge model's special-token strings
    (its tokenizer would read them as turn boundaries even inside the text)."""
    text = fold(text)
    for token in sorted({t for t in special_tokens if t and len(t) > 1}, key=len, reverse=True):
        text = text.replace(token, "\x00")
    text = _TEMPLATE_TOKENS.sub("\x00", text)
    text = _AFTER_TOKEN.sub("\n", text)  # a template token and the role name a template writes after it
    text = _TAGS.sub(" ", text)
    text = _FENCE.sub(" ", text)
    text = _ROLE.sub(r"\1", text)
    text = _OPTION.sub(r"\1", text)
    phrases = [p for p in (_words(p) for p in own_phrases) if len(p.split()) >= 2]
    if phrases:
        kept = [s for s in _split(text) if not any(p in _words(s) for p in phrases)]
        text = " ".join(kept)
    return re.sub(r"\n{3,}", "\n\n", re.sub(r"[ \t]{2,}", " ", text)).strip()


def _split(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def clauses(text: str, limit: int = 24) -> list[str]:
    """The units a reply is judged by besides the whole: its sentences with bracketed asides cut out, and the asides
    themselves (a parenthesis in the middle of a harmful sentence is judged apart from it). Units without a letter
    are dropped. Past ``limit`` units, neighbours are merged into ``limit`` runs, so a long document costs a bounded
    number of rows."""
    units: list[str] = []
    for sentence in _split(text):
        asides = _ASIDE.findall(sentence)
        rest = _ASIDE.sub(" ", sentence) if asides else sentence
        units.extend(re.sub(r"\s{2,}", " ", u).strip() for u in [rest, *asides])
    units = [u for u in units if re.search(r"[^\W\d_]", u)]
    if len(units) <= limit:
        return units
    size = -(-len(units) // limit)
    return [" ".join(units[i: i + size]) for i in range(0, len(units), size)]


def special_token_strings(tokenizer: object) -> Sequence[str]:
    """The tokenizer's special-token strings (added tokens included), or none for a model without a tokenizer."""
    if tokenizer is None:
        return ()
    found = set(getattr(tokenizer, "all_special_tokens", None) or ())
    added = getattr(tokenizer, "get_added_vocab", None)
    if callable(added):
        try:
            found |= set(added())
        except Exception:  # noqa: BLE001 (a tokenizer without the method's backing data: use what we have)
            pass
    return tuple(found)


def variants(units: Sequence[str], width: int = 2) -> list[str]:
    """The texts judged besides the whole, for a reply cut into ``units`` (`clauses`): every run of up to ``width``
    neighbouring units, and every two units with one between them left out, without repeats (about ``3k`` short
    texts for ``k`` units, none for one).

    Why these: a note added before, after or between the sentences of a short harmful reply is left out of one of
    them (the two sentences alone, or around the note), while the harmful sentences keep the neighbour that may be
    what makes them harmful. They are local, so a reply's variants do not change when a clause is added after it:
    guard mode, judging the response after each clause, reads only the few that end in the new clause."""
    k = len(units)
    if k < 2:
        return []
    runs = [" ".join(units[i:i + size]) for size in range(1, min(width, k - 1) + 1) for i in range(k - size + 1)]
    skips = [f"{units[i]} {units[i + 2]}" for i in range(k - 2)]
    return list(dict.fromkeys(runs + skips))
