"""Where the search wins and loses against Best-of-N: the paired items of a `rain eval` run, sorted by how the
search ended.

An item counts when the headline verdict (e.g. VADER-positive) holds for only one of the two methods. For each such
item the search's ending is one of:

- ``greedy accepted``: the greedy answer, the round's first rollout, was judged good enough (at least Vt) and
  the search stopped there;
- ``greedy kept``: no rollout reached Vt and the greedy answer was still the best judged one;
- ``sample accepted``: a sampled response reached Vt and the round stopped at it;
- ``budget spent``: no response reached Vt, and the best judged sample was followed.

Beside it, the judge's score of each method's answer says who the judge preferred: where the judge scored the loser
higher, a better search by the same judge cannot win the item (the judge is the limit); where it scored the winner
higher, the search stopped on, or never drew, the answer Best-of-N found.

    python -m rain_core.eval.losses runs/eval-sentiment [--against bon] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import RainError

ENDINGS = ("greedy accepted", "greedy kept", "sample accepted", "budget spent")


@dataclass(frozen=True)
class PairedItem:
    """One item where only one of the two methods' headline verdicts holds."""

    index: int
    winner: str  # "rain" or the method compared against
    ending: str  # how the search ended (`ENDINGS`)
    rain_score: float  # the judge's score of the search's answer
    other_score: float  # the judge's score of the other method's answer
    rollouts: int  # rollouts the search judged
    other_candidates: int | None  # Best-of-N's sample count

    @property
    def judge_preferred_winner(self) -> bool:
        winner_score = self.rain_score if self.winner == "rain" else self.other_score
        loser_score = self.other_score if self.winner == "rain" else self.rain_score
        return winner_score > loser_score


def ending_of(rain: dict[str, Any], greedy: dict[str, Any] | None, value_threshold: float) -> str:
    """How the search ended on one item, from its record (and the greedy record of the same item)."""
    judged = rain["details"]["rain_stats"]["inner_iterations"]
    if greedy is not None and rain["output"] == greedy["output"]:
        return "greedy accepted" if judged <= 1 else "greedy kept"  # guard mode: 0 when no clause was searched
    return "sample accepted" if rain["self_score"] >= value_threshold else "budget spent"


def paired_items(records: Sequence[dict], *, headline: str, value_threshold: float, higher_is_better: bool = True,
                 against: str = "bon", rain_method: str = "rain") -> list[PairedItem]:
    """The items of a run where exactly one of ``rain_method`` and ``against`` gets the headline verdict right."""
    by: dict[str, dict[int, dict]] = {}
    for record in records:
        by.setdefault(record["method"], {})[record["index"]] = record
    if rain_method not in by or against not in by:
        raise RainError(f"The run needs both {rain_method!r} and {against!r} results; it has {', '.join(sorted(by))}.")
    greedy = by.get("vanilla-greedy", {})
    items = []
    for index in sorted(set(by[rain_method]) & set(by[against])):
        rain, other = by[rain_method][index], by[against][index]
        good = [bool(r["verdicts"].get(headline)) == higher_is_better for r in (rain, other)]
        if good[0] == good[1]:
            continue
        items.append(PairedItem(
            index=index, winner="rain" if good[0] else against,
            ending=ending_of(rain, greedy.get(index), value_threshold), rain_score=float(rain["self_score"]),
            other_score=float(other["self_score"]), rollouts=rain["details"]["rain_stats"]["inner_iterations"],
            other_candidates=other["details"].get("n")))
    return items


def load_run(path: str | Path) -> tuple[list[dict], dict[str, Any]]:
    """A run directory's records and its summary settings (headline, Vt)."""
    run = Path(path)
    try:
        records = [json.loads(line) for line in (run / "results.jsonl").read_text(encoding="utf-8").splitlines()
                   if line.strip()]
        config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    except OSError as exc:
        raise RainError(f"{run} is not a finished rain eval run directory: {exc}") from exc
    summary_path = run / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.exists() else {}
    return records, {"headline": summary.get("headline", "positive"),
                     "higher_is_better": summary.get("higher_is_better", True),
                     "value_threshold": config["rain_config"]["value_threshold"]}


def table(items: Sequence[PairedItem], against: str) -> str:
    """Markdown: per ending, the items each method won, and how many of them the judge scored the winner higher."""
    lines = [f"| search ended by | rain only | {against} only | judge preferred the winner (rain / {against}) |",
             "|---|---|---|---|"]
    for ending in ENDINGS:
        mine = [i for i in items if i.ending == ending and i.winner == "rain"]
        theirs = [i for i in items if i.ending == ending and i.winner != "rain"]
        if mine or theirs:
            lines.append(f"| {ending} | {len(mine)} | {len(theirs)} | "
                         f"{sum(i.judge_preferred_winner for i in mine)} / {sum(i.judge_preferred_winner for i in theirs)} |")
    won = Counter(i.winner for i in items)
    lines.append(f"| **all** | **{won['rain']}** | **{won[against]}** | "
                 f"{sum(i.judge_preferred_winner for i in items if i.winner == 'rain')} / "
                 f"{sum(i.judge_preferred_winner for i in items if i.winner != 'rain')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rain_core.eval.losses", description=__doc__.split("\n")[0])
    parser.add_argument("run", help="a rain eval run directory with rain and bon (and vanilla-greedy) results")
    parser.add_argument("--against", default="bon", help="the method compared with rain (bon)")
    parser.add_argument("--guard", action="store_true", help="compare rain-guard with bon-guard instead")
    parser.add_argument("--json", action="store_true", help="print every paired item as JSON")
    args = parser.parse_args(argv)
    records, settings = load_run(args.run)
    rain_method, against = ("rain-guard", "bon-guard") if args.guard else ("rain", args.against)
    items = paired_items(records, headline=settings["headline"], value_threshold=settings["value_threshold"],
                         higher_is_better=settings["higher_is_better"], against=against, rain_method=rain_method)
    if args.json:
        print(json.dumps([asdict(i) | {"judge_preferred_winner": i.judge_preferred_winner} for i in items], indent=1))
    else:
        print(table(items, against))
    return 0


if __name__ == "__main__":
    sys.exit(main())
