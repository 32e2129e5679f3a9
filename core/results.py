"""What a generation returns: the text, why it ended, what the search cost, and optionally a trace of every commit."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

#: eos / stop (a stop string or new turn) / length (max_new_tokens); ``rejected``: guard mode could not find a
#: continuation of a clause that its judge accepts, so the response ends with the text accepted before it.
FinishReason = Literal["eos", "stop", "length", "rejected"]


@dataclass
class SearchStats:
    """Counters of one generation. ``rewinds`` counts commits whose token set was not the model's greedy choice:
    the places where the search overruled plain decoding. ``evaluations`` counts judge calls (in guard mode the
    clause judgements too).

    Guard mode only: ``clauses_drafted`` plainly decoded clauses, ``clauses_rejected`` those the judge rejected,
    ``searches`` RAIN searches run from a rejected clause (a searched clause that is rejected again is searched
    again, up to ``guard_searches`` times)."""

    inner_iterations: int = 0
    commits: int = 0
    rewinds: int = 0
    evaluations: int = 0
    evaluation_cache_hits: int = 0
    widenings: int = 0
    forward_calls: int = 0
    tokens_processed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_seconds: float = 0.0
    last_value: float = 0.0
    clauses_drafted: int = 0
    clauses_rejected: int = 0
    searches: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CandidateTrace:
    text: str
    prior: float
    visits: float
    value: float
    greedy: bool
    chosen: bool


@dataclass
class CommitTrace:
    """One committed step: the text committed, the iterations it took, and every candidate the root weighed."""

    index: int
    committed_text: str
    iterations: int
    candidates: list[CandidateTrace] = field(default_factory=list)


@dataclass
class SearchAttempt:
    """Guard mode: one search from the start of a rejected clause, the clause it committed, and the judge's verdict."""

    text: str
    score: float | None  # None: the search added no words (e.g. it ended the response at once)
    passed: bool
    iterations: int
    commits: list[CommitTrace] = field(default_factory=list)


@dataclass
class ClauseTrace:
    """Guard mode: one plainly drafted clause, its score, and, when it was rejected, the searches that replaced it
    (``replacement`` is the accepted clause, or None when none passed and the response ended there)."""

    index: int
    drafted: str
    score: float | None  # None: the clause added no words (whitespace, or nothing), so there was nothing to judge
    passed: bool
    attempts: list[SearchAttempt] = field(default_factory=list)
    replacement: str | None = None


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    stats: SearchStats
    trace: list[CommitTrace] | list[ClauseTrace] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "finish_reason": self.finish_reason, "token_ids": self.token_ids,
                               "stats": self.stats.to_dict()}
        if self.trace is not None:
            out["trace"] = [asdict(c) for c in self.trace]
        return out
