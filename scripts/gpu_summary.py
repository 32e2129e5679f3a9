"""The GPU benchmark's summary: a run's figures (``gpu_bench.json``) as the issue's tables and its bars.

For each shape, the issue's table (plain greedy s/token, the reference search's s/inner iteration and s/committed
token, their ratio; the old engine beside the new), the default search's table, the concurrency table; and for the
key shape each of the issue's bars with every figure measured for it and which of them meet it. A figure the run
did not measure, or measured with an error, never meets a bar.

    python scripts/gpu_bench.py summarize "$OUT/gpu_bench.json"
"""

from __future__ import annotations

from typing import Any

KEY_ARCH = "llama3-8b-shape"  # where the profile and the concurrency figures are taken

#: The issue's bars on the key shape: label, comparison, bound. ``key_figures`` gives each its measured variants.
BARS = (
    ("RAIN s/inner iteration (reference search)", "<=", 0.15),
    ("GPU kernel share", ">=", 0.40),
    ("16 concurrent requests' tokens/s over one request's", ">=", 6.0),
    ("plain greedy s/token", "<=", 0.012),
)


def _pick(figures: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    """The figures whose labels equal ``match`` (a label a figure lacks matches None), errors left out."""
    return [f for f in figures if "error" not in f and all(f.get(k) == v for k, v in match.items())]


def _first(figures: list[dict[str, Any]], key: str, **match: Any) -> Any:
    found = [f[key] for f in _pick(figures, **match) if f.get(key) is not None]
    return found[0] if found else None


def _fmt(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def key_figures(figures: list[dict[str, Any]], arch: str) -> list[list[tuple[str, float]]]:
    """For each of ``BARS``, the figures measured for it on one shape as (variant, value), the engine's default
    first. The 16-concurrent gain is read against the same prompts one at a time (the same mix of prompts as the
    16) and against the first prompt alone (one concurrent request): a single prompt's cost per token swings with
    how often the judge objects to it."""
    def found(key: str, what: str, label: str, **match: Any) -> list[tuple[str, float]]:
        value = _first(figures, key, arch=arch, what=what, engine="new", **match)
        return [] if value is None else [(label, float(value))]

    iterations = [(f"K={f['parallel_leaves']}" + (", static rollouts off" if f.get("static_rollouts") is False else "")
                   + ("" if f.get("complete") else " (stopped at its cap)"), float(f["s_per_iteration"]))
                  for f in _pick(figures, arch=arch, what="rain", engine="new")]
    shares = found("kernel_share", "profile", "default search", search="lookahead", static_rollouts=True) \
        + found("kernel_share", "profile", "default search, static rollouts off", search="lookahead",
                static_rollouts=False) \
        + found("kernel_share", "profile", "reference K=1", search=None, parallel_leaves=1) \
        + found("kernel_share", "profile", "reference K=4", search=None, parallel_leaves=4) \
        + found("gpu_busy", "rain_default", "NVML busy, default search unprofiled", parallel_leaves=1,
                static_rollouts=True) \
        + found("gpu_busy", "concurrent", "NVML busy, 16 concurrent", search="lookahead", requests=16)
    sixteen = _first(figures, "tokens_per_s", arch=arch, what="concurrent", search="lookahead", requests=16)
    gains: list[tuple[str, float]] = []
    for label, base in (("over one at a time", _first(figures, "tokens_per_s", arch=arch, what="one_at_a_time",
                                                       search="lookahead")),
                        ("over the first prompt alone", _first(figures, "tokens_per_s", arch=arch,
                                                               what="concurrent", search="lookahead", requests=1))):
        if sixteen and base:
            gains.append((f"default search, {label}", sixteen / base))
    greedy = found("s_per_token", "plain_greedy_static", "compiled static cache") \
        + found("s_per_token", "plain_greedy_dynamic", "dynamic cache")
    return [iterations, shares, gains, greedy]


def summarize(data: dict[str, Any]) -> str:
    """The run as markdown: the issue's per-shape table (old and new engine), the default search, the concurrency
    table and each bar with its figures and which of them meet it. Printed and saved at the end of ``run``; the
    closing note quotes it. A table with no rows is left out."""
    figures = data.get("figures", [])
    archs = list(dict.fromkeys(f["arch"] for f in figures if "arch" in f))
    parts = [_issue_table(figures, archs), _default_table(figures, archs), _concurrency_table(figures, archs)]
    key = KEY_ARCH if KEY_ARCH in archs else ("tiny" if "tiny" in archs else None)
    if key is not None:
        parts.append(_bars_table(figures, key))
    if data.get("skipped"):
        parts.append("Skipped for time: " + "; ".join(data["skipped"]))
    return "\n\n".join("\n".join(part) if isinstance(part, list) else part for part in parts if part) + "\n"


def _issue_table(figures: list[dict[str, Any]], archs: list[str]) -> list[str]:
    """The issue's table: plain greedy, the reference search's s/iteration and s/committed token, their ratio."""
    rows = []
    for arch in archs:
        for engine in ("old", "new"):
            plain = _first(figures, "s_per_token", arch=arch, what="plain_greedy_dynamic", engine=engine)
            k1 = _pick(figures, arch=arch, what="rain", engine=engine, parallel_leaves=1)
            if plain is None and not k1:
                continue
            k4 = _first(figures, "s_per_iteration", arch=arch, what="rain", engine=engine, parallel_leaves=4)
            per_token = k1[0].get("s_per_token") if k1 else None
            ratio = per_token / plain if per_token and plain else None
            rows.append(f"| {arch} | {engine} | {_fmt(plain)} | {_fmt(k1[0]['s_per_iteration'] if k1 else None)} / "
                        f"{_fmt(k4)} | {_fmt(per_token)} | {_fmt(ratio, 2)}{'×' if ratio else ''} |")
    return ["| shape | engine | plain greedy s/token | RAIN s/inner iteration (K=1 / K=4) | RAIN s/committed token "
            "| ratio |", "|---|---|---|---|---|---|", *rows] if rows else []


def _default_table(figures: list[dict[str, Any]], archs: list[str]) -> list[str]:
    """The default search's s/committed token (K = 1, 4; static rollouts on and off) and its kernel share."""
    rows = []
    for arch in archs:
        runs = _pick(figures, arch=arch, what="rain_default", engine="new")
        if not runs:
            continue
        static_on = any(f.get("static_rollouts") for f in runs)
        per_token = {(f.get("parallel_leaves"), bool(f.get("static_rollouts"))): f.get("s_per_token") for f in runs}
        share = {bool(f.get("static_rollouts")): f.get("kernel_share")
                 for f in _pick(figures, arch=arch, what="profile", engine="new", search="lookahead")}
        rows.append(f"| {arch} | {_fmt(per_token.get((1, static_on)))} | {_fmt(per_token.get((4, static_on)))} | "
                    f"{_fmt(per_token.get((1, False))) if static_on else '–'} | {_fmt(share.get(True))} / "
                    f"{_fmt(share.get(False))} |")
    return ["Default search (lookahead), s/committed token:", "",
            "| shape | K=1 | K=4 | K=1, static rollouts off | kernel share (static on / off) |",
            "|---|---|---|---|---|", *rows] if rows else []


def _concurrency_table(figures: list[dict[str, Any]], archs: list[str]) -> list[str]:
    """Committed tokens/s (forwards per committed token) one at a time and at each concurrency level."""
    def cell(f: dict[str, Any] | None) -> str:
        return "–" if f is None else f"{_fmt(f.get('tokens_per_s'))} ({_fmt(f.get('calls_per_token'))})"

    rows = []
    for arch in archs:
        for search in ("lookahead", "reference"):
            serial = _pick(figures, arch=arch, what="one_at_a_time", search=search)
            levels = {f["requests"]: f for f in _pick(figures, arch=arch, what="concurrent", search=search)}
            if serial or levels:
                rows.append(f"| {arch} | {search} | {cell(serial[0] if serial else None)} | {cell(levels.get(1))} | "
                            f"{cell(levels.get(4))} | {cell(levels.get(16))} |")
    return ["Concurrent requests on one model (committed tokens/s; forwards run per committed token):", "",
            "| shape | search | one at a time | 1 | 4 | 16 |", "|---|---|---|---|---|---|", *rows] if rows else []


def _bars_table(figures: list[dict[str, Any]], key: str) -> list[str]:
    """Each of the issue's bars: every figure measured for it, and which of them meet it ("–": none measured)."""
    lines = [f"The issue's bars ({key}):", "", "| bar | measured | met by |", "|---|---|---|"]
    for (label, op, bound), variants in zip(BARS, key_figures(figures, key)):
        met = [name for name, value in variants if (value <= bound if op == "<=" else value >= bound)]
        measured = "; ".join(f"{name} {_fmt(value)}" for name, value in variants) or "not measured"
        lines.append(f"| {label} {op} {bound:g} | {measured} | {', '.join(met) if met else ('none' if variants else '–')} |")
    return lines
