"""From per-item results to a summary: rates with Wilson 95% intervals, mean costs, a Markdown table, two plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from .fluency import fluency_summary

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95% by default); (0, 1) when n == 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(records: Sequence[dict], *, methods: Sequence[str], metrics: Sequence[Sequence[str]],
              scores: Sequence[Sequence[str]], settings: dict[str, Any]) -> dict[str, Any]:
    """Per method: n, each rate with its interval, mean scores, mean tokens and seconds; paired RAIN comparisons."""
    by_method: dict[str, dict[int, dict]] = {m: {} for m in methods}
    for r in records:
        if r["method"] in by_method:
            by_method[r["method"]][r["index"]] = r
    out: dict[str, Any] = {"task": settings.get("task"), "model": settings.get("model_name"),
                           "headline": metrics[0][0], "headline_label": metrics[0][1],
                           "higher_is_better": settings.get("higher_is_better", True), "methods": {}}
    for method in methods:
        rows = [by_method[method][i] for i in sorted(by_method[method])]
        entry: dict[str, Any] = {"n": len(rows)}
        for key, label in metrics:
            judged = [r["verdicts"][key] for r in rows if key in r["verdicts"]]
            hits = sum(bool(v) for v in judged)
            low, high = wilson_interval(hits, len(judged))
            entry[key] = {"label": label, "count": hits, "n": len(judged),
                          "rate": hits / len(judged) if judged else None, "ci95": [low, high]}
        for key, label in scores:
            entry[key] = {"label": label, "mean": _mean([float(r["verdicts"][key]) for r in rows
                                                         if r["verdicts"].get(key) is not None])}
        entry["mean_tokens"] = _mean([r["tokens"] for r in rows])
        entry["mean_seconds"] = _mean([r["seconds"] for r in rows])
        entry["mean_self_score"] = _mean([r["self_score"] for r in rows if r.get("self_score") is not None])
        entry["fluency"] = fluency_summary(rows)
        if method in ("bon", "bon-guard"):
            entry["mean_n"] = _mean([r["details"]["n"] for r in rows])
            entry["n_range"] = [min(r["details"]["n"] for r in rows), max(r["details"]["n"] for r in rows)] if rows else None
        if method in ("rain", "rain-guard"):
            stats = [r["details"]["rain_stats"] for r in rows]
            names = ("inner_iterations", "commits", "rewinds", "evaluations") + (
                ("clauses_drafted", "clauses_rejected", "searches") if method == "rain-guard" else ())
            for name in names:
                entry[f"mean_{name}"] = _mean([s.get(name, 0) for s in stats])
            if method == "rain-guard":
                entry["finished_rejected"] = sum(1 for r in rows if r["finish_reason"] == "rejected")
            entry["search"] = settings.get("rain_config", {}).get("search", "reference")
        out["methods"][method] = entry
    key = metrics[0][0]
    for base, label in (("rain", "paired_vs_rain"), ("rain-guard", "paired_vs_rain_guard")):
        if base in by_method:
            out[label] = _paired(by_method, base, [m for m in methods if m != base], key)
    return out


def _paired(by_method: dict[str, dict[int, dict]], base: str, others: Sequence[str], key: str) -> dict[str, dict]:
    """For each other method: the items both ran, and on how many ``key`` holds for only one of the two."""
    paired = {}
    for other in others:
        common = sorted(set(by_method[base]) & set(by_method[other]))
        only_base = sum(1 for i in common if by_method[base][i]["verdicts"].get(key)
                        and not by_method[other][i]["verdicts"].get(key))
        only_other = sum(1 for i in common if by_method[other][i]["verdicts"].get(key)
                         and not by_method[base][i]["verdicts"].get(key))
        paired[other] = {"items": len(common), f"only_{base.replace('-', '_')}": only_base, f"only_{other}": only_other}
    return paired


def _fmt_rate(m: dict) -> str:
    if m.get("rate") is None:
        return "–"
    low, high = m["ci95"]
    return f"{100 * m['rate']:.1f}% [{100 * low:.1f}, {100 * high:.1f}] ({m['count']}/{m['n']})"


def _fmt_fluency(f: dict) -> str:
    if f.get("median_perplexity") is None:
        return "–"
    return f"{f['median_perplexity']:.1f} (mean {f['mean_perplexity']:.1f})"


def _fmt_distinct(f: dict) -> str:
    if f.get("distinct_1") is None:
        return "–"
    return f"{f['distinct_1']:.2f} / {f['distinct_2'] if f['distinct_2'] is not None else float('nan'):.2f}"


def markdown(summary: dict[str, Any], settings: dict[str, Any]) -> str:
    """A table a person can paste: one row per method, the rates with their 95% intervals, then the costs."""
    methods = summary["methods"]
    first = next(iter(methods.values()), {})
    rate_keys = [k for k, v in first.items() if isinstance(v, dict) and "rate" in v]
    score_keys = [k for k, v in first.items() if isinstance(v, dict) and "mean" in v]
    head = ["method"] + [first[k]["label"] for k in rate_keys] + [first[k]["label"] for k in score_keys] + [
        "mean self-eval score", "perplexity (median)", "distinct-1 / 2", "mean model tokens", "mean seconds", "notes"]
    lines = [f"## rain eval {summary['task']} on {summary['model']}", "",
             f"{settings.get('n_items', '?')} items from `{Path(settings.get('data', '')).name}`, "
             f"max_new_tokens={settings.get('max_new_tokens')}, seed={settings.get('seed')}. "
             f"Rates with Wilson 95% intervals; {'higher' if summary['higher_is_better'] else 'lower'} is better "
             f"for the first rate.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, m in methods.items():
        notes = ""
        if method in ("bon", "bon-guard"):
            notes = f"N mean {m['mean_n']:.1f} (range {m['n_range'][0]}–{m['n_range'][1]})" if m.get("mean_n") else ""
        if method == "rain" and m.get("mean_inner_iterations") is not None:
            notes = (f"{m.get('search', 'reference')} search, {m['mean_inner_iterations']:.0f} iterations, "
                     f"{m['mean_rewinds']:.1f} rewinds per item")
        if method == "rain-guard" and m.get("mean_clauses_drafted") is not None:
            notes = (f"{m['mean_clauses_rejected']:.1f} of {m['mean_clauses_drafted']:.1f} clauses rejected, "
                     f"{m['mean_inner_iterations']:.0f} iterations per item; {m['finished_rejected']} ended unfixed")
        cells = [method] + [_fmt_rate(m[k]) for k in rate_keys] + [
            "–" if m[k]["mean"] is None else f"{m[k]['mean']:+.3f}" for k in score_keys] + [
            "–" if m.get("mean_self_score") is None else f"{m['mean_self_score']:+.2f}",
            _fmt_fluency(m.get("fluency") or {}), _fmt_distinct(m.get("fluency") or {}),
            "–" if m.get("mean_tokens") is None else f"{m['mean_tokens']:,.0f}",
            "–" if m.get("mean_seconds") is None else f"{m['mean_seconds']:.1f}", notes]
        lines.append("| " + " | ".join(cells) + " |")
    rain = settings.get("rain_config") or {}
    if any(m in methods for m in ("rain", "bon", "rain-guard", "bon-guard")):
        guard = "".join(f", {k}={rain.get(k)}" for k in (
            "guard_threshold", "guard_searches", "guard_clause_tokens", "guard_horizon")
        ) if "rain-guard" in methods else ""
        lines += ["", "RAIN budget: " + ", ".join(f"{k}={rain.get(k)}" for k in (
            "max_iterations", "min_iterations", "min_visits", "value_threshold", "num_candidates")) +
            f"{guard}, soft={settings.get('soft')}, similarity={settings.get('similarity')}."]
    for base, label in (("rain", "paired_vs_rain"), ("rain-guard", "paired_vs_rain_guard")):
        paired = summary.get(label)
        if paired:
            only = f"only_{base.replace('-', '_')}"
            lines += ["", f"Paired on `{summary['headline']}` (items where it holds for only one of the two): " +
                      "; ".join(f"{base} only {p[only]} vs {o} only {p[f'only_{o}']} of {p['items']}"
                                for o, p in paired.items()) + "."]
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    """``rate.png`` (headline rate per method with 95% error bars) and ``rate_vs_cost.png`` (rate against mean
    model tokens, log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key, label = summary["headline"], summary["headline_label"]
    methods = [m for m, v in summary["methods"].items() if v[key]["rate"] is not None]
    if not methods:
        return []
    rates = [100 * summary["methods"][m][key]["rate"] for m in methods]
    lows = [r - 100 * summary["methods"][m][key]["ci95"][0] for r, m in zip(rates, methods)]
    highs = [100 * summary["methods"][m][key]["ci95"][1] - r for r, m in zip(rates, methods)]
    colors = {"vanilla-greedy": "#888888", "vanilla-sample": "#bbbbbb", "bon": "#4c72b0", "rain": "#dd8452",
              "rain-guard": "#c44e52", "bon-guard": "#8172b3"}
    title = f"{summary['task']} · {summary['model']} · n={max(summary['methods'][m][key]['n'] for m in methods)}"
    paths = []

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(methods, rates, yerr=[lows, highs], capsize=6, color=[colors.get(m, "#55a868") for m in methods])
    ax.set_ylabel(f"{label} (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    for i, r in enumerate(rates):
        ax.text(i, min(r + 2, 95), f"{r:.0f}%", ha="center", va="bottom")
    fig.tight_layout()
    paths.append(out_dir / "rate.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    markers = {"vanilla-greedy": "s", "vanilla-sample": "D", "bon": "o", "rain": "*", "rain-guard": "P",
               "bon-guard": "h"}
    placed: list[float] = []
    for m, r, lo, hi in zip(methods, rates, lows, highs):
        cost = summary["methods"][m]["mean_tokens"] or 1
        # nudge a point sideways (a few percent, on a log axis) when another sits at nearly the same cost
        shift = 1 + 0.04 * sum(1 for c in placed if abs(c / cost - 1) < 0.05)
        placed.append(cost)
        ax.errorbar([cost * shift], [r], yerr=[[lo], [hi]], fmt=markers.get(m, "o"), markersize=9, capsize=5,
                    color=colors.get(m, "#55a868"), label=f"{m}: {r:.0f}% at {cost:,.0f} tokens")
    ax.set_xscale("log")
    ax.set_xlabel("mean model tokens processed per item (log)")
    ax.set_ylabel(f"{label} (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "rate_vs_cost.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def write_summary(summary: dict[str, Any], settings: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    files = {"summary.json": out_dir / "summary.json", "summary.md": out_dir / "summary.md"}
    _atomic_write(files["summary.json"], json.dumps({**summary, "settings": settings}, indent=2) + "\n")
    _atomic_write(files["summary.md"], markdown(summary, settings))
    for path in plot(summary, out_dir):
        files[path.name] = path
    return files


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
