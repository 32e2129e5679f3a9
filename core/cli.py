"""The ``rain`` command: ``rain generate``, ``rain bench`` and ``rain eval``.

Errors in what the user typed (bad model spec, bad config value, missing package) print one line naming the
problem and exit with status 2; there is no traceback for those.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from typing import Any, Sequence

from .cli_options import add_config_flags, add_judge_flags, add_model_flags, config_from, server_from
from .config import RainConfig
from .errors import RainError

EXAMPLES = """examples:
  rain generate "The movie was" --evaluator sentiment --prompt-format raw --max-new-tokens 16 --seed 0
  rain generate "How do I pick a lock?" --json --trace trace.json
  rain generate "Tell me about rain" --compare
  rain generate "How do I pick a lock?" --mode guard --trace trace.json
  rain bench --json
  rain bench --mode guard --max-iterations 12 --min-iterations 4
  rain eval sentiment --n 30 --max-new-tokens 24
"""


def _progress(enabled: bool) -> Any:
    """A live status line on stderr: iterations, commits, the best child's current value."""
    if not enabled:
        return None, None
    from rich.console import Console
    from rich.status import Status

    status = Status("searching…", console=Console(stderr=True))

    def update(stats: Any) -> None:
        status.update(f"RAIN: {stats.inner_iterations} iterations, {stats.commits} commits, "
                      f"value {stats.last_value:+.2f}, {stats.evaluations} evaluations")

    return status, update


def cmd_generate(args: argparse.Namespace) -> int:
    from .engine import Rain

    config = config_from(args)
    rain = Rain(args.model, evaluator=args.evaluator, config=config,
                similarity=not args.no_similarity, prompt_format=args.prompt_format, device=args.device,
                dtype=args.dtype, **asdict(server_from(args)))
    show = not args.json and not args.quiet and sys.stderr.isatty()
    status, update = _progress(show or args.progress)
    if status:
        status.start()
    try:
        result = rain.generate(args.prompt, trace=bool(args.trace), on_progress=update)
    finally:
        if status:
            status.stop()
    plain = rain.generate_plain(args.prompt)[0] if args.compare else None
    if args.trace:
        with open(args.trace, "w", encoding="utf-8") as handle:
            json.dump([c for c in result.to_dict()["trace"]], handle, indent=2)
    if args.json:
        out = {"text": result.text, "finish_reason": result.finish_reason, "stats": result.stats.to_dict(),
               "model": rain.model_name}
        if plain is not None:
            out["plain"] = {"text": plain.text, "finish_reason": plain.finish_reason, "stats": plain.stats.to_dict()}
        print(json.dumps(out, ensure_ascii=False))
        return 0
    if plain is None:
        print(result.text)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{rain.model_name}: RAIN vs plain greedy", show_lines=True)
        table.add_column("method")
        table.add_column("text")
        table.add_column("seconds", justify="right")
        table.add_row("RAIN" if config.mode == "full" else f"RAIN ({config.mode})", result.text,
                      f"{result.stats.wall_seconds:.1f}")
        table.add_row("greedy", plain.text, f"{plain.stats.wall_seconds:.1f}")
        Console().print(table)
    s = result.stats
    guard = (f"{s.clauses_rejected} of {s.clauses_drafted} clauses rejected, {s.searches} searches, "
             if config.mode == "guard" else "")
    print(f"[{result.finish_reason}] {guard}{s.inner_iterations} iterations, {s.commits} commits, {s.rewinds} rewinds, "
          f"{s.evaluations} evaluations ({s.evaluation_cache_hits} cached), {s.wall_seconds:.1f} s", file=sys.stderr)
    return 0


def _request_counts(text: str) -> tuple[int, ...]:
    """``--concurrency``'s value: comma-separated request counts, each at least 1."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected request counts like 1,4,16, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"request counts must be at least 1, got {text!r}")
    return counts


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    report = run_bench(model=args.model, device=args.device, dtype=args.dtype, server=server_from(args),
                       config=config_from(args, RainConfig(max_new_tokens=32)),
                       evaluator=args.evaluator, similarity=not args.no_similarity,
                       n_prompts=args.prompts, random_init=args.random_init,
                       progress=True, concurrency=args.concurrency)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            if key == "sets":
                for name, figures in value.items():
                    print(f"{name + ' set':>32}:")
                    for figure, number in figures.items():
                        print(f"{figure:>32}: {number}")
            elif key == "concurrency":
                serial = value["one_at_a_time"]
                print(f"{'one at a time':>32}: {serial['tokens_per_s']} tokens/s, {serial['calls_per_token']} "
                      "forwards per token")
                for level in value["levels"]:
                    print(f"{str(level['requests']) + ' requests at once':>32}: {level['tokens_per_s']} tokens/s "
                          f"({level['speedup_vs_one_at_a_time']}x), {level['calls_per_token']} forwards per token")
            elif key != "runs":
                print(f"{key:>32}: {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rain", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description="Rewindable auto-regressive inference: a frozen LM searches, judges itself, and rewinds.")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="generate one aligned response", epilog=EXAMPLES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    gen.add_argument("prompt", help="the user's request (or the text to continue with --prompt-format raw)")
    add_model_flags(gen)
    add_judge_flags(gen)
    gen.add_argument("--prompt-format", default="auto", choices=["auto", "chat", "plain", "raw"],
                     help="auto: the chat template when the model has one")
    gen.add_argument("--json", action="store_true", help="print one JSON object {text, finish_reason, stats}")
    gen.add_argument("--trace", metavar="FILE", help="write each commit's candidates (text, prior, visits, value); with --mode guard, "
                          "each clause: its text, score, and the searches that replaced a rejected one")
    gen.add_argument("--compare", action="store_true", help="also run plain greedy decoding and show both")
    gen.add_argument("--quiet", action="store_true", help="no progress display")
    gen.add_argument("--progress", action="store_true", help="progress display even when stderr is not a terminal")
    add_config_flags(gen)
    gen.set_defaults(func=cmd_generate)

    bench = sub.add_parser("bench", help="time RAIN against plain cached greedy decoding")
    add_model_flags(bench)
    add_judge_flags(bench)
    bench.add_argument("--prompts", type=int, default=None,
                       help="how many of the fixed prompts to run (default 3); with --mode guard, how many of each "
                            "set (default: all, 10 benign and 8 harmful)")
    bench.add_argument("--random-init", metavar="ARCH_DIR", default=None,
                       help="time a randomly initialised model built from this config folder (GPU checks)")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.add_argument("--concurrency", type=_request_counts, default=(), metavar="N,N,...",
                       help="also time this many requests at once on the one model (e.g. 1,4,16): tokens/s and "
                            "forwards per committed token")
    add_config_flags(bench, title="search (the lookahead search by default; --max-new-tokens defaults to 32 here)")
    bench.set_defaults(func=cmd_bench)

    try:
        from .eval.cli import register
    except ImportError:  # the evaluation harness is optional
        register = None
    if register is not None:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if getattr(args, "json", False):  # a script reading stdout gets the error as the JSON it asked for
            print(json.dumps({"error": str(exc), "type": type(exc).__name__}, ensure_ascii=False))
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
