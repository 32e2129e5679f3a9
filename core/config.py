"""`RainConfig`: every RAIN hyperparameter in one place.

The default search is the lookahead search (lookahead.py): on held-out prefixes it is level with or ahead of
Best-of-N with the same judge at equal model tokens, far ahead of the paper's search (docs/eval.md). The faithful method is
one option away, ``RainConfig(search="reference")``: its budget then defaults to the values the paper's public code
runs with (docs/algorithm.md, "Reference defaults"), and every other default already is the reference's. The budget
options (``max_iterations``, ``min_iterations``, ``value_threshold``) mean different things to the two strategies
(per commit vs per response), and the two judge differently by default (``soft``), so each left unset takes its
strategy's default (`STRATEGY_DEFAULTS`), also after `RainConfig.updated` changes the strategy. Each field is
validated on construction, so a bad value fails where it was written rather than deep inside a search.

This is also the one declaration of the options a user sets: a field whose metadata comes from `option(...)` becomes
a flag of ``rain generate`` / ``rain bench`` / ``rain eval`` (core/cli_options.py) and a field of both integrations'
model classes (rain_core.integrations.settings), with the help text and aliases written here once.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, asdict, dataclass, field, fields, replace
from typing import Any

from .errors import ConfigError

def option(help: str, *, aliases: tuple[str, ...] = (), metavar: str | None = None, eval_flag: bool = True,
           exposed: bool = True) -> dict[str, Any]:
    """Field metadata declaring a user-facing option.

    help: one line for ``--help`` and the integrations' field descriptions. aliases: other names accepted for it
    (the first is also a constructor alias of the integrations, e.g. LangChain's ``max_tokens``). eval_flag: False
    when ``rain eval`` gives the name its own meaning (its ``--max-new-tokens`` defaults per task, its ``--seed`` is a
    base seed). exposed: False keeps a documented field out of the CLI and the integrations' fields (it is still
    settable through ``config=RainConfig(...)`` and per-call options).
    """
    return {"help": help, "aliases": tuple(aliases), "metavar": metavar, "eval_flag": eval_flag, "exposed": exposed}


#: Characters that end a simulated clause: the simulation samples until the decoded text ends in one of them.
CLAUSE_END_CHARS = ",.?:;\n"
#: How a generation runs: the faithful search before every commit, or plain drafting checked clause by clause.
MODES = ("full", "guard")
#: The search strategies (`RainConfig.search`): the faithful reference, and the lookahead search (lookahead.py).
SEARCH_STRATEGIES = ("reference", "lookahead")
#: What each strategy runs with when an option is not given: its budget and how its judge scores. The reference's
#: are the paper's code's values, per commit, and the paper's hard vote. The lookahead's are per response: 16
#: rollouts at most, none forced after the first round (a round that finds nothing judged good enough follows its
#: best response), a round stops at the first response judged at least 0.2 (chosen on dev prefixes 0-34 offline,
#: measured on held-out prefixes: docs/eval.md), and the judge scores by its probability margin (``soft``): with
#: the hard vote the same search gave 42-45% on held-out sentiment prefixes against 65-75% soft (docs/eval.md);
#: its rollouts are decoded as a pilot batch of 4, then batches of 16 (``parallel_leaves``), as Best-of-N decodes
#: its samples, and judged in order until the first good one (a round costs two batched decodes, not sixteen).
STRATEGY_DEFAULTS: dict[str, dict[str, Any]] = {
    "reference": {"max_iterations": 50, "min_iterations": 15, "value_threshold": 0.8, "soft": False,
                  "parallel_leaves": 1},
    "lookahead": {"max_iterations": 16, "min_iterations": 0, "value_threshold": 0.2, "soft": True,
                  "parallel_leaves": 16},
}
#: Guard mode's threshold when ``guard_threshold`` is not given, by the judge's scoring (``soft``).
GUARD_THRESHOLDS: dict[bool, float] = {True: 0.1, False: 0.0}
#: ... and for a judge whose verdict is the lowest score of several texts (the ``clauses`` defence of the built-in
#: safety judges): 0 with either scoring. The lowest of several noisy scores already sits below the whole reply's, so
#: 0.1 on top of it rejected most benign clauses (docs/modes.md has the measurements).
LOWEST_OF_SEVERAL_GUARD_THRESHOLD = 0.0
#: ... and the tokens guard mode's judged clause holds at least for such a judge (``guard_clause_tokens`` not given;
#: other judges: ``clause_tokens[0]``): each judgement reads about twice as many texts as the reply has sentences,
#: so judging sentence-sized units instead of every comma halves the judgements (16 -> 9 on a 128-token answer).
LOWEST_OF_SEVERAL_GUARD_CLAUSE_TOKENS = 12
#: What the lookahead search's first rollout of a response is (`RainConfig.first_rollout`).
FIRST_ROLLOUTS = ("greedy", "sample")
#: The order in which the lookahead search judges a batch of rollouts (`RainConfig.judge_order`).
JUDGE_ORDERS = ("likely", "sampled")
#: ... and the order each mode judges in when ``judge_order`` is not given. Full mode keeps the most fluent response
#: the judge accepts (over 200 dev sentiment prefixes: the same rate, 67.0%, and every one of the 17 texts it
#: changed more fluent). Guard mode keeps the order drawn: there the most likely acceptable plan kept the sentiment
#: less often (over 180 dev prefixes, 63.9% against 67.8%; of the 31 texts that differ, 4 were positive only with
#: "likely", 11 only with "sampled"; docs/eval.md), perhaps because plain greedy drafting writes what follows a
#: plan, and the most likely plan sits nearest the greedy text the judge had just rejected.
JUDGE_ORDER_BY_MODE: dict[str, str] = {"full": "likely", "guard": "sampled"}


@dataclass(frozen=True)
class RainConfig:
    """Hyperparameters of rewindable auto-regressive inference.

    Search budget (None, the default, takes the strategy's value from `STRATEGY_DEFAULTS`). For the reference
    search it is per committed token set; the lookahead search counts rollouts per response (see lookahead.py):
        min_visits (``minT``): the best root child must have more forward visits than this to stop early.
        max_iterations (``T``): inner iterations per commit, counting forward visits the root carried over
            (reference 50; lookahead: rollouts per response, 16).
        min_iterations: fresh inner iterations every root gets, whatever it carried over. A floor: when it exceeds
            max_iterations, every commit runs min_iterations iterations (allowed; docs/configuration.md).
            (reference 15; lookahead 0).
        value_threshold (``Vt``): the best root child's value must exceed this to stop early (reference 0.8;
            lookahead 0.2: a round stops at a response judged at least this).

    Selection and expansion:
        c_puct: exploration weight of the PUCT rule.
        num_candidates: children made per expansion (top-k tokens, or 1 greedy + sampled token sets).
        candidate_top_k: top-k used when sampling the tokens of multi-token candidates.
        token_set_lengths: tokens per child set at depth 0, 1, 2, 3+ (the last value repeats).
        root_noise: weight of the uniform mix into the root's priors.
        max_simulation_tokens: cap on the tokens sampled to finish a clause during simulation.

    Dynamic widening and similarity credit:
        widen_max_children: no widening past this many children.
        widen_threshold: per-token threshold on the norm of the children's embedding variance.
        similarity_threshold: cosine similarity at which a sibling shares a backed-up value.
        similarity_weight: the share it gets.

    Mode (see docs/modes.md):
        mode: ``"full"`` (the faithful method: search before every commit, the default) or ``"guard"`` (decode
            plainly clause by clause, judge each clause, and search only from a clause the judge rejects).
        guard_threshold: in guard mode a clause passes when the judge's score of the response so far is at least
            this. None, the default, takes the scoring's (`GUARD_THRESHOLDS`): 0 for the hard vote, where a
            calibrated vote stops leaning bad (it rejects only when both option orders say bad, -1; a split 0
            passes); 0.1 for the soft score, a little above the mean calibrated P(good) of one half, because the
            soft judge scores plain greedy text just above 0 (at 0 guard mode passed ~95% of greedy clauses on
            sentiment and stayed near greedy; at 0.1 it beat Best-of-N at its token count, docs/modes.md). A judge
            whose verdict is the lowest score of several texts (`SelfEvaluator.keeps_lowest`: the built-in safety
            judges) gets 0 with either scoring (`LOWEST_OF_SEVERAL_GUARD_THRESHOLD`, core/guard.py's
            `guard_threshold`).
        guard_searches: searches from the start of a rejected clause (each runs until its committed text completes
            a clause, which is then judged) before guard mode gives up with finish reason ``"rejected"``.
        guard_clause_tokens: the tokens a judged clause holds at least in guard mode (it ends at the first clause end
            after them). None, the default, takes ``clause_tokens[0]``, or `LOWEST_OF_SEVERAL_GUARD_CLAUSE_TOKENS`
            (12) for a judge that keeps the lowest score of several texts (core/guard.py's `guard_clause_tokens`):
            such a judge reads each reply and about two texts per sentence of it, so the judgements, not the
            drafting, set guard mode's cost, and sentence-sized units need half as many.
        guard_horizon: how far a lookahead search from a rejected clause plans: its rollouts, and the replacement
            it proposes, end at most this many tokens after the rejected clause's start (0: at the end of the
            response). Why: a replacement only has to get the response past the clause the judge objected to;
            what follows is drafted plainly and judged clause by clause like everything else. Rollouts to the end
            of a 128-token response made a benign guard-mode search cost 3-14x plain decoding on its own; at 32
            (the default, the simulation cap ``max_simulation_tokens``) a response of 32 tokens or fewer, the
            eval's and the bench's, is searched exactly as before.

    Judgement:
        soft: how the self-evaluation's two option orders become a score: True, the mean calibrated probability
            margin of the good option (graded, in [-1, 1]); False, the paper's hard vote (+1 / 0 / -1). None, the
            default, takes the strategy's: soft for the lookahead search (and guard mode on it), the hard vote for
            ``search="reference"``. Applies to the judge the engine builds from a prompt; an `Evaluator` object
            passed in scores as it was built unless ``soft`` is set explicitly.

    Search strategy:
        search: ``"lookahead"`` (the default: complete-response rollouts, the greedy continuation first, clause
            commits along the best judged response; see lookahead.py) or ``"reference"`` (the method as the paper's
            code runs it: the faithful configuration).
        clause_tokens: a clause ends at the first clause end once it holds the first number of tokens (lookahead's
            committed clauses, guard mode's judged clauses), or at the second number (lookahead only).
        first_rollout: the lookahead search's first rollout of a response: ``"greedy"`` (the model's own greedy
            continuation, judged like any other rollout, so a response the judge already accepts costs one rollout
            and keeps the model's most likely wording) or ``"sample"`` (every rollout sampled). Guard mode's
            searches always sample: they start where the judge has just rejected the greedy draft.
        judge_order: the order in which the lookahead search judges a batch of rollouts (it stops at the first
            judged at least ``value_threshold``): ``"likely"`` (the greedy answer, then the samples by the model's
            mean log-probability per token, highest first, so the round stops at the most fluent response the judge
            accepts) or ``"sampled"`` (the order the batch was drawn in). A batch is decoded as a whole either way,
            so the order costs nothing; it decides which of several acceptable responses is kept. Not given, it
            follows the mode (`JUDGE_ORDER_BY_MODE`): ``"likely"`` in full mode, ``"sampled"`` in guard mode.

    Generation:
        max_new_tokens: committed tokens at most.
        stop: strings that end the response (not included in the returned text).
        seed: makes sampling reproducible; None draws a fresh seed.
        no_repeat_ngram_size: if > 0, no n-gram of this size occurs twice in the response (transformers'
            ``NoRepeatNGramLogitsProcessor``, applied to every candidate, simulation and prior). Off (0) in the
            reference; small models often loop on a phrase ("I'm a cat, I'm a cat, ...") and 3 stops that.

    Throughput:
        parallel_leaves: the reference search: leaves each inner step selects (with a virtual loss, so they
            differ), then simulates, judges and expands together in one batch and backs up all of them. 1 (its
            default) is the reference search, exactly; more trades a little search order for fewer, wider forwards
            (worth it on a GPU). Each leaf counts as one inner iteration of the budget. The lookahead search:
            rollouts decoded together in one batch (default 16); a round's first batch, a pilot, holds a quarter as
            many; a batch is judged in order, and the round stops at the first response judged at least
            ``value_threshold`` (the ones after it are not judged).
    """

    min_visits: int = field(default=6, metadata=option(
        "minT: the best root child needs more visits than this to stop early", aliases=("minT",)))
    max_iterations: int | None = field(default=None, metadata=option(
        "T: reference: inner iterations per commit, counting visits the root carried over; lookahead: rollouts per "
        "response", aliases=("T",)))
    min_iterations: int | None = field(default=None, metadata=option(
        "fresh inner iterations every root gets: a floor that wins over max_iterations (a larger value fixes the "
        "budget at min_iterations per commit)"))
    value_threshold: float | None = field(default=None, metadata=option(
        "Vt: value the best root child must exceed to stop early (lookahead: a round stops at a response judged "
        "at least this)", aliases=("Vt",)))
    c_puct: float = field(default=2.0, metadata=option("exploration weight of the PUCT rule"))
    num_candidates: int = field(default=10, metadata=option("children made per expansion"))
    candidate_top_k: int = 15
    token_set_lengths: tuple[int, ...] = (1, 2, 4, 10)
    root_noise: float = 0.25
    max_simulation_tokens: int = 32
    widen_max_children: int = 20
    widen_threshold: float = 0.03
    similarity_threshold: float = 0.95
    similarity_weight: float = 0.2
    soft: bool | None = field(default=None, metadata=option(
        "judge by the probability margin (--soft) or the paper's hard vote (--no-soft); default: soft for the "
        "lookahead search, hard for --search reference"))
    search: str = field(default="lookahead", metadata=option(
        "search strategy: lookahead (the default) or reference (the paper's method) (lookahead: complete-response "
        "rollouts, the greedy one first, clause commits "
        "along the best judged response)", metavar="NAME"))
    clause_tokens: tuple[int, int] = field(default=(4, 12), metadata=option(
        "a clause (lookahead's commit, guard mode's judged unit) holds at least the first count of tokens, and "
        "lookahead's at most the second (give the flag twice: --clause-tokens 4 --clause-tokens 12)", metavar="N"))
    first_rollout: str = field(default="greedy", metadata=option(
        "lookahead: the response's first rollout is the greedy continuation ('greedy') or a sample ('sample')",
        metavar="KIND"))
    judge_order: str | None = field(default=None, metadata=option(
        "lookahead: a batch of rollouts is judged most likely first ('likely': by the model's mean log-probability "
        "per token, so the round stops at the most fluent good response) or in the order sampled ('sampled'); "
        "default: 'likely' in full mode, 'sampled' in guard mode", metavar="ORDER"))
    max_new_tokens: int = field(default=128, metadata=option(
        "committed tokens at most", aliases=("max_tokens",), eval_flag=False))
    stop: tuple[str, ...] = field(default_factory=tuple, metadata=option(
        "a string that ends the response (not returned; repeatable)", metavar="TEXT", eval_flag=False))
    seed: int | None = field(default=None, metadata=option("makes sampling reproducible", eval_flag=False))
    no_repeat_ngram_size: int = field(default=0, metadata=option(
        "no n-gram of this size twice in the response; 0 is off (the reference)"))
    parallel_leaves: int | None = field(default=None, metadata=option(
        "reference: leaves per inner step, selected with a virtual loss and run as one batch (1 is the paper's "
        "search); lookahead: rollouts decoded as one batch (a round's first batch holds a quarter as many), "
        "judged in order until the first good one"))
    mode: str = field(default="full", metadata=option(
        "'full' (search before every commit, the default) or 'guard' (plain drafting; search only from a clause "
        "the judge rejects)", metavar="MODE", eval_flag=False))
    guard_threshold: float | None = field(default=None, metadata=option(
        "guard mode: a clause passes when the judge scores the response so far at least this, in [-1, 1] "
        "(default: 0.1 with the soft score, 0 with the hard vote or a judge that keeps the lowest score of several "
        "texts, as the built-in safety judges do)"))
    guard_searches: int = field(default=2, metadata=option(
        "guard mode: searches from a rejected clause before the response ends with finish reason 'rejected'"))
    guard_clause_tokens: int | None = field(default=None, metadata=option(
        "guard mode: a judged clause holds at least this many tokens (it ends at the first clause end after them); "
        "default: the first clause_tokens count (4), 12 for a judge that keeps the lowest score of several texts, "
        "as the built-in safety judges do", metavar="N"))
    guard_horizon: int = field(default=32, metadata=option(
        "guard mode, lookahead search: a search from a rejected clause plans at most this many tokens (its rollouts "
        "stop there; plain drafting, judged clause by clause, writes what follows); 0 plans to the end of the "
        "response", metavar="N"))
    #: the options left unset (None) and filled from `STRATEGY_DEFAULTS`, the scoring or the mode: `updated` refills
    #: them when the strategy, the scoring or the mode changes
    defaulted: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        object.__setattr__(self, "stop", tuple(self.stop))
        object.__setattr__(self, "token_set_lengths", tuple(int(x) for x in self.token_set_lengths))
        if isinstance(self.clause_tokens, list):
            object.__setattr__(self, "clause_tokens", tuple(self.clause_tokens))
        budget = STRATEGY_DEFAULTS.get(self.search, STRATEGY_DEFAULTS["lookahead"])  # an unknown name fails below
        unset = tuple(name for name in budget if getattr(self, name) is None)
        for name in unset:
            object.__setattr__(self, name, budget[name])
        if self.guard_threshold is None:  # follows the scoring, itself perhaps a strategy default
            object.__setattr__(self, "guard_threshold", GUARD_THRESHOLDS.get(self.soft, 0.0))
            unset += ("guard_threshold",)
        if self.judge_order is None:  # follows the mode
            object.__setattr__(self, "judge_order", JUDGE_ORDER_BY_MODE.get(self.mode, "likely"))
            unset += ("judge_order",)
        object.__setattr__(self, "defaulted", unset)
        self._validate()

    def _validate(self) -> None:
        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise ConfigError(f"RainConfig.{name}={getattr(self, name)!r} is invalid: {rule}.")

        need(isinstance(self.soft, bool), "soft", "must be True (probability margin) or False (hard vote)")
        for name in ("min_visits", "max_iterations", "min_iterations"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 0, name, "must be an integer >= 0")
        need(self.min_iterations >= 1 or self.max_iterations >= 1, "min_iterations",
             "min_iterations and max_iterations cannot both be 0 (the search would never run)")
        need(-1.0 <= self.value_threshold <= 1.0, "value_threshold", "must lie in [-1, 1] (values are scores in [-1, 1])")
        need(self.c_puct > 0, "c_puct", "must be > 0")
        need(isinstance(self.num_candidates, int) and self.num_candidates >= 1, "num_candidates", "must be an integer >= 1")
        need(isinstance(self.candidate_top_k, int) and self.candidate_top_k >= 1, "candidate_top_k", "must be >= 1")
        need(len(self.token_set_lengths) >= 1 and all(x >= 1 for x in self.token_set_lengths),
             "token_set_lengths", "must be a non-empty sequence of integers >= 1")
        need(0.0 <= self.root_noise <= 1.0, "root_noise", "must lie in [0, 1]")
        need(self.max_simulation_tokens >= 1, "max_simulation_tokens", "must be >= 1")
        need(self.widen_max_children >= self.num_candidates, "widen_max_children", "must be >= num_candidates")
        need(self.widen_threshold >= 0, "widen_threshold", "must be >= 0")
        need(0.0 <= self.similarity_threshold <= 1.0, "similarity_threshold", "must lie in [0, 1]")
        need(0.0 <= self.similarity_weight <= 1.0, "similarity_weight", "must lie in [0, 1]")
        need(self.search in SEARCH_STRATEGIES, "search", f"must be one of {', '.join(SEARCH_STRATEGIES)}")
        need(isinstance(self.clause_tokens, tuple) and len(self.clause_tokens) == 2 and all(isinstance(x, int) and x >= 1 for x in self.clause_tokens)
             and self.clause_tokens[0] <= self.clause_tokens[1], "clause_tokens",
             "must be two integers (min, max) with 1 <= min <= max")
        need(self.first_rollout in FIRST_ROLLOUTS, "first_rollout",
             f"must be one of {', '.join(map(repr, FIRST_ROLLOUTS))}")
        need(self.judge_order in JUDGE_ORDERS, "judge_order", f"must be one of {', '.join(map(repr, JUDGE_ORDERS))}")
        need(isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1, "max_new_tokens", "must be an integer >= 1")
        need(all(isinstance(s, str) and s for s in self.stop), "stop", "must be non-empty strings")
        need(self.seed is None or isinstance(self.seed, int), "seed", "must be an integer or None")
        need(self.mode in MODES, "mode", f"must be one of {', '.join(map(repr, MODES))}")
        need(isinstance(self.guard_threshold, (int, float)) and -1.0 <= self.guard_threshold <= 1.0,
             "guard_threshold", "must lie in [-1, 1] (it is compared with judge scores in [-1, 1])")
        need(self.guard_clause_tokens is None or (isinstance(self.guard_clause_tokens, int)
                                                   and self.guard_clause_tokens >= 1),
             "guard_clause_tokens", "must be an integer >= 1 (or None: the judge's default)")
        need(isinstance(self.guard_horizon, int) and self.guard_horizon >= 0,
             "guard_horizon", "must be an integer >= 0 (0: plan to the end of the response)")
        need(isinstance(self.guard_searches, int) and self.guard_searches >= 1, "guard_searches",
             "must be an integer >= 1")
        need(isinstance(self.no_repeat_ngram_size, int) and self.no_repeat_ngram_size >= 0, "no_repeat_ngram_size",
             "must be an integer >= 0 (0 is off)")
        need(isinstance(self.parallel_leaves, int) and self.parallel_leaves >= 1, "parallel_leaves",
             "must be an integer >= 1 (1 is the reference search)")

    def tokens_per_set(self, depth: int) -> int:
        """Length of the token sets of the children of a node at ``depth`` (1, 2, 4, then 10 by default)."""
        return self.token_set_lengths[min(depth, len(self.token_set_lengths) - 1)]

    def updated(self, **overrides: Any) -> "RainConfig":
        """A copy with ``overrides`` applied; unknown names raise a `ConfigError` naming them."""
        known = {f.name for f in fields(self) if f.init}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"Unknown RainConfig option(s): {', '.join(unknown)}. Known options: {', '.join(sorted(known))}.")
        refill = {name: None for name in self.defaulted if name not in overrides}  # the new strategy's defaults
        return replace(self, **refill, **overrides)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("defaulted")
        return out


def user_options() -> list[Field]:
    """The RainConfig fields declared with `option(...)` and exposed: what the CLI and the integrations offer."""
    return [f for f in fields(RainConfig) if f.metadata.get("exposed")]


def option_aliases() -> dict[str, str]:
    """Every alias of an option, mapped to its field name (``max_tokens`` -> ``max_new_tokens``, ``T``, ``Vt``)."""
    return {alias: f.name for f in fields(RainConfig) for alias in f.metadata.get("aliases", ())}


def field_default(f: Field) -> Any:
    """A RainConfig field's default value (also for fields with a default factory)."""
    return f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
