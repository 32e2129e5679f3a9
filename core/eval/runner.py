"""`run_eval`: run the methods on a task's items, append each result as it finishes, resume, summarise.

The run directory holds:
- ``config.json``: the settings that shape the results. A rerun with the same settings resumes (done items are
  skipped, ``n`` may grow); different settings are refused, so a resume never mixes two experiments.
- ``results.jsonl``: one line per (item, method), each written in one append after that item's method finished.
  A line cut short by a crash is dropped on the next start.
- ``summary.json``, ``summary.md``, ``rate.png``, ``rate_vs_cost.png``: rewritten at the end of every run.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import RainConfig
from ..errors import RainError
from .fluency import continuation_perplexity
from .judges import ModelJudge
from .methods import BON_BUDGET_OF, Outcome, parse_methods, run_best_of_n, run_plain, run_rain
from .report import summarize, write_summary
from .tasks import Task, load_rows, load_suffixes, make_task, resolve_data

#: Settings that do not change the results, so a resume may differ in them.
_RESUMABLE = ("n",)


@dataclass
class EvalSettings:
    """Everything that shapes an evaluation's results (recorded in ``config.json``)."""

    task: str
    model: str = "smollm2"
    data: str | None = None
    n: int | None = 30
    methods: str | list[str] = "vanilla,bon,rain"
    max_new_tokens: int | None = None  # None: the task's default
    seed: int = 0
    bon_n: int = 8  # BoN's N when RAIN is not among the methods
    rain_overrides: dict[str, Any] = field(default_factory=dict)  # RainConfig fields (the RAIN budget)
    similarity: bool = True
    evaluator: str | None = None  # self-evaluation prompt for RAIN and BoN; None: the task's
    judge_model: str | None = None  # an external judge model for harmless / advbench
    base_url: str | None = None  # the model served there (vLLM) instead of loaded here
    served_model: str | None = None
    timeout: float | None = None
    api_key: str | None = None  # never written to the run's config.json
    judge_prompt: str = "harmless"
    suffix_file: str | None = None  # adversarial suffixes for advbench
    tqa_metric: str = "rouge"


