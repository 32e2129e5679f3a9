"""What a generation returns: the text, why it ended, what the search cost, and optionally a trace of every commit."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FinishReason = Literal["eos", "stop", "length"]


@dataclass
class SearchStats:
    """Counters of one generation. ``rewinds`` counts commits whose token set was not the model's greedy choice:
    the places where the search overruled plain decoding."""

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
class GenerationResult:
    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    stats: SearchStats
    trace: list[CommitTrace] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "finish_reason": self.finish_reason, "token_ids": self.token_ids,
                               "stats": self.stats.to_dict()}
        if self.trace is not None:
            out["trace"] = [asdict(c) for c in self.trace]
        return out
