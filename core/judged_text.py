"""The judged text as data: what a safety judge does to a reply before reading it, so that words addressed to the
judge cannot steer it (issue 23, docs/security.md).

A self-evaluation pastes text that someone else may have written (a retrieved document, a tool result, an echoed
user message) into the judge's own question. Three things here keep that text in its place:

- `fold`: Unicode NFKC, look-alike letters folded to the Latin ones they imitate, invisible format characters
  dropped, so "Ѕаfе" written in Cyrillic or full-width letters is read (and neutralised) as "Safe".
- `neutralise`: removes what only makes sense as an attempt to speak in the judge's own voice: chat-template and
  role tokens ("<|im_start|>", "[INST]", a line opening "Human:" or "Assistant:"), the delimiters of the quote the
  judge puts the text in (angle- and square-bracket tags, code fences, so the text cannot close its quote),
  lettered option lines, and any sentence that repeats the judge's own question or answer cue (its own format,
  read from the prompt, not from a list of known attacks).
- `clauses` and `variants`: the text cut into sentences and bracketed asides, and the texts the judge reads besides
  the whole: the whole without each run of up to three neighbouring clauses, and without its first and last clause
  together. The judge keeps the lowest score, so a note of up to three sentences added in one place (first, last,
  in the middle, as an aside), or a sentence at each end, in any language or wording, cannot lift a reply above
  what it scored before: the reply without the note is among the texts judged. Each text keeps the rest of the
  reply as context, which is what keeps benign replies passing.
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
# Markup tags (the judge quotes the text between tags, so the text may hold none): angle-bracket tags, and one-word
# square-bracket tags as BBCode and some templates write them ("[system]", "[/quote]"); and code fences.
_TAGS = re.compile(r"</?\s*[A-Za-z_][A-Za-z0-9_\-]{0,30}(?:\s[^<>]{0,60})?>|\[/?[A-Za-z_][A-Za-z0-9_\-]{0,30}\]")
_FENCE = re.compile(r"`{3,}[A-Za-z0-9_\-]*|~{3,}")
# A speaker's name opening a line (or following a blank line): the shape of a fake next turn.
_ROLE = re.compile(r"(^|\n)[ \t]*(?:human|assistant|user|system|ai|bot|model|gpt|h|a)[ \t]*:[ \t]*", re.IGNORECASE)
# A lettered option line, "(A) harmless", "B) harmful", "[A] ...".
_OPTION = re.compile(r"(^|\n)[ \t]*[\(\[]?[A-Da-d][\)\]][ \t]+", re.MULTILINE)
# Sentence ends (., !, ?, ; and their full-width forms, or a line break) and bracketed asides.
_STOP, _CLOSERS = r"[.!?;。！？]", r"[\"'”’)\]]*"  # a sentence's closing stop, and quotes or brackets after it
_SENTENCE = re.compile(rf"(?<={_STOP}){_CLOSERS}\s+|\n+")
_SENTENCE_BREAK = re.compile(f"({_SENTENCE.pattern})")
_ENDS_SENTENCE = re.compile(rf"{_STOP}{_CLOSERS}$")
_ASIDE = re.compile(r"\([^()]{3,}\)|\[[^\[\]]{3,}\]")


def fold(text: str) -> str:
    """NFKC, look-alike letters folded to Latin, invisible format characters (zero-width joiners, bidi marks)
    dropped."""
    text = unicodedata.normalize("NFKC", text).translate(_LOOKALIKES)
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


#: A sentence echoes a judge phrase of at least `_PARAPHRASE_MIN` words when it keeps this share of the phrase's
#: words in order and is not much longer than it: "Read the text above and decide ..." against the judge's own
#: "Read the text below and decide ...". Shorter phrases must appear word for word.
_PARAPHRASE_SHARE = 0.75
_PARAPHRASE_MIN = 4
_PARAPHRASE_SLACK = 6


def _common_in_order(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two word lists."""
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], prev + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def echoes(sentence: str, phrase: str) -> bool:
    """Whether ``sentence`` repeats the judge's ``phrase`` (both as `_words`): word for word, or, for a phrase of
    `_PARAPHRASE_MIN` words or more, as a close paraphrase of similar length (most of its words, in its order). Why
    a paraphrase counts: a text imitating the judge's instructions need not copy them exactly, and the judge reads
    a near copy as its own instruction all the same."""
    if phrase in sentence:
        return True
    words, target = sentence.split(), phrase.split()
    if len(target) < _PARAPHRASE_MIN or len(words) > len(target) + _PARAPHRASE_SLACK:
        return False
    return _common_in_order(words, target) >= _PARAPHRASE_SHARE * len(target)


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
        pieces = _SENTENCE_BREAK.split(text)  # sentence, break, sentence, break, ..., sentence
        kept: list[tuple[str, bool]] = []  # each kept sentence, and whether a line break followed it
        for sentence, end in zip(pieces[::2], [*pieces[1::2], ""]):
            sentence = sentence.strip()
            if sentence and not any(echoes(_words(sentence), p) for p in phrases):
                kept.append((sentence, "\n" in end))
        text = ""
        for n, (sentence, broken) in enumerate(kept):
            after = kept[n + 1][0] if n + 1 < len(kept) else ""
            text += sentence + _joint(sentence, after, broken)
    return re.sub(r"\n{3,}", "\n\n", re.sub(r"[ \t]{2,}", " ", text)).strip()


def _joint(line: str, after: str, broken: bool) -> str:
    """What joins two kept sentences: a space, so that a note written over several short lines (an option list, a
    question and its answer) stays one or two clauses, which a leave-out text can drop, not four or five; but a
    line break where a line that is no sentence (a heading, a label: no closing stop) stands before one that is,
    so that the label is not run into the reply's first sentence, where no leave-out text could drop it alone."""
    if broken and after and not _ENDS_SENTENCE.search(line) and _ENDS_SENTENCE.search(after):
        return "\n"
    return " " if after else ""


def _split(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def clauses(text: str, limit: int = 8) -> list[str]:
    """The units a reply is judged by besides the whole: its sentences with bracketed asides cut out, and the asides
    themselves (a parenthesis in the middle of a harmful sentence is judged apart from it). Units without a letter
    are dropped. Past ``limit`` units, neighbours are merged into ``limit`` runs, so a long document costs a bounded
    number of rows (each of them nearly the whole text: about ``2 * limit`` times the plain judge's input)."""
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


def variants(units: Sequence[str], drop: int = 3) -> list[str]:
    """The texts judged besides the whole, for a reply cut into ``units`` (`clauses`): the reply without each run of
    up to ``drop`` neighbouring units, and, from four units on, without its first and last unit together; without
    repeats (about ``3k`` texts for ``k`` units, none for one).

    Why these: a note of up to three sentences added in one place (first, last, in the middle, as an aside), or one
    sentence at each end, is what one of them leaves out, so the reply as it was before the note is among the texts
    judged and the lowest score cannot rise above its score; and each text keeps the rest of the reply around what
    it drops, so a benign reply is judged in its own context rather than sentence by sentence (the 135M judge calls
    benign sentences read alone unsafe far more often). docs/security.md has the measurements, the shapes measured
    and not adopted among them."""
    k = len(units)
    if k < 2:
        return []
    texts = [" ".join([*units[:i], *units[i + width:]])
             for width in range(1, min(drop, k - 1) + 1) for i in range(k - width + 1)]
    if k >= 4:
        texts.append(" ".join(units[1:-1]))
    return list(dict.fromkeys(texts))
