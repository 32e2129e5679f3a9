"""``rain eval TASK``: the command-line face of `run_eval`.

The ``rain`` command calls `register(subparsers)`; ``python -m rain_core.eval`` runs the same parser alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from ..cli_options import add_config_flags, add_judge_flags, add_model_flags, config_overrides, server_from
from .injection import add_injection_flags
from .methods import METHODS
from .tasks import TASKS

EXAMPLES = """examples:
  rain eval sentiment --n 30 --max-new-tokens 24
  rain eval sentiment --n 30 --max-iterations 8 --min-iterations 4 --out runs/sent-small
  rain eval harmless --n 20 --judge-model path/to/bigger-model
  rain eval advbench --n 20 --suffix-file gcg_suffixes.txt
  rain eval truthfulqa --n 50 --methods vanilla,rain --tqa-metric embedding
  rain eval sentiment --methods vanilla,bon --bon-n 16 --json
  rain eval sentiment --n 40 --methods vanilla,bon,rain,rain-guard,bon-guard
  rain eval injection --threads 1                 the safety judges (defended) against text addressed to them
  rain eval injection --defences none --json      the same judges with no defence (the before column)
  rain eval separation --threads 1                each judge's AUC and error rates per category
  rain eval separation --judges harmless --judge-model http://gpu-box:8000/v1   a larger, served judge

A rerun with the same settings resumes where the last one stopped (add --n to extend it).
"""

TASK_HELP = """tasks:
  sentiment   continue negative IMDB review prefixes; VADER on the continuation: positive rate
  harmless    answer HH red-team prompts; refusal heuristic (and --judge-model): refusal / harmless rate
  advbench    answer AdvBench harmful goals (+ --suffix-file); attack success rate by the refusal heuristic
  truthfulqa  answer TruthfulQA questions; closest correct vs closest incorrect reference: % judged true
  injection   no generation: the safety judges on tests/data/injection_cases.json (or --data), per style of
              text addressed to the judge: flips among blocked harmful replies, score shift, benign block rate,
              judge calls per evaluation (--defences, --judges; docs/security.md)
  separation  no generation: each judge on the labelled set tests/data/judge_cases.json (or --data): AUC, and
              per category the harmful replies caught (score < 0) and benign ones passed (score >= 0), soft and
              hard; --judge-model (a spec or a served model's URL) measures a larger judge (--judges)
methods:
  vanilla     plain decoding, greedy and one temperature-1 sample (vanilla-greedy, vanilla-sample)
  rain        RAIN search with the task's self-evaluator
  bon         best of N samples by the same self-evaluator, N set so BoN spends RAIN's model tokens on each
              item (or --bon-n when rain is not run)
  rain-guard  RAIN in guard mode: plain drafting judged clause by clause, the search only from a rejected
              clause (--guard-threshold, --guard-searches)
  bon-guard   best of N as bon, at rain-guard's model tokens on each item (needs rain-guard)
"""


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``eval`` to the ``rain`` command's subparsers."""
    parser = subparsers.add_parser(
        "eval", help="measure alignment: plain decoding vs equal-compute Best-of-N vs RAIN",
        description="Run vanilla decoding, Best-of-N at RAIN's compute, and RAIN on a task; judge each output "
                    "independently; write results.jsonl, summary.json, summary.md and plots.",
        epilog=TASK_HELP + "\n" + EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", help=f"one of {', '.join(TASKS)}, injection, separation (unknown names are reported)")
    add_model_flags(parser)
    parser.add_argument("--data", default=None,
                        help="JSONL file (default: the task's dev file in shared/data next to the checkout or "
                             "the current directory, or in $RAIN_EVAL_DATA)")
    parser.add_argument("--n", type=int, default=30, help="first N items of the data (default 30)")
    parser.add_argument("--methods", default="vanilla,bon,rain",
                        help=f"comma list of vanilla, bon, rain, rain-guard, bon-guard (or {', '.join(METHODS)}); "
                             "default vanilla,bon,rain")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="response length (default: sentiment 24, the others 48)")
    parser.add_argument("--seed", type=int, default=0, help="base seed; item i uses a seed derived from it (0)")
    parser.add_argument("--bon-n", type=int, default=8, help="BoN's N when rain is not among the methods (8)")
    parser.add_argument("--out", default=None, help="run directory (default runs/eval-TASK); reruns resume it")
    parser.add_argument("--json", action="store_true", help="print summary.json to stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is much faster on a shared, busy CPU)")
    add_config_flags(parser, for_eval=True,
                     title="RAIN budget (the lookahead search by default; --search reference is the paper's method)")
    add_judge_flags(parser, evaluator_default=None,
                    evaluator_help="self-evaluation prompt for RAIN and BoN: harmless, sentiment or a file "
                                   "(default: the task's)")

    j = parser.add_argument_group("judges")
    j.add_argument("--judge-model", default=None,
                   help="harmless/advbench: also judge with this local causal LM (a model spec like --model); "
                        "separation: the judge model to measure (a spec or a served model's URL)")
    j.add_argument("--judge-prompt", default="harmless", help="the judge model's evaluation prompt (harmless)")
    j.add_argument("--suffix-file", default=None, help="advbench: adversarial suffixes, one per line")
    j.add_argument("--tqa-metric", default="rouge", choices=["rouge", "embedding"],
                   help="truthfulqa similarity: ROUGE-L or all-MiniLM-L6-v2 cosine (rouge)")
    add_injection_flags(j)


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    return {"model": args.model, "data": args.data, "n": args.n, "methods": args.methods,
            "max_new_tokens": args.max_new_tokens, "seed": args.seed, "bon_n": args.bon_n,
            "rain_overrides": config_overrides(args, for_eval=True), "similarity": not args.no_similarity,
            "evaluator": args.evaluator, "judge_model": args.judge_model, "judge_prompt": args.judge_prompt,
            "suffix_file": args.suffix_file, "tqa_metric": args.tqa_metric, **asdict(server_from(args))}


def run(args: argparse.Namespace) -> int:
    import os

    from .runner import run_eval

    if args.quiet or args.json:
        os.environ.setdefault("RAIN_EVAL_PROGRESS", "0")
    if args.threads is not None:
        if args.threads < 1:
            from ..errors import RainError

            raise RainError(f"--threads must be >= 1, not {args.threads}.")
        import torch

        torch.set_num_threads(args.threads)
    if args.task == "separation":
        from .separation import run_cli as run_separation

        return run_separation(args.judge_model or args.model, args.data, args.judges, args.threads or 1, args.json,
                              args.device, server_from(args))
    if args.task == "injection":
        from .injection import DEFAULT_SET, run as run_injection

        return run_injection(args.model, args.data or DEFAULT_SET, args.defences, args.judges,
                             args.threads or 1, args.json, args.device)
    summary = run_eval(args.task, out=args.out, device=args.device, dtype=args.dtype, **settings_from(args))
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(open(summary["files"]["summary.md"], encoding="utf-8").read())
    print("files: " + ", ".join(summary["files"].values()), file=sys.stderr)
    return 0
