"""Choose the lookahead search's stopping threshold offline, on dev prefixes only.

RAIN's stopping rule ("search until a value passes Vt") makes the lookahead search's budget adaptive: a round of
complete-response rollouts ends at the first response the judge scores >= Vt. Whether that beats Best-of-N at the same
per-item token count, and for which Vt, can be read off a pool of judged samples without running either method:

    # 32 temperature-1 samples per dev item, each judged by the soft sentiment self-evaluator and scored by VADER
    python scripts/stop_rule_offline.py pool --start 0 --stop 60 --samples 32 --out pools.jsonl
    # expected VADER-positive rate of "sample one at a time, stop at score >= Vt, else keep the best of T" against
    # Best-of-N given the same number of samples on the same item (averaged over random orders of the pool)
    python scripts/stop_rule_offline.py analyze pools.jsonl

It models the first round only (what `--min-iterations 0` runs when a round fails: the best response so far is
followed to the end). With ``--greedy-run RUN`` (a `rain eval` run directory holding ``vanilla-greedy`` results on
the same items, whose ``self_score`` is the same judge's score) it also models the greedy first rollout
(`first_rollout="greedy"`): the greedy answer is the first candidate, then samples until one scores >= Vt.

    python scripts/stop_rule_offline.py analyze pools.jsonl --greedy-run runs/dev-greedy
"""
from __future__ import annotations

import argparse
import json
import random
import time


def make_pool(args: argparse.Namespace) -> None:
    from rain_core.eval.runner import EvalRun, EvalSettings

    run = EvalRun(EvalSettings(task="sentiment", data=args.data, n=args.stop, methods="vanilla-greedy",
                               max_new_tokens=args.max_new_tokens, soft=True), "/tmp/rain-pool-unused")
    rain, task, backend = run.rain, run.task, run.rain.backend
    rain.judge("Hello", "Hello.", prompt_format=task.prompt_format)
    with open(args.out, "a", encoding="utf-8") as out:
        for i in range(args.start, args.stop):
            start, prompt, candidates = time.time(), run._prompt(i), []
            for batch in range(args.samples // 16):
                before = backend.tokens_processed
                samples = rain.generate_plain(prompt, sample=True, num_samples=16, seed=run._seed(i) + 7919 * batch,
                                              max_new_tokens=args.max_new_tokens, prompt_format=task.prompt_format)
                per_sample = (backend.tokens_processed - before - samples[0].stats.prompt_tokens) / len(samples)
                for sample in samples:
                    before = backend.tokens_processed
                    score = float(rain.judge(prompt, sample.text, prompt_format=task.prompt_format))
                    verdict = task.judge(run.rows[i], prompt, sample.text)
                    candidates.append({"text": sample.text, "score": score, "positive": verdict["positive"],
                                       "tokens": per_sample + backend.tokens_processed - before})
            out.write(json.dumps({"index": i, "prompt": prompt, "cands": candidates}) + "\n")
            out.flush()
            print(i, f"{time.time() - start:.1f}s", sum(c["positive"] for c in candidates), "positive", flush=True)


def _best(candidates: list[dict]) -> dict:
    return max(enumerate(candidates), key=lambda ic: (ic[1]["score"], -ic[0]))[1]


def analyze(args: argparse.Namespace) -> None:
    items = [json.loads(line) for line in open(args.pool, encoding="utf-8")]
    pool = [c for item in items for c in item["cands"]]
    print(f"{len(items)} items, {len(pool)} samples, VADER-positive base rate {sum(c['positive'] for c in pool) / len(pool):.3f}")
    for vt in args.thresholds:
        above = [c for c in pool if c["score"] >= vt]
        print(f"score >= {vt}: {len(above) / len(pool):.1%} of samples, {sum(c['positive'] for c in above) / max(1, len(above)):.1%} of them positive")
    greedy = _greedy_candidates(args.greedy_run) if args.greedy_run else {}
    rng = random.Random(0)
    print("T | Vt | stop-rule positive | Best-of-N at the same count | mean samples")
    _simulate(items, args, rng, first=None)
    if greedy:
        print("greedy first rollout: T | Vt | positive | Best-of-N at the same count | mean candidates")
        _simulate(items, args, rng, first=greedy)


def _simulate(items: list[dict], args: argparse.Namespace, rng: random.Random, first: dict[int, dict] | None) -> None:
    """Print, per budget and Vt, the stop rule's expected positive rate (candidates taken in a random order of the
    pool until one scores >= Vt or the budget is spent, best kept) against Best-of-N with as many samples. With
    ``first`` (an item's greedy candidate by index) that candidate is taken before any sample."""
    for budget in args.budgets:
        for vt in args.thresholds:
            rule = bon = count = 0
            for item in items:
                for _ in range(args.repeats):
                    order = iter(rng.sample(item["cands"], len(item["cands"])))
                    taken = [first[item["index"]]] if first else []
                    while len(taken) < budget and not (taken and taken[-1]["score"] >= vt):
                        taken.append(next(order))
                    rule += _best(taken)["positive"]
                    bon += _best(rng.sample(item["cands"], len(taken)))["positive"]
                    count += len(taken)
            n = len(items) * args.repeats
            print(f"{budget} | {vt} | {rule / n:.3f} | {bon / n:.3f} | {count / n:.1f}")


def _greedy_candidates(run_dir: str) -> dict[int, dict]:
    """Each item's greedy answer as a pool candidate: its judged score and VADER verdict from a `rain eval` run."""
    out = {}
    for line in open(f"{run_dir}/results.jsonl", encoding="utf-8"):
        record = json.loads(line)
        if record["method"] == "vanilla-greedy":
            out[record["index"]] = {"score": record["self_score"], "positive": record["verdicts"]["positive"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pool", help="sample and judge a pool per dev item")
    p.add_argument("--data", default=None, help="prefix file (default: the sentiment dev file)")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--stop", type=int, default=60)
    p.add_argument("--samples", type=int, default=32, help="a multiple of 16")
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--out", required=True)
    a = sub.add_parser("analyze", help="stop rule vs Best-of-N at the same per-item count")
    a.add_argument("pool")
    a.add_argument("--budgets", type=int, nargs="+", default=[4, 8, 16])
    a.add_argument("--thresholds", type=float, nargs="+", default=[0.1, 0.15, 0.2, 0.25, 0.3])
    a.add_argument("--repeats", type=int, default=400)
    a.add_argument("--greedy-run", default=None, help="a rain eval run with vanilla-greedy on the same items")
    args = parser.parse_args()
    make_pool(args) if args.command == "pool" else analyze(args)


if __name__ == "__main__":
    main()
