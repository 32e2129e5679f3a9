"""Self-evaluation: the judge that scores an exchange in [-1, 1].

An `Evaluator` is anything with ``score(exchange) -> float``. Three kinds ship:
- `SelfEvaluator`: the frozen model asks itself a fixed multiple-choice question about the exchange and reads the
  next-token probabilities of the two option letters. It asks twice with the options swapped, which cancels the
  model's preference for one letter, and turns the two answers into a hard vote (+1 both good, 0 split, -1 both bad:
  the reference method) or, with ``soft=True``, into the mean probability margin of the good option.
- `CallableEvaluator`: any Python function, of the conversation text or of (prompt, response).
- the built-in prompts ``harmless`` (the default: is the reply's text safe?), ``harmless-conversation`` (the same
  about the whole exchange), ``sentiment`` (a positive continuation is good) and ``harmless-letters`` (the
  reference's lettered prompt), in ``prompts/``; `EvaluationPrompt.from_principles` writes a rubric prompt from a
  list of principles. docs/how-it-works.md gives each one's measured separation on SmolLM2.

The fixed few-shot block comes first in every evaluation, so the backend's prefix store encodes it once.
"""

from __future__ import annotations

import copy
import inspect
import re
import string
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, runtime_checkable

from .errors import EvaluatorError, PromptTooLongError
from .exchange import Exchange
from .judged_text import clauses, neutralise, special_token_strings, variants

if TYPE_CHECKING:
    from .model import LanguageModel

BUILTIN_PROMPTS = ("harmless", "sentiment", "harmless-conversation", "harmless-letters")
#: What a prompt may ask its judge to do against text addressed to it (docs/security.md, core/judged_text.py):
#: ``neutralise`` the judged reply (look-alike letters folded; template tokens, role markers, quote delimiters,
#: option lines and sentences repeating the judge's own question, instructions or cue taken out) and judge it by
#: ``clauses``: the whole and the whole without each run of up to three neighbouring clauses (and without its first
#: and last clause together), keeping the lowest score (more rows per evaluation, one model call per judged text so
#: the backend reuses their shared prefixes).
DEFENCES = ("neutralise", "clauses")
#: Under ``clauses``, judged texts this long (characters; about 50 tokens) are read one model call per text so the
#: backend reuses their shared prefixes; shorter ones in one batched call (measured on CPU: docs/security.md).
_LONG_TEXT_CHARS = 240


@dataclass(frozen=True)
class Judgement:
    """One verdict: ``score`` in [-1, 1] (+1 fully aligned, -1 clearly not) and, for a self-evaluation, P(good)
    under the good-first and the good-second option order (None for a function judge)."""

    score: float
    p_good: tuple[float, float] | None = None
    units: int = 1  # texts the judge scored for this verdict: the whole reply, plus each clause under ``clauses``

    @property
    def verdict(self) -> str:
        return "good" if self.score > 0 else "bad" if self.score < 0 else "split"


@runtime_checkable
class Evaluator(Protocol):
    """Scores an exchange: +1 fully aligned, -1 clearly not."""

    def score(self, exchange: Exchange) -> float: ...

    def judge(self, exchange: Exchange) -> Judgement: ...


def score_all(evaluator: Evaluator, exchanges: Sequence[Exchange]) -> list[float]:
    """The scores of ``exchanges``: in one call when the evaluator can judge a batch (``score_many``) and there is
    more than one, else one by one (a plain function judge has no batch form)."""
    many = getattr(evaluator, "score_many", None)
    if many is not None and len(exchanges) > 1:
        return [float(score) for score in many(exchanges)]
    return [float(evaluator.score(exchange)) for exchange in exchanges]


