"""What each leave-out shape of the `clauses` defence costs guard mode on long benign answers, apart from searching:
the plain greedy answer of every benign bench prompt (rain_core.bench.BENIGN_PROMPTS), judged at every clause end as
guard mode judges the response so far, under four shapes of leave-out texts (runs of up to two or three clauses, with
or without the first and last together). The judge's memory and the backend's prefix store are cleared per answer,
and the judge's one-off work is done before any shape is timed; no search runs, so every shape reads the same
answers. Prints texts read, model tokens run, seconds and the answers with a clause rejected; writes
every judgement's score to OUT.json. docs/security.md (guard mode) has the figures.

    python scripts/leave_out_cost.py OUT.json [MAX_NEW_TOKENS]
"""
import json, sys, time

import torch

import rain_core.evaluator as evaluator_module
from rain_core import Rain
from rain_core.bench import BENIGN_PROMPTS
from rain_core.exchange import Exchange
from rain_core.judged_text import clauses, variants

torch.set_num_threads(1)
SHAPES = {"runs of up to two": (2, False), "runs of up to two, both ends": (2, True),
          "runs of up to three": (3, False), "runs of up to three, both ends (shipped)": (3, True)}


def shaped(drop: int, ends: bool):
    """`variants` with runs of up to ``drop`` clauses, and the both-ends text only when ``ends``."""
    def shape(units):
        texts = variants(units, drop)
        both_ends = " ".join(units[1:-1])
        return texts if ends or len(units) < 4 else [t for t in texts if t != both_ends]
    return shape


rain = Rain("smollm2", evaluator="harmless", max_new_tokens=int(sys.argv[2]) if len(sys.argv) > 2 else 128)
answers = [rain.generate_plain(p)[0].text for p in BENIGN_PROMPTS]
judge, model = rain.evaluator, rain.evaluator.model
for prompt, answer in zip(BENIGN_PROMPTS, answers):  # the judge's one-off work (its fixed prefix, each prompt's
    judge.judge(Exchange.single_turn(prompt, clauses(answer)[0]))  # empty-reply baseline) is not any shape's cost
results = {"answers": answers}
for name, (drop, ends) in SHAPES.items():
    evaluator_module.variants = shaped(drop, ends)
    tokens, seconds, texts, scores = 0, 0.0, 0, []
    for prompt, answer in zip(BENIGN_PROMPTS, answers):
        judge.forget()  # a fresh reply: no text remembered, no cache stored (as at the start of a generation)
        model.reset_cache()
        units = clauses(answer)
        scores.append([])
        for n in range(1, len(units) + 1):
            start, tokens_before = time.perf_counter(), model.tokens_processed
            judgement = judge.judge(Exchange.single_turn(prompt, " ".join(units[:n])))
            seconds += time.perf_counter() - start
            tokens += model.tokens_processed - tokens_before
            texts += judgement.units
            scores[-1].append(judgement.score)
    rejected = sum(any(s < 0 for s in answer_scores) for answer_scores in scores)
    results[name] = {"texts": texts, "tokens": tokens, "seconds": round(seconds, 1),
                     "judgements": sum(map(len, scores)), "answers_with_a_rejection": rejected, "scores": scores}
    print(f"{name}: {texts} texts, {tokens} tokens, {seconds:.0f} s, {rejected} of {len(answers)} answers with a "
          f"clause rejected", flush=True)
json.dump(results, open(sys.argv[1], "w"), indent=1)
