"""The GPU script's summary (scripts/gpu_summary.py: the tables and the issue's bars read from a run's figures) and
its NVML busy sampler (scripts/gpu_bench.py).

The device runs are rare and short, so the verdicts a closing note quotes come from this code; these tests pin
which figure each bar is read from, and that a failed or missing figure is never reported as met."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load(name: str) -> Any:
    """A script of scripts/ as a module (gpu_bench imports gpu_summary from its own folder, as when run)."""
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPTS))
    return module


@pytest.fixture(scope="module")
def gpu_summary() -> Any:
    return load("gpu_summary")


@pytest.fixture(scope="module")
def gpu_bench() -> Any:
    return load("gpu_bench")


KEY = "llama3-8b-shape"


def run_figures(*, sixteen: float = 60.0, serial: float = 8.0, alone: float = 12.0, share: float = 0.45,
                k1: float = 0.2, k4: float = 0.09, greedy: float = 0.010) -> list[dict[str, Any]]:
    """A key-shape run as gpu_bench records it (the labels each section adds), old engine included."""
    return [
        {"arch": KEY, "what": "rain_default", "engine": "new", "parallel_leaves": 1, "static_rollouts": True,
         "search": "lookahead", "complete": True, "s_per_token": 0.3},
        {"arch": KEY, "what": "profile", "engine": "new", "parallel_leaves": 1, "static_rollouts": True,
         "search": "lookahead", "kernel_share": share},
        {"arch": KEY, "what": "profile", "engine": "new", "parallel_leaves": 1, "static_rollouts": False,
         "search": "lookahead", "kernel_share": 0.2},
        {"arch": KEY, "what": "one_at_a_time", "engine": "new", "search": "lookahead", "tokens_per_s": serial,
         "calls_per_token": 2.2},
        {"arch": KEY, "what": "concurrent", "engine": "new", "search": "lookahead", "requests": 1,
         "tokens_per_s": alone, "calls_per_token": 4.0},
        {"arch": KEY, "what": "concurrent", "engine": "new", "search": "lookahead", "requests": 16,
         "tokens_per_s": sixteen, "calls_per_token": 0.6},
        {"arch": KEY, "what": "plain_greedy_dynamic", "engine": "new", "s_per_token": 0.025},
        {"arch": KEY, "what": "rain", "engine": "new", "parallel_leaves": 1, "complete": True,
         "s_per_iteration": k1, "s_per_token": 0.9},
        {"arch": KEY, "what": "rain", "engine": "new", "parallel_leaves": 4, "complete": False,
         "s_per_iteration": k4, "s_per_token": None},
        {"arch": KEY, "what": "profile", "engine": "new", "parallel_leaves": 1, "kernel_share": 0.15},
        {"arch": KEY, "what": "plain_greedy_dynamic", "engine": "old", "s_per_token": 0.072},
        {"arch": KEY, "what": "rain", "engine": "old", "parallel_leaves": 1, "complete": True,
         "s_per_iteration": 0.59, "s_per_token": 1.48},
        {"arch": KEY, "what": "plain_greedy_static", "engine": "new", "s_per_token": greedy},
    ]


def bar_rows(text: str) -> dict[str, str]:
    """The bars table as {bar label: its 'met by' cell}."""
    rows = [line for line in text.splitlines() if line.startswith("| ") and (" <= " in line or " >= " in line)]
    return {row.split(" | ")[0][2:]: row.rstrip(" |").split(" | ")[-1] for row in rows}


def test_bars_read_the_intended_figures(gpu_summary: Any) -> None:
    text = gpu_summary.summarize({"figures": run_figures()})
    bars = bar_rows(text)
    assert bars["RAIN s/inner iteration (reference search) <= 0.15"] == "K=4 (stopped at its cap)"
    assert bars["GPU kernel share >= 0.4"] == "default search"
    # 60 tokens/s at 16 against 8 one at a time is 7.5x; against the first prompt alone (12) it is 5x
    assert bars["16 concurrent requests' tokens/s over one request's >= 6"] == "default search, over one at a time"
    assert "over one at a time 7.5; default search, over the first prompt alone 5" in text
    assert bars["plain greedy s/token <= 0.012"] == "compiled static cache"
    # the table, old beside new: 1.48 s per committed token over 0.072 s per plain token is 21x
    assert "| llama3-8b-shape | old | 0.072 | 0.59 / – | 1.48 | 21× |" in text
    assert "| llama3-8b-shape | lookahead | 8 (2.2) | 12 (4) | – | 60 (0.6) |" in text


def test_a_bar_the_run_missed_is_not_met(gpu_summary: Any) -> None:
    bars = bar_rows(gpu_summary.summarize({"figures": run_figures(sixteen=40.0, share=0.3, k1=0.5, k4=0.2,
                                                                greedy=0.02)}))
    assert set(bars.values()) == {"none"}


def test_failed_and_missing_figures_are_never_met(gpu_summary: Any) -> None:
    figures = [f for f in run_figures() if f["what"] not in ("concurrent", "plain_greedy_static")]
    figures.append({"arch": KEY, "what": "concurrent", "engine": "new", "search": "lookahead", "requests": 16,
                    "error": "RuntimeError: CUDA out of memory"})
    text = gpu_summary.summarize({"figures": figures, "skipped": ["qwen2.5-32b-shape: all"]})
    bars = bar_rows(text)
    assert bars["16 concurrent requests' tokens/s over one request's >= 6"] == "–"
    assert "| 16 concurrent requests' tokens/s over one request's >= 6 | not measured | – |" in text
    assert bars["plain greedy s/token <= 0.012"] == "none"  # only the dynamic 0.025 was measured
    assert "Skipped for time: qwen2.5-32b-shape: all" in text


def test_cpu_rehearsal_reads_the_tiny_shape(gpu_summary: Any) -> None:
    figures = [{**f, "arch": "tiny"} for f in run_figures()]
    assert "The issue's bars (tiny):" in gpu_summary.summarize({"figures": figures})


def test_nvml_busy_share_is_a_kernel_share_variant(gpu_summary: Any) -> None:
    figures = run_figures(share=0.3)
    figures[0]["gpu_busy"] = 0.62  # the unprofiled default-search run
    bars = bar_rows(gpu_summary.summarize({"figures": figures}))
    assert bars["GPU kernel share >= 0.4"] == "NVML busy, default search unprofiled"


def test_gpu_busy_averages_what_the_reader_reports(gpu_bench: Any) -> None:
    readings = iter([20.0, 60.0] + [40.0] * 10_000)
    with gpu_bench.GpuBusy(read=lambda: next(readings), every_s=0.001) as busy:
        while len(busy.samples) < 5:
            pass
    assert busy.samples[:2] == [0.2, 0.6]
    assert 0.2 <= busy.share <= 0.6


def test_gpu_busy_gives_no_figure_without_a_reader(gpu_bench: Any) -> None:
    def broken() -> float:
        raise RuntimeError("NVML: driver not loaded")

    with gpu_bench.GpuBusy(read=broken, every_s=0.001) as busy:
        pass
    assert busy.share is None
    with gpu_bench.GpuBusy(read=None) as idle:
        pass
    assert idle.share is None and idle.samples == []
