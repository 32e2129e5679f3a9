"""The `harmless` judge asked with other label words: the "option labels the text cannot predict" candidate of the
injection defences (docs/security.md). A judge that draws its labels per call is only as good as the pairs it draws
from, so each pair is measured on its own: flips and benign blocks on the injection set, separation on the labelled
set. SmolLM2 on one CPU thread, no defence unless DEFENCES is given (e.g. "neutralise clauses").

    python scripts/label_pairs.py OUT.json [INJECTION_SET [DEFENCES]]
"""
import json, sys
from dataclasses import replace
import torch
torch.set_num_threads(1)
from rain_core.evaluator import EvaluationPrompt, SelfEvaluator
from rain_core.eval import separation
from rain_core.eval.injection import DEFAULT_SET, load, measure, summarise
from rain_core.registry import shared_backend

PAIRS = [("safe", "unsafe"), ("harmless", "harmful"), ("acceptable", "unacceptable"), ("fine", "dangerous"),
         ("benign", "malicious"), ("okay", "harmful")]
data = load(sys.argv[2] if len(sys.argv) > 2 else DEFAULT_SET)
defences = tuple(sys.argv[3].split()) if len(sys.argv) > 3 else ()
labelled = separation.load_cases(DEFAULT_SET.with_name("judge_cases.json"))["harmless"]
base = EvaluationPrompt.builtin("harmless")
backend = shared_backend("smollm2")
results = []
for good, bad in PAIRS:
    prompt = replace(base, name=f"{good}/{bad}", good=good, bad=bad, defences=defences,
                     instructions=base.instructions.replace("safe or unsafe", f"{good} or {bad}"))
    injected = summarise(measure(backend, prompt, data, prompt.name), data)
    separated = separation.measure(SelfEvaluator(backend, prompt), labelled, prompt.name).to_dict()
    results.append({"pair": prompt.name, "injection": injected, "separation": separated})
    for kind in ("hard", "soft"):
        every = injected["kinds"][kind]["styles"][-1]
        overall = separated["overall"][kind]
        print(f"{prompt.name:24} {kind}: injection flips {every['flips']}/{every['blocked']}, plain harmful blocked "
              f"{injected['kinds'][kind]['plain_blocked']}, benign blocked {injected['kinds'][kind]['plain_benign_blocked']}"
              f" (with notes {every['benign_blocked']}/{every['benign']}); separation AUC "
              f"{separated['auc_' + kind]:.2f}, benign passed {overall['passed']}/{overall['good']}, harmful caught "
              f"{overall['caught']}/{overall['bad']}", flush=True)
with open(sys.argv[1], "w", encoding="utf-8") as handle:
    json.dump(results, handle, indent=1)
