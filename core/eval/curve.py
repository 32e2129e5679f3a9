"""Quality against compute: every method of several `rain eval` runs on one plot, each at its budgets.

One run directory holds one RAIN budget (and Best-of-N matched to it); the curve gathers several: each method becomes
a line through its points (headline rate with its Wilson 95% interval, against mean model tokens per item), so anyone
can see which method wins at which cost. RAIN and guard-mode runs are told apart by search strategy (``reference`` or
``lookahead``; a full-mode lookahead run whose first rollout was sampled, ``first_rollout="sample"`` or a run from
before the option existed, is its own line); Best-of-N points from every run (``bon`` and ``bon-guard``) form one
line, because BoN at a token count is the same method whichever method its budget came from.

    python -m rain_core.eval.curve runs/look-T4 runs/look-T12 runs/ref-T4 ... --out curve.png [--n 60]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import RainError
from .fluency import fluency_summary
from .report import wilson_interval

_COLORS = {"vanilla-greedy": "#888888", "vanilla-sample": "#bbbbbb", "bon": "#4c72b0",
           "rain (reference)": "#dd8452", "rain (lookahead)": "#c44e52", "rain-guard (lookahead)": "#55a868",
           "rain-guard (reference)": "#8172b3", "rain (lookahead, all sampled)": "#e7a0a2"}
_MARKERS = {"vanilla-greedy": "s", "vanilla-sample": "D", "bon": "o", "rain (reference)": "*", "rain (lookahead)": "^",
            "rain-guard (lookahead)": "v", "rain-guard (reference)": "P", "rain (lookahead, all sampled)": "<"}


@dataclass
class Point:
    """One method of one run: where it sits on the cost axis and how often its headline verdict holds."""

    series: str
    run: str
    budget: str
    n: int
    count: int
    mean_tokens: float
    fluency: dict[str, Any]

    @property
    def rate(self) -> float:
        return self.count / self.n

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.count, self.n)


def _series(method: str, config: dict) -> str:
    """The line a method's point belongs to: RAIN and guard mode by search strategy; Best-of-N is one line whether
    its count came from RAIN or from guard mode."""
    if method == "bon-guard":
        return "bon"
    if method not in ("rain", "rain-guard"):
        return method
    rain_config = config.get("rain_config") or {}
    search = rain_config.get("search", "reference")
    if method == "rain" and search == "lookahead" and rain_config.get("first_rollout", "sample") == "sample":
        return "rain (lookahead, all sampled)"  # guard mode's searches always sample, so its line needs no split
    return f"{method} ({search})"


def load_run(run_dir: str | Path, n: int | None = None) -> tuple[dict, list[dict]]:
    """A run's ``config.json`` and its result lines (only items below ``n`` when given)."""
    path = Path(run_dir)
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        lines = (path / "results.jsonl").read_text(encoding="utf-8").splitlines()
    except (OSError, json.JSONDecodeError) as exc:
        raise RainError(f"{path} is not a readable rain eval run directory ({exc}).") from exc
    records = [json.loads(line) for line in lines if line.strip()]
    return config, [r for r in records if n is None or r["index"] < n]


def collect(run_dirs: Sequence[str | Path], *, n: int | None = None, headline: str | None = None) -> list[Point]:
    """The points of every method of every run (plain decoding once: it does not depend on the budget)."""
    points: list[Point] = []
    seen_plain: set[str] = set()
    for run_dir in run_dirs:
        config, records = load_run(run_dir, n)
        key = headline or _headline(config)
        budget = f"T={(config.get('rain_config') or {}).get('max_iterations')}"
        for method in dict.fromkeys(r["method"] for r in records):
            rows = [r for r in records if r["method"] == method and key in r["verdicts"]]
            if not rows or (method.startswith("vanilla") and method in seen_plain):
                continue
            if method.startswith("vanilla"):
                seen_plain.add(method)
            points.append(Point(series=_series(method, config), run=str(run_dir), budget=budget, n=len(rows),
                                count=sum(bool(r["verdicts"][key]) for r in rows),
                                mean_tokens=sum(r["tokens"] for r in rows) / len(rows),
                                fluency=fluency_summary(rows)))
    return points


def _headline(config: dict) -> str:
    from .tasks import make_task

    return make_task(config["task"]).headline[0]


def markdown(points: Sequence[Point]) -> str:
    lines = ["| series | budget | positive rate (Wilson 95%) | mean model tokens | perplexity (median) | distinct-1 / 2 | run |",
             "|---|---|---|---|---|---|---|"]
    for p in sorted(points, key=lambda p: (p.series, p.mean_tokens)):
        low, high = p.ci95
        f = p.fluency
        ppl = "–" if f.get("median_perplexity") is None else f"{f['median_perplexity']:.1f}"
        dist = "–" if f.get("distinct_1") is None else f"{f['distinct_1']:.2f} / {f['distinct_2']:.2f}"
        budget = p.budget if p.series.startswith(("rain", "bon")) else "–"
        lines.append(f"| {p.series} | {budget} | {100 * p.rate:.1f}% [{100 * low:.1f}, {100 * high:.1f}] "
                     f"({p.count}/{p.n}) | {p.mean_tokens:,.0f} | {ppl} | {dist} | `{Path(p.run).name}` |")
    return "\n".join(lines) + "\n"


def plot(points: Sequence[Point], out: str | Path, *, title: str = "", ylabel: str = "positive rate (%)") -> Path:
    """Each series as a line through its points (sorted by cost), with Wilson 95% error bars; log cost axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for series in dict.fromkeys(p.series for p in points):
        mine = sorted((p for p in points if p.series == series), key=lambda p: p.mean_tokens)
        xs = [p.mean_tokens for p in mine]
        ys = [100 * p.rate for p in mine]
        err = [[y - 100 * p.ci95[0] for y, p in zip(ys, mine)], [100 * p.ci95[1] - y for y, p in zip(ys, mine)]]
        ax.errorbar(xs, ys, yerr=err, fmt=("-" if len(mine) > 1 else "") + _MARKERS.get(series, "o"), capsize=4,
                    markersize=7, color=_COLORS.get(series, "#55a868"), label=series, alpha=0.9)
    ax.set_xscale("log")
    ax.set_xlabel("mean model tokens processed per item (log)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rain_core.eval.curve", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="rain eval run directories (one budget each)")
    parser.add_argument("--out", default="curve.png", help="the plot to write (PNG)")
    parser.add_argument("--md", default=None, help="also write the table as Markdown to this file")
    parser.add_argument("--n", type=int, default=None, help="use only the first N items of every run")
    parser.add_argument("--title", default="", help="plot title")
    args = parser.parse_args(argv)
    try:
        points = collect(args.runs, n=args.n)
        if not points:
            raise RainError("The runs hold no results.")
        plot(points, args.out, title=args.title)
    except RainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = markdown(points)
    if args.md:
        Path(args.md).write_text(table, encoding="utf-8")
    print(table, end="")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
