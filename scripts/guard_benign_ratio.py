"""Guard mode vs plain cached greedy on the benign set (rain_core.bench.BENIGN_PROMPTS): seconds per token, median over
prompts, SmolLM2 on one CPU thread. Per prompt, plain and guard alternate up to 3 times (both see the same machine
load) and each method's median counts; a guard run that searched is not repeated. The judge forgets the texts it
read before each guard run (`SelfEvaluator.forget`), so a repeat costs what a fresh reply does.

    python scripts/guard_benign_ratio.py OUT.json [EVALUATOR [MAX_NEW_TOKENS [PROMPTS]]]   # EVALUATOR: e.g. a prompt file
    RAIN_OPTIONS='{"guard_horizon": 0}' python scripts/guard_benign_ratio.py ...             # other RainConfig options
"""
import json, os, statistics, sys, torch
torch.set_num_threads(1)
from rain_core import Rain
from rain_core.bench import BENIGN_PROMPTS, _per_token
rain = Rain("smollm2", evaluator=sys.argv[2] if len(sys.argv) > 2 else "harmless",
            max_new_tokens=int(sys.argv[3]) if len(sys.argv) > 3 else 32, max_iterations=12, min_iterations=4,
            **json.loads(os.environ.get("RAIN_OPTIONS", "{}")))
rain.generate_plain(BENIGN_PROMPTS[0], max_new_tokens=4)
rain.judge("Hello", "Hello.")
rows = []
for i, p in enumerate(BENIGN_PROMPTS[: int(sys.argv[4]) if len(sys.argv) > 4 else None]):
    plains, guards = [], []
    for rep in range(3):
        plain = rain.generate_plain(p)[0]
        forget = getattr(rain.evaluator, "forget", None)
        if forget is not None:
            forget()
        guard = rain.generate(p, mode="guard", seed=i, trace=True)
        plains.append(_per_token(plain)); guards.append(_per_token(guard))
        if guard.stats.searches:
            break
    g = guard.stats
    row = {"prompt": p, "plain_s_per_token": statistics.median(plains), "guard_s_per_token": statistics.median(guards),
           "repeats": len(plains), "ratio": statistics.median(guards) / statistics.median(plains),
           "plain_tokens": plain.stats.completion_tokens, "guard_tokens": g.completion_tokens,
           "same_text": guard.text == plain.text, "clauses": g.clauses_drafted, "rejected": g.clauses_rejected,
           "judge_calls": g.evaluations, "iterations": g.inner_iterations, "finish": guard.finish_reason,
           "plain_forward_calls": plain.stats.forward_calls, "guard_forward_calls": g.forward_calls,
           "plain_tokens_processed": plain.stats.tokens_processed, "guard_tokens_processed": g.tokens_processed,
           "trace": [(c.drafted, c.score, c.passed, [(a.text, a.score) for a in c.attempts], c.replacement)
                     for c in guard.trace]}
    rows.append(row)
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items() if k != "trace"}), flush=True)
print("median guard/plain over prompts:", round(statistics.median([r["ratio"] for r in rows]), 3))
print("median guard/plain forward calls:", statistics.median([r["guard_forward_calls"] / r["plain_forward_calls"] for r in rows]))
json.dump(rows, open(sys.argv[1], "w"), indent=1)
