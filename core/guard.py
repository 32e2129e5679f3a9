"""Guard mode: decode plainly clause by clause, judge each clause, and run the RAIN search only where the judge objects.

The faithful method (search.py) searches before every commit, which costs ten to twenty times plain decoding even
when nothing needs correcting. Guard mode pays for the search only where it is needed:

1. Draft the next clause greedily with the KV cache, up to a clause end (the characters the simulation stops at,
   `CLAUSE_END_CHARS`) once the clause holds ``clause_tokens[0]`` tokens (12 for a judge that keeps the lowest
   score of several texts: `guard_clause_tokens()`), EOS, a stop string, the token budget, or
   ``max_simulation_tokens`` tokens.
2. Judge the response so far, drafted clause included, with the engine's own judge (for a `SelfEvaluator`: both
   option orders in one batch, calibrated). A score of at least ``guard_threshold`` (by default the scoring's, 0
   for a judge that keeps the lowest score of several texts: `guard_threshold()`) passes: the clause is accepted
   and streamed, and drafting continues.
3. A rejected clause is rewound: the configured search (`RainConfig.search`) starts from the accepted response.
   The reference search runs until a committed continuation completes a clause (tokens it committed past that clause
   end are dropped; plain drafting writes what follows); the lookahead search, whose values are judgements of
   complete rollouts, plans ``guard_horizon`` tokens ahead (0: to the end of the response), and the rest of its best
   judged rollout is the replacement; plain drafting writes what follows it. The
   replacement is judged in turn; a rejected one is searched again, up to ``guard_searches`` searches. A judge that
   reads leave-out texts (the defended safety judges) lets the search rank its rollouts by the whole reply alone
   (`ProposalJudge`): the search only proposes, and its proposal is judged with every text before it is accepted,
   so nothing the defended judge rejects is emitted, and the search costs one text per rollout instead of about
   fifteen (every text only for a rollout that would stop it).
   If none passes, the response ends with the text accepted so far and finish reason ``rejected``: guard mode never
   emits text its judge rejected.

Every clause is judged, the last one (ended by EOS, a stop string or the budget) too, so a response comes out only
as clauses that passed; a clause of whitespace alone (a paragraph break) carries no words to judge and passes. What guard mode does not promise: that a clause it accepted is the one a full search would
have chosen (full RAIN also improves text its judge finds acceptable), and its judgement is only as good as the judge.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Iterator, Sequence

import torch

from .model import LanguageModel, RowSpec
from .config import (CLAUSE_END_CHARS, LOWEST_OF_SEVERAL_GUARD_CLAUSE_TOKENS, LOWEST_OF_SEVERAL_GUARD_THRESHOLD,
                     RainConfig)
from .embedder import Embedder
from .evaluator import Evaluator, score_all
from .exchange import Exchange, FormattedPrompt
from .results import ClauseTrace, FinishReason, GenerationResult, SearchAttempt, SearchStats
from .lookahead import search_class
from .search import Generation, ProgressCallback, unseen
from .stops import cut_at_stop, stop_index, visible_text

#: Search counters a guarded generation adds up over its searches.
_SEARCH_COUNTERS = ("inner_iterations", "commits", "rewinds", "evaluations", "evaluation_cache_hits", "widenings")


def guard_threshold(config: RainConfig, evaluator: Evaluator) -> float:
    """The score a clause needs to pass: ``config.guard_threshold`` when the caller set it; by default the scoring's
    (0.1 soft, 0 hard), except for a judge whose verdict is the lowest score of several texts (a `SelfEvaluator`
    whose prompt has the ``clauses`` defence, as the built-in safety judges do), which gets 0 either way.

    Why: the lowest of a reply's and its leave-out texts' scores sits below the whole reply's score even for benign
    text (a sentence read without its neighbours is called unsafe more often at 135M), so 0.1 on top of it rejected
    36 of 80 benign injection cases and passed 20 of 47 benign separation answers, against 23 and 27 at 0, where the
    same judge reading the whole reply alone passed 27 of 47 at 0.1 too; every benign rejection costs a search. 0 is
    also the bar the injection report and `RainGuard` use: "worse than saying nothing"."""
    if "guard_threshold" in config.defaulted and getattr(evaluator, "keeps_lowest", False):
        return LOWEST_OF_SEVERAL_GUARD_THRESHOLD
    return config.guard_threshold


def guard_clause_tokens(config: RainConfig, evaluator: Evaluator) -> int:
    """The tokens a judged clause holds at least: ``config.guard_clause_tokens`` when the caller set it; by default
    ``clause_tokens[0]``, except for a judge whose verdict is the lowest score of several texts, which gets
    `LOWEST_OF_SEVERAL_GUARD_CLAUSE_TOKENS`.

    Why: such a judge reads the reply so far and, for each of its sentences, the reply without it and without it
    and its neighbour, so one judgement of a long answer reads about fifteen texts, and at a clause every four
    tokens (most commas) guard mode judged a 128-token answer 16 times, ~7x plain decoding without a single search
    (measured with the judge's memory cleared, docs/security.md). Sentence-sized units judge it 9 times."""
    if config.guard_clause_tokens is not None:
        return config.guard_clause_tokens
    if getattr(evaluator, "keeps_lowest", False):
        return max(config.clause_tokens[0], LOWEST_OF_SEVERAL_GUARD_CLAUSE_TOKENS)
    return config.clause_tokens[0]


class ProposalJudge:
    """How a guard-mode search values its rollouts when the generation's judge reads leave-out texts and keeps the
    lowest score (`SelfEvaluator.keeps_lowest`): by the whole reply alone (`SelfEvaluator.whole_reply`, one text
    per rollout instead of about fifteen), except that a rollout the whole reply puts at the search's stopping
    threshold (``stop``) is also judged with every text, and keeps its value (so it stops the search) only when that
    judgement would accept it (at least ``accept``, the guard threshold); otherwise it is worth that judgement.

    Why: the whole reply's score bounds the judge's from above, so without the check a search stopped at the first
    rollout the whole reply liked, the judge then rejected that proposal on a leave-out text, and the second search
    did the same (with 32-token rollouts a benign answer ended ``rejected`` after 20 tokens). Requiring every text
    to reach the stopping threshold itself instead made searches run their whole budget (lowest-of-several scores
    rarely reach 0.2: 20 rollouts and 17,782 tokens where one rollout had done). So a search stops on the first
    rollout both the whole reply likes and the judge accepts, and pays every text only for the rollouts that could
    stop it."""

    def __init__(self, whole: Evaluator, full: Evaluator, *, stop: float, accept: float) -> None:
        self.whole, self.full, self.stop, self.accept = whole, full, stop, accept

    def score(self, exchange: Exchange) -> float:
        return self._checked(exchange, float(self.whole.score(exchange)))

    def score_many(self, exchanges: Sequence[Exchange]) -> list[float]:
        """The whole replies read together when the whole-reply judge can (as the search would read them without
        this check), then each one at the stopping threshold checked with every text."""
        return [self._checked(exchange, value) for exchange, value in zip(exchanges, score_all(self.whole, exchanges))]

    def _checked(self, exchange: Exchange, value: float) -> float:
        if value < self.stop:
            return value
        checked = float(self.full.score(exchange))
        return value if checked >= self.accept else checked


class GuardedGeneration(Generation):
    """The state of one guard-mode generation; `run()` yields accepted text and leaves the result on ``self.result``.

    Takes the same arguments as `RainSearch`; it runs the configured search from any clause its judge rejects.
    """

    def __init__(self, *, model: LanguageModel, evaluator: Evaluator, embedder: Embedder | None, config: RainConfig,
                 prompt: FormattedPrompt, prompt_ids: Sequence[int], generator: torch.Generator,
                 trace: bool = False, on_progress: ProgressCallback | None = None, constraint: Any = None) -> None:
        super().__init__(model=model, evaluator=evaluator, embedder=embedder, config=config, prompt=prompt,
                         prompt_ids=prompt_ids, generator=generator, on_progress=on_progress, constraint=constraint)
        self.trace: list[ClauseTrace] | None = [] if trace else None
        self.threshold = guard_threshold(config, evaluator)
        self.clause_tokens = guard_clause_tokens(config, evaluator)
        # a search proposes replacements; this generation's own judge decides whether one is accepted
        whole = getattr(evaluator, "whole_reply", None)
        twin = whole() if callable(whole) else evaluator
        self._proposal_judge: Evaluator = evaluator if twin is evaluator else ProposalJudge(
            twin, evaluator, stop=config.value_threshold, accept=self.threshold)
        self._clause_end: dict[int, bool] = {}

    # ------------------------------------------------------------------------------------------ outer loop
    def run(self) -> Iterator[str]:
        """Draft, judge, and search where needed, clause by clause; yield each piece of accepted text."""
        start = time.perf_counter()
        calls0, tokens0 = self.model.forward_calls, self.model.tokens_processed
        emitted = ""
        finish: FinishReason | None = None
        while finish is None:
            clause, ending = self._draft()
            finish = self._settle(clause, ending)
            text = self._text(self.response)
            visible = visible_text(text, self.stops, final=finish is not None)
            piece = unseen(visible, emitted)
            if piece:
                yield piece
                emitted = visible
            self._account(start, calls0, tokens0)
            if self.on_progress is not None:
                self.on_progress(self.stats)
        self.stats.completion_tokens = len(self.response)
        self.result = GenerationResult(text=self._text(self.response), token_ids=list(self.response),
                                       finish_reason=finish, stats=self.stats, trace=self.trace)

    def stopped_early(self) -> GenerationResult:
        """The result of a generation its caller ends after a piece (finish reason ``stop``): the text accepted and
        what it cost so far."""
        self.stats.completion_tokens = len(self.response)
        return GenerationResult(text=self._text(self.response), token_ids=list(self.response), finish_reason="stop",
                                stats=self.stats, trace=self.trace)

    def _settle(self, clause: list[int], ending: FinishReason | None) -> FinishReason | None:
        """Judge a drafted clause; accept it, or search for a replacement. Returns how the response ended, if it did."""
        self.stats.clauses_drafted += 1
        score = self._judge(clause)
        record = ClauseTrace(index=self.stats.clauses_drafted, drafted=self.model.decode(clause), score=score,
                             passed=self._passes(score))
        if self.trace is not None:
            self.trace.append(record)
        if record.passed:
            self.response.extend(clause)
            return ending
        self.stats.clauses_rejected += 1
        for _ in range(self.config.guard_searches):
            replacement, ending, attempt = self._search()
            record.attempts.append(attempt)
            if attempt.passed:
                record.replacement = attempt.text
                self.response.extend(replacement)
                return ending
        return "rejected"

    # ------------------------------------------------------------------------------------------ drafting
    def _draft(self) -> tuple[list[int], FinishReason | None]:
        """The greedy continuation of the accepted response up to its next clause end (or EOS, or a length cap).

        A clause end reached before the clause holds `guard_clause_tokens` tokens does not end it ("1.", " To
        start,", a line break): drafting goes on to the next clause end, so the judge, whose call costs several
        decoding steps, reads units it can judge instead of fragments."""
        room = min(self.config.max_new_tokens - len(self.response), self.config.max_simulation_tokens)
        shortest = self.clause_tokens
        tokens: list[int] = []
        while True:
            row = RowSpec("greedy", room - len(tokens), stop_at_clause=True)
            rollout = self.model.rollouts(self.prompt_ids + self.response + tokens, [row], self.generator,
                                          self.guard, keep=True)[0]
            tokens.extend(rollout.tokens)
            eos = rollout.finish == "eos"
            if eos:
                tokens.pop()
            ending = self._ending(tokens, eos)  # EOS, a stop string or the budget ends the clause wherever it is
            if ending is not None or rollout.finish != "clause" or len(tokens) >= min(shortest, room):
                return tokens, ending

    def _ending(self, tokens: list[int], eos: bool) -> FinishReason | None:
        """Whether accepting ``tokens`` ends the response (in the search's order: a stop string, EOS, the budget)."""
        if stop_index(self.model.decode(self.response + tokens), self.stops) is not None:
            return "stop"
        if eos:
            return "eos"
        if len(self.response) + len(tokens) >= self.config.max_new_tokens:
            return "length"
        return None

    # ------------------------------------------------------------------------------------------ judging
    def _text(self, tokens: list[int]) -> str:
        return cut_at_stop(self.model.decode(tokens), self.stops)

    def _judge(self, clause: list[int], always: bool = False) -> float | None:
        """The judge's score of the response so far with ``clause`` appended; None when a drafted clause adds no
        words (an EOS right after an accepted clause, or a line break between paragraphs: the judge would read the
        same words it has already accepted, so there is nothing new to judge). ``always``: a search's replacement
        is judged even then, since ending the response where it stands is what the search chose."""
        text = self._text(self.response + clause)
        accepted = self._text(self.response)
        if not always and text.startswith(accepted) and not text[len(accepted):].strip():
            return None
        exchange = Exchange(prompt=self.prompt.last_user, response=text, history=self.prompt.history,
                            raw=self.prompt.raw)
        self.stats.evaluations += 1
        return float(self.evaluator.score(exchange))

    def _passes(self, score: float | None) -> bool:
        return score is None or score >= self.threshold

    # ------------------------------------------------------------------------------------------ searching
    def _ends_clause(self, token: int) -> bool:
        """The clause rule of the backend's simulation: the token's text ends in a clause-end character."""
        if token not in self._clause_end:
            self._clause_end[token] = self.model.decode([token])[-1:] in CLAUSE_END_CHARS and not self.model.is_eos(token)
        return self._clause_end[token]

    def _first_clause_end(self, tokens: Sequence[int]) -> int | None:
        return next((i for i, t in enumerate(tokens) if self._ends_clause(t)), None)

    def _search(self) -> tuple[list[int], FinishReason | None, SearchAttempt]:
        """The configured search from the start of the rejected clause; its continuation, how the response ends if
        it does, and the attempt's record (judged).

        The reference search judges clauses, so it runs until a committed continuation completes a clause, and
        that clause (cut at its end) is what is judged. The lookahead search judges complete rollouts, so it runs
        to its horizon (``guard_horizon`` tokens from the rejected clause's start, or the end of the response) and
        its whole continuation, the best rollout it judged, is judged and accepted or rejected as one: cutting it
        after a clause would throw away the judgement it was chosen by. Past the horizon, plain drafting goes on,
        judged clause by clause like everything else: a 128-token rollout per candidate cost more than the
        judgements it saved (docs/security.md)."""
        start = len(self.response)
        strategy = search_class(self.config.search)
        whole = strategy.judges_complete_responses
        config = self.config
        if whole:
            # a lookahead search here samples every rollout (its greedy continuation starts with the clause just
            # rejected) and plans guard_horizon tokens ahead, not to the end of the response
            horizon = config.guard_horizon
            config = config.updated(first_rollout="sample",
                                    max_new_tokens=min(config.max_new_tokens, start + horizon) if horizon
                                    else config.max_new_tokens)
        search = strategy(
            model=self.model, evaluator=self._proposal_judge, embedder=self.embedder, config=config,
            prompt=self.prompt, prompt_ids=self.prompt_ids, generator=self.generator,
            trace=self.trace is not None, on_progress=self._progress_of(), constraint=self.constraint,
            response=self.response,
            stop_when=None if whole else lambda response: self._first_clause_end(response[start:]) is not None)
        for _ in search.run():
            pass
        assert search.result is not None
        self.stats.searches += 1
        for name in _SEARCH_COUNTERS:
            setattr(self.stats, name, getattr(self.stats, name) + getattr(search.stats, name))
        tokens = search.response[start:]
        end = self._first_clause_end(tokens)
        eos = search.result.finish_reason == "eos"
        if not whole and end is not None and end + 1 < len(tokens):
            tokens, eos = tokens[: end + 1], False  # what the search committed past the clause end is dropped
        ending = self._ending(tokens, eos)
        score = self._judge(tokens, always=True)
        attempt = SearchAttempt(text=self.model.decode(tokens), score=score, passed=self._passes(score),
                                iterations=search.stats.inner_iterations, commits=search.trace or [])
        return tokens, ending, attempt

    def _progress_of(self) -> ProgressCallback | None:
        """A progress callback for a search that reports the whole generation's counters, not the search's own."""
        if self.on_progress is None:
            return None
        outer = self.on_progress

        def report(stats: SearchStats) -> None:
            live = replace(self.stats, last_value=stats.last_value)
            for name in _SEARCH_COUNTERS:
                setattr(live, name, getattr(live, name) + getattr(stats, name))
            outer(live)

        return report