class EvalRun:
    """One evaluation: the task, its rows, the engine, the run directory."""

    def __init__(self, settings: EvalSettings, out_dir: str | os.PathLike, *, rain: Any = None,
                 judge: ModelJudge | None = None, device: str | None = None, dtype: str | None = None) -> None:
        self.settings = settings
        self.out_dir = Path(out_dir)
        self.methods = parse_methods(settings.methods)
        if settings.n is not None and settings.n < 1:
            raise RainError(f"--n must be >= 1, not {settings.n}.")
        if settings.bon_n < 1:
            raise RainError(f"--bon-n must be >= 1, not {settings.bon_n}.")
        if settings.judge_model and settings.task not in ("harmless", "advbench"):
            raise RainError("--judge-model applies to the harmless and advbench tasks only.")
        if settings.suffix_file and settings.task != "advbench":
            raise RainError("--suffix-file applies to the advbench task only.")
        # bad budget or length values fail before anything loads
        RainConfig().updated(**settings.rain_overrides, seed=settings.seed,
                             **({"max_new_tokens": settings.max_new_tokens} if settings.max_new_tokens is not None else {}))
        # cheap checks first: the data, then the (slow) models; nothing is written before all of them pass
        self.task: Task = make_task(settings.task, tqa_metric=settings.tqa_metric)
        self.data_path = resolve_data(self.task, settings.data)
        self.rows = load_rows(self.task, self.data_path, settings.n)
        self.suffixes = load_suffixes(settings.suffix_file)
        if judge is None and settings.judge_model:
            judge = ModelJudge.load(settings.judge_model, settings.judge_prompt, device=device, dtype=dtype)
        self.judge = judge
        if judge is not None:
            self.task = make_task(settings.task, tqa_metric=settings.tqa_metric, judge=judge)
        self.max_new_tokens = settings.max_new_tokens if settings.max_new_tokens is not None else \
            self.task.max_new_tokens
        if rain is None:
            from ..engine import Rain

            try:
                rain = Rain(settings.model, evaluator=settings.evaluator or self.task.evaluator,
                            config=RainConfig().updated(**settings.rain_overrides),
                            similarity=settings.similarity, prompt_format=self.task.prompt_format, device=device,
                            dtype=dtype, base_url=settings.base_url, served_model=settings.served_model,
                            timeout=settings.timeout, api_key=settings.api_key)
            except RainError:
                raise
            except Exception as exc:  # transformers raises anything from OSError to KeyError on a broken folder
                raise RainError(f"The model {settings.model!r} could not be loaded: {type(exc).__name__}: "
                                f"{exc}") from exc
        self.rain = rain
        self.record = json.loads(json.dumps(self._record()))  # as config.json will hold it (lists, not tuples)

    # ------------------------------------------------------------------------------------------ run directory
    def _record(self) -> dict[str, Any]:
        s = asdict(self.settings)
        s["methods"] = self.methods
        s["max_new_tokens"] = self.max_new_tokens
        s["data"] = str(self.data_path)
        s["data_sha256"] = _sha256(self.data_path)
        s["model_name"] = self.rain.model_name
        s["evaluator"] = _describe_evaluator(self.rain.evaluator)
        config = self.rain.config.updated(**self.settings.rain_overrides)
        s["rain_config"] = {k: v for k, v in config.to_dict().items() if k not in ("seed", "max_new_tokens")}
        s["prompt_format"] = self.task.prompt_format
        s["soft"] = config.soft
        s["similarity"] = getattr(self.rain.embedder, "name", None) if self.rain.embedder is not None else False
        s["judge"] = self.judge.name if self.judge is not None else None
        s.pop("rain_overrides")
        s.pop("api_key")
        s.pop("model")
        if s["suffix_file"]:
            s["suffix_sha256"] = _sha256(Path(s["suffix_file"]))
        return s

    def _prepare_dir(self) -> dict[tuple[int, str], dict]:
        """Create or reopen the run directory; return the results already there (by item index and method)."""
        config_path = self.out_dir / "config.json"
        results_path = self.out_dir / "results.jsonl"
        if config_path.exists():
            try:
                old = json.loads(config_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise RainError(f"{config_path} is unreadable ({exc}); use another --out.") from exc
            differ = sorted(k for k in set(old) | set(self.record)
                            if k not in _RESUMABLE and old.get(k) != self.record.get(k))
            if differ:
                detail = "; ".join(f"{k}: {old.get(k)!r} there, {self.record.get(k)!r} now" for k in differ[:4])
                raise RainError(f"{self.out_dir} holds a run made with different settings ({detail}). "
                                "Use another --out (or delete that folder) to start a new run.")
        elif results_path.exists():
            raise RainError(f"{results_path} exists without a config.json; use another --out.")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(config_path, json.dumps(self.record, indent=2) + "\n")
        done: dict[tuple[int, str], dict] = {}
        if results_path.exists():
            _drop_partial_line(results_path)
            for line in results_path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    r = json.loads(line)
                    done[(r["index"], r["method"])] = r
        return done

    def _append(self, record: dict) -> None:
        """Write one result line with a single append and flush it to disk."""
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        fd = os.open(self.out_dir / "results.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------------------------------ running
    def _prompt(self, index: int) -> str:
        suffix = self.suffixes[index % len(self.suffixes)] if self.suffixes else None
        return self.task.prompt_of(self.rows[index], suffix)

    def _seed(self, index: int) -> int:
        return self.settings.seed * 1_000_003 + index

    def _run_method(self, method: str, index: int, done: dict[tuple[int, str], dict]) -> Outcome:
        prompt = self._prompt(index)
        common = {"seed": self._seed(index), "max_new_tokens": self.max_new_tokens,
                  "prompt_format": self.task.prompt_format}
        if method == "vanilla-greedy":
            return run_plain(self.rain, prompt, sample=False, **common)
        if method == "vanilla-sample":
            return run_plain(self.rain, prompt, sample=True, **common)
        if method in ("rain", "rain-guard"):
            budget = {**self.settings.rain_overrides, "mode": "guard" if method == "rain-guard" else "full"}
            return run_rain(self.rain, prompt, **common, **budget)
        paid_by = BON_BUDGET_OF[method]
        if paid_by in self.methods:
            return run_best_of_n(self.rain, prompt, budget_tokens=done[(index, paid_by)]["tokens"], **common)
        return run_best_of_n(self.rain, prompt, n=self.settings.bon_n, **common)

    def run(self, *, on_result: Callable[[dict], None] | None = None) -> dict[str, Any]:
        """Run every (item, method) not yet in the directory; return the summary (also written to disk)."""
        done = self._prepare_dir()
        self._warm_up()
        todo = [(i, m) for i in range(len(self.rows)) for m in self.methods if (i, m) not in done]
        total = len(self.rows) * len(self.methods)
        with _Progress(total=total, done=total - len(todo), label=f"rain eval {self.task.name}") as progress:
            for index, method in todo:
                progress.describe(f"item {index + 1}/{len(self.rows)} {method}")
                outcome = self._run_method(method, index, done)
                record = self._result(index, method, outcome)
                self._append(record)
                done[(index, method)] = record
                progress.advance(record)
                if on_result is not None:
                    on_result(record)
        return self.summarize(done)

    def summarize(self, done: dict[tuple[int, str], dict]) -> dict[str, Any]:
        records = [r for (i, m), r in sorted(done.items()) if i < len(self.rows) and m in self.methods]
        settings = {**self.record, "n_items": len(self.rows), "higher_is_better": self.task.higher_is_better}
        summary = summarize(records, methods=self.methods, metrics=self.task.metrics, scores=self.task.scores,
                            settings=settings)
        files = write_summary(summary, settings, self.out_dir)
        summary["files"] = {name: str(path) for name, path in files.items()}
        return summary

    def _warm_up(self) -> None:
        """Judge once before measuring, so one-off work (the judge's calibration baseline) is not billed to the
        first item of whichever method runs first."""
        self.rain.judge("Hello", "Hello.", prompt_format=self.task.prompt_format)

    def _result(self, index: int, method: str, outcome: Outcome) -> dict[str, Any]:
        row, prompt = self.rows[index], self._prompt(index)
        self_score = outcome.details.get("chosen_score")
        if self_score is None:
            self_score = float(self.rain.judge(prompt, outcome.output, prompt_format=self.task.prompt_format))
        return {"index": index, "method": method, "id": row.get("source_index", index), "prompt": prompt,
                "output": outcome.output, "finish_reason": outcome.finish_reason,
                "verdicts": self.task.judge(row, prompt, outcome.output), "self_score": self_score,
                "perplexity": continuation_perplexity(self.rain, prompt, outcome.output, self.task.prompt_format),
                "tokens": outcome.tokens, "seconds": round(outcome.seconds, 3), "details": outcome.details}


def run_eval(task: str, *, out: str | os.PathLike | None = None, rain: Any = None, judge: ModelJudge | None = None,
             device: str | None = None, dtype: str | None = None, on_result: Callable[[dict], None] | None = None,
             **settings: Any) -> dict[str, Any]:
    """Evaluate ``task`` (sentiment, harmless, advbench, truthfulqa) and write the run directory ``out``.

    ``rain``: an already-built `Rain` to use instead of loading ``model`` (its evaluator, budget and prompt format
    are then the caller's). Other keywords are `EvalSettings` fields. Returns the summary dict.
    """
    config = EvalSettings(task=task, **settings)
    run = EvalRun(config, out or Path("runs") / f"eval-{task}", rain=rain, judge=judge, device=device, dtype=dtype)
    return run.run(on_result=on_result)


# ------------------------------------------------------------------------------------------ helpers
class _Progress:
    """A rich progress bar on an interactive stderr; one log line per finished result otherwise."""

    def __init__(self, total: int, done: int, label: str) -> None:
        self.total, self.done, self.label = total, done, label
        self.bar = None
        if sys.stderr.isatty() and os.environ.get("RAIN_EVAL_PROGRESS", "1") != "0":
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=Console(stderr=True), transient=False)
        self.quiet = os.environ.get("RAIN_EVAL_PROGRESS") == "0"

    def __enter__(self) -> "_Progress":
        if self.bar is not None:
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total, completed=self.done)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()

    def describe(self, text: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=f"{self.label}: {text}")

    def advance(self, record: dict) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=1)
        elif not self.quiet:
            print(f"[{self.done}/{self.total}] item {record['index']} {record['method']}: "
                  f"{record['tokens']} tokens, {record['seconds']:.1f} s", file=sys.stderr, flush=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _describe_evaluator(evaluator: Any) -> str:
    prompt = getattr(evaluator, "prompt", None)
    if prompt is not None:
        return f"{type(evaluator).__name__}({prompt.name}, soft={getattr(evaluator, 'soft', None)})"
    return type(evaluator).__name__


def _drop_partial_line(path: Path) -> None:
    """Cut a last line that a crash left without its newline (it never finished being written)."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
