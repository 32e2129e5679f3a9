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

``batches`` models the batched rounds (issue 21): a round decodes its rollouts in batches (the greedy answer first in
the first), judges each batch in order until the first response scoring >= Vt, and pays for every decoded rollout.
Per batch schedule it prints the positive rate, Best-of-N's at the same per-item token count, and the wall time
against Best-of-N's under a simple cost model (a batched decode of b rows costs DECODE_S + DECODE_ROW_S * b seconds,
a judgement JUDGE_S, fitted to `rain eval` timings on the 2-core CPU; Best-of-N decodes a pilot and one batch).

    python scripts/stop_rule_offline.py batches pools.jsonl --greedy-run runs/dev-greedy --schedules 8,8 4,8,4 1x16
"""
from __future__ import annotations

import argparse
import json
import random
import time


def make_pool(args: argparse.Namespace) -> None:
    from rain_core.eval.runner import EvalRun, EvalSettings

    run = EvalRun(EvalSettings(task="sentiment", data=args.data, n=args.stop, methods="vanilla-greedy",
                               max_new_tokens=args.max_new_tokens, rain_overrides={"soft": True}), "/tmp/rain-pool-unused")
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


#: The batch schedules' cost model (seconds on the 2-core CPU, one torch thread, SmolLM2-135M, 24 new tokens).
DECODE_S, DECODE_ROW_S, JUDGE_S = 1.25, 0.16, 0.33
#: Model positions one sampled continuation costs (its new tokens); the rest of a candidate's cost is its judgement.
DECODE_TOKENS = 25.0


def _schedule(text: str) -> list[int]:
    """``"4,8,4"`` -> [4, 8, 4]; ``"1x16"`` -> sixteen batches of one."""
    if "x" in text:
        size, count = text.split("x")
        return [int(size)] * int(count)
    return [int(x) for x in text.split(",")]


def _batched_round(cands: list[dict], schedule: list[int], vt: float) -> tuple[dict, float, float]:
    """The response a batched round ends on, its model tokens and its modelled seconds."""
    decoded, judged, tokens, seconds = 0, [], 0.0, 0.0
    for size in schedule:
        batch = cands[decoded:decoded + size]
        decoded += len(batch)
        tokens += DECODE_TOKENS * len(batch)
        seconds += DECODE_S + DECODE_ROW_S * len(batch)
        for cand in batch:
            judged.append(cand)
            tokens += cand["tokens"] - DECODE_TOKENS
            seconds += JUDGE_S
            if cand["score"] >= vt:
                return cand, tokens, seconds
    return _best(judged), tokens, seconds


def batches(args: argparse.Namespace) -> None:
    items = [json.loads(line) for line in open(args.pool, encoding="utf-8")]
    greedy = _greedy_candidates(args.greedy_run)
    items = [item for item in items if item["index"] in greedy]
    rng = random.Random(0)
    print(f"{len(items)} items | schedule | Vt | positive | Best-of-N at the same tokens | mean tokens | wall / BoN's")
    for vt in args.thresholds:
        for text in args.schedules:
            schedule = _schedule(text)
            rule = bon = tokens = wall = bon_wall = 0.0
            for item in items:
                per_candidate = sum(c["tokens"] for c in item["cands"]) / len(item["cands"])
                first = dict(greedy[item["index"]], tokens=item["cands"][0]["tokens"])
                for _ in range(args.repeats):
                    order = [first] + rng.sample(item["cands"], len(item["cands"]))
                    chosen, spent, seconds = _batched_round(order, schedule, vt)
                    k = min(len(item["cands"]), max(1, int(spent // per_candidate)))
                    rule += chosen["positive"]
                    bon += _best(rng.sample(item["cands"], k))["positive"]
                    tokens += spent
                    wall += seconds
                    bon_wall += DECODE_S + DECODE_ROW_S + (DECODE_S + DECODE_ROW_S * (k - 1) if k > 1 else 0) + k * JUDGE_S
            n = len(items) * args.repeats
            print(f"{text} | {vt} | {rule / n:.3f} | {bon / n:.3f} | {tokens / n:.0f} | {wall / bon_wall:.2f}")


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
    b = sub.add_parser("batches", help="batched rounds (greedy first) vs Best-of-N at the same per-item tokens")
    b.add_argument("pool")
    b.add_argument("--greedy-run", required=True, help="a rain eval run with vanilla-greedy on the same items")
    b.add_argument("--schedules", nargs="+", default=["1x16", "8,8", "4,12", "4,8,4", "2,6,8"])
    b.add_argument("--thresholds", type=float, nargs="+", default=[0.2, 0.25])
    b.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    {"pool": make_pool, "analyze": analyze, "batches": batches}[args.command](args)


if __name__ == "__main__":
    main()