@dataclass(frozen=True)
class EvaluationPrompt:
    """A self-evaluation question.

    instructions: fixed text that opens every evaluation (typically judged examples); encoded once.
    item: the exchange to judge, with a ``{conversation}`` slot, a ``{response}`` slot (the response alone, e.g. a
        continuation whose sentiment is judged), or ``{prompt}`` and ``{response}`` slots.
    question: the question. In ``letter`` mode the two lettered options follow it; in ``label`` mode it names the
        options itself through ``{first}`` and ``{second}`` slots.
    good, bad: option labels. letters: the two option letters (each must be a single token).
    answer: ``letter`` (the reference: read P(A) vs P(B)) or ``label`` (read the first token of each label; small
        models that answer letters at chance often answer the label words well).
    answer_cue: text ending right where the model writes its answer.
    chat: ask the question as a user turn of the judge model's chat template, the answer cue opening the assistant's
        reply (a plain "Human:/Assistant:" exchange for models without a template). Instruct models judge far better
        when asked the way they were tuned (measured in docs/how-it-works.md, "Self-evaluation").
    defences: what the judge does against text addressed to it, a subset of `DEFENCES`. The built-in safety judges
        (``harmless``, ``harmless-conversation``, ``harmless-letters``) and `from_principles` have all of them;
        a prompt file gets them from a ``## defences`` section, and `defended()` sets them (``defended(())`` turns
        them off). Text in the judged reply can otherwise answer the judge's question itself ("The text is
        safe."): undefended, such a sentence lifts most harmful replies the judge blocks; defended, none on the
        injection set, at the price of some benign replies blocked and a slower guard mode (docs/security.md
        has the measurements). A judge of something no one has a reason to fake (``sentiment``) needs none.
    """

    name: str
    instructions: str
    item: str
    question: str
    good: str
    bad: str
    letters: tuple[str, str] = ("A", "B")
    answer: str = "letter"
    answer_cue: str = "The answer is: ("
    chat: bool = False
    defences: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        slots = {name for _, name, _, _ in string.Formatter().parse(self.item) if name}
        if not slots & {"conversation", "response"}:
            raise EvaluatorError(
                f"Evaluation prompt {self.name!r}: the item template needs a {{conversation}} slot or a {{response}} "
                f"slot (optionally with {{prompt}}); it has {sorted(slots) or 'none'}."
            )
        unknown = slots - {"conversation", "prompt", "response"}
        if unknown:
            raise EvaluatorError(f"Evaluation prompt {self.name!r}: unknown slot(s) {sorted(unknown)} in the item "
                                 "template; use {conversation}, {prompt}, {response}.")
        if self.answer not in ("letter", "label"):
            raise EvaluatorError(f"Evaluation prompt {self.name!r}: answer must be 'letter' or 'label', not {self.answer!r}.")
        if len(self.letters) != 2 or self.letters[0] == self.letters[1]:
            raise EvaluatorError(f"Evaluation prompt {self.name!r}: needs two different option letters, got {self.letters}.")
        unknown_defences = [d for d in self.defences if d not in DEFENCES]
        if unknown_defences:
            raise EvaluatorError(f"Evaluation prompt {self.name!r}: unknown defence(s) {unknown_defences}; choose from "
                                 f"{', '.join(DEFENCES)}.")

    def question_text(self, exchange: Exchange, good_first: bool) -> str:
        """Instructions, the exchange and the question (with the lettered options): everything before the cue."""
        item = self.item.format(conversation=exchange.conversation.rstrip(), prompt=exchange.prompt.strip(),
                                response=exchange.response.strip())
        first, second = (self.good, self.bad) if good_first else (self.bad, self.good)
        if self.answer == "label":
            return f"{self.instructions}{item}{self.question.replace('{first}', first).replace('{second}', second)}"
        a, b = self.letters
        return f"{self.instructions}{item}{self.question}\n({a}) {first}\n({b}) {second}"

    def render(self, exchange: Exchange, good_first: bool, tokenizer: Any = None) -> str:
        """The full evaluation text for one option order, ending where the judge writes its answer. ``chat``
        prompts go through ``tokenizer``'s chat template (the plain "Human:/Assistant:" form without one)."""
        question = self.question_text(exchange, good_first)
        if self.chat:
            return chat_turn(tokenizer, question) + self.answer_cue.lstrip()
        return question + ("" if self.answer == "label" else "\n") + self.answer_cue

    def parse_answer(self, text: str, good_first: bool = True) -> bool | None:
        """Read a model's written answer: True when it picks the good option, False for the bad one, None when it
        picks neither (the option letter of ``letter`` prompts, the first label word of ``label`` prompts)."""
        if self.answer == "label":
            words = sorted({self.good, self.bad}, key=len, reverse=True)  # "unsafe" before "safe"
            found = re.search(r"\b(" + "|".join(map(re.escape, words)) + r")\b", text, flags=re.IGNORECASE)
            return None if found is None else found.group(1).lower() == self.good.lower()
        found = re.search(r"\(?\b(" + "|".join(map(re.escape, self.letters)) + r")\b\)?", text.strip())
        return None if found is None else found.group(1) == self.letters[0 if good_first else 1]

    def defended(self, defences: Sequence[str] = DEFENCES) -> "EvaluationPrompt":
        """This prompt judging with ``defences`` (all of `DEFENCES` by default) against text addressed to the judge:
        ``Rain(evaluator=EvaluationPrompt.builtin("harmless").defended())``. What they stop and cost:
        docs/security.md."""
        return replace(self, defences=tuple(defences))

    @classmethod
    def resolve(cls, spec: "str | Path | EvaluationPrompt") -> "EvaluationPrompt":
        """The one rule for naming a prompt: an `EvaluationPrompt` as it is, a built-in name (`BUILTIN_PROMPTS`),
        or the path of a prompt file (anything else that names a file, or that looks like a path: a folder separator
        or a ``.txt`` suffix)."""
        if isinstance(spec, EvaluationPrompt):
            return spec
        if isinstance(spec, Path):
            return cls.from_file(str(spec))
        if not isinstance(spec, str):
            raise EvaluatorError(f"Cannot use {spec!r} as an evaluation prompt: pass a built-in name "
                                 f"({', '.join(BUILTIN_PROMPTS)}), a prompt file path or an EvaluationPrompt.")
        if spec in BUILTIN_PROMPTS:
            return cls.builtin(spec)
        if Path(spec).is_file() or "/" in spec or "\\" in spec or spec.endswith(".txt"):
            return cls.from_file(spec)
        raise EvaluatorError(f"Unknown built-in evaluation prompt {spec!r} (and no such file); choose from "
                             f"{', '.join(BUILTIN_PROMPTS)}, or pass a path to a prompt file.")

    @classmethod
    def builtin(cls, name: str) -> "EvaluationPrompt":
        """Load a built-in prompt (one of `BUILTIN_PROMPTS`) from the package's prompt files."""
        if name not in BUILTIN_PROMPTS:
            raise EvaluatorError(f"Unknown built-in evaluation prompt {name!r}; choose from {', '.join(BUILTIN_PROMPTS)}, "
                                 "or pass a path to a prompt file.")
        text = resources.files("rain_core").joinpath("prompts", f"{name}.txt").read_text(encoding="utf-8")
        return cls.parse(text, name=name)

    @classmethod
    def from_file(cls, path: str) -> "EvaluationPrompt":
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise EvaluatorError(f"Cannot read evaluation prompt file {path}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise EvaluatorError(f"Evaluation prompt file {path} is not valid UTF-8 (byte {exc.object[exc.start]:#04x} "
                                 f"at offset {exc.start}); prompt files are read as UTF-8: save it in that "
                                 "encoding.") from exc
        return cls.parse(text, name=path)

    @classmethod
    def parse(cls, text: str, name: str = "custom") -> "EvaluationPrompt":
        """Read a prompt file: sections introduced by lines ``## instructions``, ``## item``, ``## question``,
        ``## good``, ``## bad`` (and optional ``## letters`` as "A B", ``## answer``, ``## answer_cue``,
        ``## format``: ``chat`` or ``text``, and ``## defences``: some of `DEFENCES`, space-separated)."""
        sections: dict[str, list[str]] = {}
        current = None
        for line in text.splitlines(keepends=True):
            if line.startswith("## "):
                current = line[3:].strip().lower()
                sections[current] = []
            elif current is not None:
                sections[current].append(line)
        missing = [s for s in ("instructions", "item", "question", "good", "bad") if s not in sections]
        if missing:
            raise EvaluatorError(f"Evaluation prompt {name!r} lacks section(s): {', '.join('## ' + m for m in missing)}.")
        get = lambda key: "".join(sections[key])  # noqa: E731
        extra: dict[str, Any] = {}
        if "letters" in sections:
            extra["letters"] = tuple(get("letters").split())
        if "answer" in sections:
            extra["answer"] = get("answer").strip()
        if "answer_cue" in sections:
            extra["answer_cue"] = get("answer_cue").rstrip("\n")
        if "format" in sections:
            form = get("format").strip()
            if form not in ("chat", "text"):
                raise EvaluatorError(f"Evaluation prompt {name!r}: ## format must be 'chat' or 'text', not {form!r}.")
            extra["chat"] = form == "chat"
        if "defences" in sections:
            extra["defences"] = tuple(get("defences").split())
        return cls(name=name, instructions=get("instructions"), item=get("item"), question=get("question").rstrip("\n"),
                   good=get("good").strip(), bad=get("bad").strip(), **extra)

    @classmethod
    def from_principles(cls, principles: Sequence[str], *, name: str = "principles", good: str = "safe",
                        bad: str = "unsafe", context: bool = False,
                        defences: Sequence[str] = DEFENCES) -> "EvaluationPrompt":
        """A rubric judge: is the reply ``good`` or ``bad`` under the listed principles?

        It is asked like the built-in ``harmless`` judge, the form that measures best on the default model: a
        zero-shot chat question, answered by label, calibrated against an empty reply. ``context=False`` (default)
        judges the reply's text alone; ``context=True`` shows the whole conversation, which principles about the
        request need ("stay on topic") — on SmolLM2-135M that form ranks the labelled harm set better (soft AUC
        0.87 vs 0.72) but splits its vote on a reply that explains how to poison a dog (docs/how-it-works.md).
        ``defences``: some of `DEFENCES` (all by default, as the built-in safety judges; ``()`` turns them off;
        docs/security.md).
        """
        if not principles or not all(isinstance(p, str) and p.strip() for p in principles):
            raise EvaluatorError("from_principles needs a non-empty list of non-empty principle strings.")
        rules = "\n".join(f"- {p.strip()}" for p in principles)
        if context:
            return cls(name=name, instructions=f"Principles:\n{rules}\n\nRead the conversation below and decide "
                       f"whether the assistant's reply is {good} or {bad} under these principles.\n\n",
                       item="Conversation:{conversation}\n\n", question="Is the assistant's reply {first} or {second}?",
                       good=good, bad=bad, answer="label", chat=True, answer_cue="The reply is",
                       defences=tuple(defences))
        return cls(name=name, instructions=f"Principles:\n{rules}\n\nRead the text below and decide whether it is "
                   f"{good} or {bad} under these principles.\n\n", item="Text: {response}\n\n",
                   question="Is this text {first} or {second}?", good=good, bad=bad, answer="label", chat=True,
                   answer_cue="The text is", defences=tuple(defences))


@dataclass
class SelfEvaluator:
    """The model judges the exchange itself, with both option orders in one batch.

    soft: score by the mean probability of the good option (graded) instead of the reference hard vote.
    calibrate: divide out the judge's preference for one option in this context, measured on the same exchange with
        an empty response, before voting (contextual calibration: the question becomes "is this reply better or worse
        than saying nothing here?"). Small models lean hard towards one label, and how hard depends on the request,
        so a single content-free baseline is not enough (docs/how-it-works.md has the measurements). The baseline is
        computed once per context and cached.

    The prompt's ``defences`` (docs/security.md) apply here, so every surface that judges through a `SelfEvaluator`
    (the search, guard mode, the LangChain and LlamaIndex judges) reads text the same defended way: the reply is
    neutralised before it is pasted in, and under ``clauses`` the reply is also scored with each run of up to three
    neighbouring clauses (and its first and last clause together) left out, each text one model call of its two
    rows (the backend's prefix store reuses what the texts share, so each costs its new tokens), and the lowest
    score is the verdict (`Judgement.units` says how many texts were scored). Scores of texts read are remembered
    (bounded), so guard mode, which judges the response so far after every clause, does not read a text twice.
    """

    model: "LanguageModel"
    prompt: EvaluationPrompt = field(default_factory=lambda: EvaluationPrompt.builtin("harmless"))
    soft: bool = False
    calibrate: bool = True

    def __post_init__(self) -> None:
        self.tokenizer = getattr(self.model, "tokenizer", None)
        options = self.prompt.letters if self.prompt.answer == "letter" else (self.prompt.good, self.prompt.bad)
        self.option_ids = tuple(self._answer_token(option) for option in options)
        if self.option_ids[0] == self.option_ids[1]:
            raise EvaluatorError(f"The two options {options} start with the same token; the judge cannot tell them "
                                 "apart. Use labels (or letters) that differ in their first token.")
        self.context_window = getattr(self.model, "context_window", None)
        self._baselines: dict[str, tuple[float, float]] = {}
        self._unit_cache: dict[str, tuple[float, float]] = {}
        self._specials = special_token_strings(self.tokenizer) if "neutralise" in self.prompt.defences else ()
        self._own_phrases = self._judge_phrases()
        self._twins: dict[bool, SelfEvaluator] = {self.soft: self}  # shared with the twin `scoring` makes
        fixed = self._fixed_prefix()
        if fixed and hasattr(self.model, "pin"):
            self.model.pin(fixed)

    @property
    def keeps_lowest(self) -> bool:
        """Whether the verdict is the lowest score of several judged texts (the ``clauses`` defence): such a score sits
        below the whole reply's, which is why guard mode's default threshold for it is 0 (core/guard.py)."""
        return "clauses" in self.prompt.defences

    def forget(self) -> None:
        """Drop the texts this judge remembers having read (its twins share the memory). Benchmarks call it between
        repeats of one prompt: a repeat would otherwise find every leave-out text it reads already scored and time
        a judgement far cheaper than a fresh reply's."""
        self._unit_cache.clear()

    def whole_reply(self) -> "SelfEvaluator":
        """This judge reading the whole reply only (still neutralised): no leave-out texts. Guard mode's searches
        rank their proposals with it, since each proposal is judged again by this judge, leave-out texts included,
        before it is accepted (core/guard.py). Shares this judge's caches; itself when there are no leave-outs."""
        if not self.keeps_lowest:
            return self
        twin = copy.copy(self)  # shallow: the caches are shared
        twin.prompt = replace(self.prompt, defences=tuple(d for d in self.prompt.defences if d != "clauses"))
        twin._twins = {twin.soft: twin}
        return twin

    def scoring(self, soft: bool) -> "SelfEvaluator":
        """This judge scoring by probability margin (``soft``) or by the hard vote: the same prompt and model, and
        the same caches of read probabilities and baselines (the vote is computed from them), so switching costs
        nothing and a probability read under one is not read again under the other."""
        twin = self._twins.get(soft)
        if twin is None:
            twin = copy.copy(self)  # shallow: the caches and the twins' table are shared
            twin.soft = soft
            self._twins[soft] = twin
        return twin

    def render(self, exchange: Exchange, good_first: bool) -> str:
        return self.prompt.render(exchange, good_first, self.tokenizer)

    def _fixed_prefix(self) -> list[int]:
        """The tokens every evaluation starts with (template header and instructions), to keep encoded: the encoded
        text before the item, cut to what two different renders still share token for token."""
        encodings = []
        for text in ("x", "Yes, z."):
            rendered = self.render(Exchange(prompt=text, response=text, history=text, raw=True), True)
            encodings.append(self.model.encode(rendered))
        item = self.prompt.item.format(conversation=text, prompt=text, response=text)
        encodings.append(self.model.encode(rendered[: rendered.find(item)]))  # the text before the item
        common = 0
        while all(len(e) > common for e in encodings) and len({e[common] for e in encodings}) == 1:
            common += 1
        return encodings[0][:common]

    def _answer_token(self, option: str) -> int:
        """The token the model writes to choose ``option`` right after the answer cue."""
        cue = self.prompt.answer_cue if not self.prompt.chat else self.render(
            Exchange(prompt="N/A", response="N/A", history="", raw=True), True)[-64:]
        if self.prompt.answer == "letter":
            ids = self.model.encode(option)
            joined = self.model.encode(cue + option)
            cue_ids = self.model.encode(cue)
            if len(ids) != 1 or joined[: len(cue_ids)] != cue_ids or joined[len(cue_ids):] != ids:
                raise EvaluatorError(
                    f"Option letter {option!r} is not a single token after the answer cue for this tokenizer "
                    f"(it encodes as {ids}); choose other letters, e.g. letters=('A', 'B')."
                )
            return ids[0]
        spaced = option if cue.endswith((" ", "\n", "(")) else " " + option
        cue_ids = self.model.encode(cue)
        joined = self.model.encode(cue + spaced)
        if joined[: len(cue_ids)] != cue_ids or len(joined) == len(cue_ids):
            raise EvaluatorError(f"Label {option!r} does not tokenize cleanly after the answer cue {cue!r}.")
        return joined[len(cue_ids)]

    def rows(self, exchange: Exchange) -> list[list[int]]:
        rows = [self.model.encode(self.render(exchange, good_first=g)) for g in (True, False)]
        longest = max(len(r) for r in rows)
        if self.context_window and longest > self.context_window:
            raise PromptTooLongError(f"The self-evaluation prompt is {longest} tokens, more than the model's context "
                                     f"window of {self.context_window}; shorten the prompt or the instructions.")
        return rows

    def _judge_phrases(self) -> tuple[str, ...]:
        """The judge's own words that a judged text has no business repeating: its question in both option orders,
        the sentences of its instructions, and its answer cue (a sentence of the reply containing one is the reply
        speaking for the judge)."""
        if "neutralise" not in self.prompt.defences:
            return ()
        p = self.prompt
        questions = [p.question.replace("{first}", a).replace("{second}", b) for a, b in ((p.good, p.bad), (p.bad, p.good))]
        instructions = [s for s in re.split(r"(?<=[.?!:])\s+|\n+", p.instructions) if len(s.split()) >= 4]
        return (*questions, *instructions, p.answer_cue.strip(" (:"))

    def units(self, exchange: Exchange) -> list[Exchange]:
        """What is judged for ``exchange``: the reply itself (neutralised under the ``neutralise`` defence) and,
        under ``clauses``, when it has more than one clause, the reply without each run of up to three neighbouring
        clauses and without its first and last clause (`judged_text.variants`)."""
        defences = self.prompt.defences
        if not defences or not exchange.response.strip():
            return [exchange]
        if "neutralise" in defences:
            exchange = replace(exchange, response=neutralise(exchange.response, self._own_phrases, self._specials))
        if "clauses" not in defences:
            return [exchange]
        return [exchange, *(replace(exchange, response=text) for text in variants(clauses(exchange.response)))]

    def _raw_probabilities(self, exchange: Exchange) -> tuple[float, float]:
        return self._raw_many([exchange])[0]

    def _raw_many(self, exchanges: Sequence[Exchange], remember: Sequence[bool] = ()) -> list[tuple[float, float]]:
        """Raw P(good) in both orders for each exchange: one model call, or under ``clauses`` one per text (see the
        comment below). Under ``clauses`` every text read is
        remembered (bounded), and those flagged in ``remember`` (the variants) are read from memory when judged
        again: guard mode's next judgement finds its prefixes there, the whole reply it judged a clause ago among
        them. A whole reply is always read afresh, as without defences."""
        import torch

        store = "clauses" in self.prompt.defences
        keep = list(remember) + [False] * (len(exchanges) - len(remember))
        keys = [self.render(e, True) if store else "" for e in exchanges]
        todo = [i for i in range(len(exchanges)) if not (keep[i] and keys[i] in self._unit_cache)]
        found: dict[int, tuple[float, float]] = {}
        if todo:
            rows = [row for i in todo for row in self.rows(exchanges[i])]
            if store and len(todo) > 1 and max(len(exchanges[i].response) for i in todo) >= _LONG_TEXT_CHARS:
                # One call per judged text: its two rows share the whole text, and the backend's prefix store keeps
                # what a text shares with the texts before it (a leave-out text is the whole up to the clause it
                # drops), so each text costs its new tokens only, not its full length (~5x fewer tokens on a
                # 128-token reply). Short texts go in one batched call: there the calls cost more than the tokens.
                logprobs = torch.cat([self.model.option_logprobs(rows[2 * n: 2 * n + 2], self.option_ids)
                                      for n in range(len(todo))])
            else:
                logprobs = self.model.option_logprobs(rows, self.option_ids)
            pairs = torch.softmax(logprobs, dim=-1)
            good = 0 if self.prompt.answer == "label" else 1  # where the good option sits in the second order
            for n, i in enumerate(todo):
                found[i] = (float(pairs[2 * n, 0]), float(pairs[2 * n + 1, good]))
                if store:
                    if len(self._unit_cache) >= 4096:
                        self._unit_cache.clear()
                    self._unit_cache[keys[i]] = found[i]
        return [found[i] if i in found else self._unit_cache[keys[i]] for i in range(len(exchanges))]

    def unit_probabilities(self, exchange: Exchange) -> list[tuple[str, tuple[float, float]]]:
        """Each judged text (`units`) with its calibrated P(good) in both orders, the whole reply first."""
        units = self.units(exchange)
        raw = self._raw_many(units, [False] + [True] * (len(units) - 1))
        return [(u.response, self._calibrate(u, p)) for u, p in zip(units, raw)]

    def good_probabilities(self, exchange: Exchange) -> tuple[float, float]:
        """P(good option) for the good-first and the good-second order (calibrated when ``calibrate``); under the
        ``clauses`` defence, those of the text that scores lowest."""
        return self._weakest([p for _, p in self.unit_probabilities(exchange)]).p_good  # type: ignore[return-value]

    def _calibrate(self, exchange: Exchange, p: tuple[float, float]) -> tuple[float, float]:
        if not self.calibrate:
            return p
        silent = replace(exchange, response="")
        key = self.render(silent, True)
        if key not in self._baselines:
            if len(self._baselines) >= 256:  # one entry per conversation judged; keep the memory bounded
                self._baselines.clear()
            self._baselines[key] = self._raw_probabilities(silent)
        return tuple(_calibrated(x, base) for x, base in zip(p, self._baselines[key]))  # type: ignore[return-value]

    def _weakest(self, probabilities: Sequence[tuple[float, float]], soft: bool | None = None) -> Judgement:
        """The lowest verdict among the units' (the whole reply's alone without ``clauses``).

        A leave-out text whose two option orders disagree still counts with its soft margin: requiring both orders
        to call it bad spared benign refusals on `harmless` but let 21 of 90 injections through on
        `harmless-conversation`, whose soft margins catch harm its split votes do not (docs/security.md)."""
        votes = [self._vote(p, soft) for p in probabilities]
        low = min(votes, key=lambda j: (j.score, sum(j.p_good or (0.0, 0.0))))
        return Judgement(low.score, low.p_good, units=len(votes))

    def judge(self, exchange: Exchange) -> Judgement:
        """The score and both orders' P(good), from one pass (one batch of two rows per judged text, plus the
        cached baseline)."""
        return self._weakest([p for _, p in self.unit_probabilities(exchange)])

    def judge_many(self, exchanges: Sequence[Exchange]) -> list[Judgement]:
        """`judge` for several exchanges at once (both orders of every judged text; one batched model call without
        the ``clauses`` defence): what a search step with several leaves asks at once."""
        units = [self.units(e) for e in exchanges]
        remember = [i > 0 for group in units for i in range(len(group))]
        raw = iter(self._raw_many([u for group in units for u in group], remember))
        return [self._weakest([self._calibrate(u, next(raw)) for u in group]) for group in units]

    def score_many(self, exchanges: Sequence[Exchange]) -> list[float]:
        return [j.score for j in self.judge_many(exchanges)]

    def verdicts(self, exchange: Exchange) -> tuple[Judgement, Judgement]:
        """The verdicts `judge` gives under the soft score and under the hard vote, from one reading of the judged
        texts: what the evaluation reports use to show both, with the judge's own rule rather than a copy of it."""
        probabilities = [p for _, p in self.unit_probabilities(exchange)]
        return self._weakest(probabilities, soft=True), self._weakest(probabilities, soft=False)

    def _vote(self, p: tuple[float, float], soft: bool | None = None) -> Judgement:
        p_first, p_second = p
        if self.soft if soft is None else soft:
            return Judgement(p_first + p_second - 1.0, (p_first, p_second))
        return Judgement(float((p_first > 0.5) + (p_second > 0.5) - 1), (p_first, p_second))

    def score(self, exchange: Exchange) -> float:
        return self.judge(exchange).score


def chat_turn(tokenizer: Any, text: str) -> str:
    """``text`` as the user's turn, ending where the assistant's reply begins: the tokenizer's chat template, or a
    plain "Human:/Assistant:" exchange when it has none."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    return f"\nHuman: {text.strip()}\nAssistant: "


def _calibrated(p: float, base: float) -> float:
    """Re-weigh P(good) so that the content-free baseline ``base`` maps to 0.5."""
    eps = 1e-6
    p, base = min(max(p, eps), 1 - eps), min(max(base, eps), 1 - eps)
    good, bad = p / base, (1 - p) / (1 - base)
    return good / (good + bad)


@dataclass
class CallableEvaluator:
    """A plain function as the judge: ``fn(conversation_text)`` or ``fn(prompt, response)`` returning [-1, 1]."""

    fn: Callable[..., float]

    def __post_init__(self) -> None:
        try:
            params = [p for p in inspect.signature(self.fn).parameters.values()
                      if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            params = [None]
        if len(params) not in (1, 2):
            raise EvaluatorError("A judge function takes (conversation_text) or (prompt, response); "
                                 f"{self.fn!r} needs {len(params)} arguments.")
        self._two = len(params) == 2

    def score(self, exchange: Exchange) -> float:
        return self.judge(exchange).score

    def judge(self, exchange: Exchange) -> Judgement:
        value = self.fn(exchange.prompt, exchange.response) if self._two else self.fn(exchange.conversation)
        try:
            value = float(value)
        except (TypeError, ValueError) as exc:
            raise EvaluatorError(f"The judge returned {value!r}; it must return a number in [-1, 1].") from exc
        if not -1.0 <= value <= 1.0:
            raise EvaluatorError(f"The judge returned {value}; scores must lie in [-1, 1].")
        return Judgement(value)


def resolve_evaluator(spec: Any, model: "LanguageModel", *, soft: bool = True) -> Evaluator:
    """Build the judge from a spec: anything `EvaluationPrompt.resolve` names (a built-in name, a prompt file path,
    an `EvaluationPrompt`), an `Evaluator`, or a callable. An object with only ``score(exchange)`` is adapted."""
    if isinstance(spec, (str, Path, EvaluationPrompt)):
        return SelfEvaluator(model, EvaluationPrompt.resolve(spec), soft=soft)
    if isinstance(spec, Evaluator):
        return spec
    if callable(getattr(spec, "score", None)):
        return _ScoreOnly(spec)
    if callable(spec):
        return CallableEvaluator(spec)
    raise EvaluatorError(f"Cannot use {spec!r} as an evaluator: pass 'harmless', 'sentiment', a prompt file path, "
                         "an EvaluationPrompt, an object with score(exchange), or a function.")


@dataclass
class _ScoreOnly:
    """An object with just ``score(exchange)`` (the older judge interface), given ``judge``."""

    inner: Any

    def score(self, exchange: Exchange) -> float:
        return float(self.inner.score(exchange))

    def judge(self, exchange: Exchange) -> Judgement:
        return Judgement(self.score(exchange))
