"""How well a judge tells good replies from bad ones: AUC on a hand-labelled set, for the soft score and the hard vote.

A labelled set is a JSON file whose lists hold ``{"prompt", "response", "label": "good"|"bad"}`` cases, one list
per judge (``tests/data/judge_cases.json`` ships one for ``harmless``, ``sentiment`` and a ``from_principles``
judge). The AUC is the chance that a random good reply scores above a random bad one, ties counting half: 0.5 is
chance, 1.0 a perfect ranking. The soft score ranks by the mean probability margin; the hard vote only by
+1/0/-1, so ties pull its AUC towards 0.5.

    python -m rain_core.eval.separation tests/data/judge_cases.json          # every judge, on SmolLM2
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..evaluator import EvaluationPrompt, SelfEvaluator
from ..exchange import Exchange

Case = dict[str, str]


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """P(score of a random good case > score of a random bad case), ties counting half (the Mann-Whitney U)."""
    good = [s for s, g in zip(scores, labels) if g]
    bad = [s for s, g in zip(scores, labels) if not g]
    if not good or not bad:
        raise ValueError("AUC needs at least one good and one bad case.")
    wins = sum((g > b) + 0.5 * (g == b) for g in good for b in bad)
    return wins / (len(good) * len(bad))


@dataclass(frozen=True)
class CaseScore:
    """One case's calibrated P(good) under both option orders, and what the two kinds of score make of it."""

    case: Case
    p_good: tuple[float, float]

    @property
    def soft(self) -> float:
        return self.p_good[0] + self.p_good[1] - 1.0

    @property
    def hard(self) -> float:
        return float((self.p_good[0] > 0.5) + (self.p_good[1] > 0.5) - 1)

    @property
    def good(self) -> bool:
        return self.case["label"] == "good"


@dataclass(frozen=True)
class Separation:
    """A judge's scores on a labelled set and its AUC, soft and hard."""

    name: str
    scores: list[CaseScore]

    @property
    def auc_soft(self) -> float:
        return auc([s.soft for s in self.scores], [s.good for s in self.scores])

    @property
    def auc_hard(self) -> float:
        return auc([s.hard for s in self.scores], [s.good for s in self.scores])

    def to_dict(self) -> dict[str, Any]:
        return {"judge": self.name, "n": len(self.scores), "good": sum(s.good for s in self.scores),
                "auc_soft": round(self.auc_soft, 3), "auc_hard": round(self.auc_hard, 3)}


def exchange_of(case: Case) -> Exchange:
    """A case as the judge sees it: a one-turn conversation in RAIN's plain form (the response alone when the case
    has no prompt, e.g. a review continuation for ``sentiment``)."""
    prompt = case.get("prompt", "")
    if not prompt:
        return Exchange(prompt="", response=case["response"], history="", raw=True)
    return Exchange(prompt=prompt, response=case["response"], history=f"\nHuman: {prompt.strip()}\nAssistant:")


def measure(judge: SelfEvaluator, cases: Sequence[Case], name: str | None = None) -> Separation:
    """Score every case with ``judge`` (one batched pass per case, plus the calibration baseline per request)."""
    scores = [CaseScore(case, judge.good_probabilities(exchange_of(case))) for case in cases]
    return Separation(name or judge.prompt.name, scores)


def load_cases(path: str | Path) -> dict[str, Any]:
    """The labelled set: ``{"harmless": [...], "sentiment": [...], "principles": [...strings], ...}``."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def builtin_judges(data: dict[str, Any]) -> list[tuple[str, EvaluationPrompt, list[Case]]]:
    """(name, prompt, cases) for each built-in judge and the set's ``from_principles`` judge."""
    judges = [(name, EvaluationPrompt.builtin(name), data["harmless"])
              for name in ("harmless", "harmless-conversation", "harmless-letters")]
    judges.append(("sentiment", EvaluationPrompt.builtin("sentiment"), data["sentiment"]))
    if data.get("principles"):
        judges.append(("from_principles", EvaluationPrompt.from_principles(data["principles"]), data["harmless"]))
        judges.append(("from_principles(context=True)",
                       EvaluationPrompt.from_principles(data["principles"], context=True), data["harmless"]))
    return judges


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rain_core.eval.separation", description=__doc__.split("\n")[0])
    parser.add_argument("cases", help="the labelled set (JSON), e.g. tests/data/judge_cases.json")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--show", action="store_true", help="print every case's calibrated P(good) too")
    args = parser.parse_args(argv)

    import torch

    from ..registry import shared_backend

    torch.set_num_threads(args.threads)
    backend = shared_backend(args.model)
    rows = []
    for name, prompt, cases in builtin_judges(load_cases(args.cases)):
        result = measure(SelfEvaluator(backend, prompt), cases, name)
        rows.append(result.to_dict())
        if args.show:
            for s in result.scores:
                print(f"  {name:16s} {s.case['label']:4s} p=({s.p_good[0]:.2f},{s.p_good[1]:.2f}) "
                      f"{s.case['response'][:70]}", file=sys.stderr)
    print("| judge | cases (good) | soft AUC | hard-vote AUC |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['judge']} | {row['n']} ({row['good']}) | {row['auc_soft']:.2f} | {row['auc_hard']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
