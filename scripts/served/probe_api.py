"""Probe a running vLLM OpenAI-compatible server (see API-FACTS.md). Dev tool, not part of the test suite.

    .venv/bin/python scripts/served/probe_api.py [--url http://127.0.0.1:8011] [--model smollm2] [--local] [SECTION...]

Sections: a b c d e f g h i j (default: all). --local also loads the converted SmolLM2 in float32 with
transformers to compare log-probs / greedy text. Prints the request JSON and the interesting parts of
each reply.
"""

from __future__ import annotations

import argparse
import json
import time

import httpx

ap = argparse.ArgumentParser()
ap.add_argument("--url", default="http://127.0.0.1:8011")
ap.add_argument("--model", default="smollm2")
ap.add_argument("--local", action="store_true")
ap.add_argument("sections", nargs="*")
args = ap.parse_args()
URL, MODEL = args.url.rstrip("/"), args.model
SECTIONS = set(args.sections or "abcdefghij")
client = httpx.Client(timeout=600)


def show(title, obj):
    print(f"--- {title}")
    print(json.dumps(obj, ensure_ascii=False)[:3000])


def post(path, body, quiet=False):
    t = time.perf_counter()
    r = client.post(URL + path, json=body)
    dt = time.perf_counter() - t
    if not quiet:
        show(f"POST {path} {json.dumps(body)[:600]}", {"status": r.status_code, "seconds": round(dt, 3)})
    try:
        return r.status_code, r.json(), dt
    except ValueError:
        return r.status_code, r.text, dt


def tokenize(text, add_special_tokens=False):
    st, js, _ = post("/tokenize", {"model": MODEL, "prompt": text, "add_special_tokens": add_special_tokens}, quiet=True)
    assert st == 200, js
    return js["tokens"]


def comp(**kw):
    body = {"model": MODEL, **kw}
    return post("/v1/completions", body)


_local = {}


def local():
    if not _local:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from rain_core.models import resolve_spec

        path = str(resolve_spec("smollm2")[0])
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        _local.update(tok=tok, model=model, torch=torch, path=path)
    return _local


def local_logprobs(ids):
    L = local()
    torch = L["torch"]
    with torch.no_grad():
        logits = L["model"](torch.tensor([ids])).logits[0, -1].float()
    return torch.log_softmax(logits, -1)


def local_greedy(ids, n):
    L = local()
    torch = L["torch"]
    with torch.no_grad():
        out = L["model"].generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, pad_token_id=2)
    return out[0, len(ids):].tolist()


def chat_ids(user):
    # The server's /tokenize applies the chat template too; use it so the probe needs no local tokenizer.
    st, js, _ = post("/tokenize", {"model": MODEL, "messages": [{"role": "user", "content": user}],
                                   "add_generation_prompt": True}, quiet=True)
    assert st == 200, js
    return js["tokens"]


PROMPT_IDS = tokenize("The capital of France is")

if "a" in SECTIONS:
    print("\n===== a. logprobs shape + comparison")
    st, js, dt = comp(prompt=PROMPT_IDS, max_tokens=1, logprobs=20, return_tokens_as_token_ids=True, temperature=0)
    ch = js["choices"][0]
    show("choice keys", sorted(ch))
    show("logprobs keys", sorted(ch["logprobs"]))
    show("logprobs (top_logprobs truncated)", {**ch["logprobs"], "top_logprobs": [dict(list(d.items())[:5]) for d in ch["logprobs"]["top_logprobs"]]})
    show("len top_logprobs[0]", len(ch["logprobs"]["top_logprobs"][0]))
    if args.local:
        lp = local_logprobs(PROMPT_IDS)
        top = lp.topk(20)
        srv = {int(k.split(":")[1]): v for k, v in ch["logprobs"]["top_logprobs"][0].items()}
        loc = dict(zip(top.indices.tolist(), top.values.tolist()))
        show("local top5", list(loc.items())[:5])
        show("server top5", sorted(srv.items(), key=lambda kv: -kv[1])[:5])
        diffs = [abs(srv[i] - lp[i].item()) for i in srv]
        show("max abs diff over the server's 20 ids / top5", [max(diffs), max(abs(srv[i] - lp[i].item()) for i in list(loc)[:5] if i in srv)])
        show("same top-20 id set / same top-5 order", [set(srv) == set(loc), sorted(srv, key=lambda i: -srv[i])[:5] == list(loc)[:5]])
    # Same prompt as text + echo to see prompt position data.
    st, js, dt = comp(prompt=PROMPT_IDS, max_tokens=1, logprobs=20, temperature=0)
    show("without return_tokens_as_token_ids: top_logprobs[0] keys (first 5)", list(js["choices"][0]["logprobs"]["top_logprobs"][0])[:5])
    show("tokens", js["choices"][0]["logprobs"]["tokens"])

if "b" in SECTIONS:
    print("\n===== b. logprob_token_ids")
    ids = [PROMPT_IDS[0], 7042, 3]
    for lps in (1, 0, 5):
        st, js, dt = comp(prompt=PROMPT_IDS, max_tokens=1, logprobs=lps, logprob_token_ids=ids,
                          return_tokens_as_token_ids=True, temperature=0)
        show(f"logprobs={lps} logprob_token_ids={ids}: status", st)
        show("reply choice", js["choices"][0] if st == 200 else js)
    st, js, dt = comp(prompt=PROMPT_IDS, max_tokens=1, logprob_token_ids=ids, temperature=0)
    show("logprob_token_ids without logprobs", {"status": st, "body": js if st != 200 else js["choices"][0]})
    st, js, dt = comp(prompt=PROMPT_IDS, max_tokens=3, logprobs=1, logprob_token_ids=ids, return_tokens_as_token_ids=True, temperature=0)
    show("max_tokens=3 logprob_token_ids", js["choices"][0]["logprobs"] if st == 200 else js)
    if args.local:
        lp = local_logprobs(PROMPT_IDS)
        show("local logprobs of those ids", {i: lp[i].item() for i in ids})

if "c" in SECTIONS:
    print("\n===== c. batched prompts")
    p2 = [PROMPT_IDS, tokenize("Once upon a time"), tokenize("1, 2, 3,")]
    st, js, dt = comp(prompt=p2, max_tokens=2, temperature=0, return_token_ids=True)
    show("3 prompts n=1", [{k: c.get(k) for k in ("index", "text", "token_ids", "prompt_token_ids", "finish_reason")} for c in js["choices"]])
    st, js, dt = comp(prompt=p2, max_tokens=3, n=3, temperature=1.0, seed=1, return_token_ids=True)
    show("3 prompts n=3 (index, text)", [(c["index"], c["text"], c["prompt_token_ids"][:3]) for c in js["choices"]])
    show("usage", js.get("usage"))

if "d" in SECTIONS:
    print("\n===== d. n samples, seed")
    body = dict(prompt=PROMPT_IDS, n=4, seed=7, temperature=1.0, max_tokens=8, return_token_ids=True, logprobs=0,
                return_tokens_as_token_ids=True)
    runs = []
    for _ in range(2):
        st, js, dt = comp(**body)
        runs.append([(c["index"], c["token_ids"]) for c in js["choices"]])
    show("run1", runs[0])
    show("run2", runs[1])
    show("identical across calls", runs[0] == runs[1])
    show("the 4 samples distinct", len({tuple(t) for _, t in runs[0]}))
    c0 = js["choices"][0]
    show("choice[0] keys", sorted(c0))
    show("choice[0].logprobs with logprobs=0", c0["logprobs"])
    st, js2, dt = comp(**{**body, "seed": 8})
    show("seed=8 differs", [(c["index"], c["token_ids"]) for c in js2["choices"]] != runs[0])
    # Batch of 2 identical prompts with the same seed: do they give the same samples?
    st, js3, dt = comp(**{**body, "n": 1, "prompt": [PROMPT_IDS, PROMPT_IDS]})
    show("seed=7 n=1, same prompt twice in one request -> token_ids", [c["token_ids"] for c in js3["choices"]])
    st, js4, dt = comp(**{**body, "n": 1})
    show("seed=7 n=1 single", [c["token_ids"] for c in js4["choices"]])

if "e" in SECTIONS:
    print("\n===== e. greedy vs local")
    users = ["What is the capital of France?", "Write a haiku about the sea.", "Give me three tips for sleeping better."]
    for u in users:
        ids = chat_ids(u)
        st, js, dt = comp(prompt=ids, max_tokens=24, temperature=0, return_token_ids=True)
        c = js["choices"][0]
        res = {"user": u, "prompt_len": len(ids), "server_text": c["text"], "server_ids": c["token_ids"]}
        if args.local:
            loc = local_greedy(ids, 24)
            res["local_text"] = local()["tok"].decode(loc, skip_special_tokens=True)
            res["ids_equal"] = loc == c["token_ids"]
            res["first_diff"] = next((i for i, (a, b) in enumerate(zip(loc, c["token_ids"])) if a != b), None)
            st, js1, _ = comp(prompt=ids, max_tokens=1, temperature=0, logprobs=20, return_tokens_as_token_ids=True)
            srv = {int(k.split(":")[1]): v for k, v in js1["choices"][0]["logprobs"]["top_logprobs"][0].items()}
            lp = local_logprobs(ids)
            res["first_pos_server_top3"] = sorted(srv.items(), key=lambda kv: -kv[1])[:3]
            res["first_pos_local_top3"] = [(i, round(v, 4)) for v, i in zip(*[t.tolist() for t in lp.topk(3)])]
            res["first_pos_max_abs_diff_top20"] = max(abs(v - lp[i].item()) for i, v in srv.items())
        show("greedy", res)

if "f" in SECTIONS:
    print("\n===== f. stop tokens / EOS")
    ids = chat_ids("What is the capital of France?")
    st, js, dt = comp(prompt=ids, max_tokens=40, temperature=0, return_token_ids=True)
    c = js["choices"][0]
    show("unconstrained", {k: c[k] for k in ("text", "token_ids", "finish_reason", "stop_reason")})
    stop_id = c["token_ids"][3]
    st, js, dt = comp(prompt=ids, max_tokens=40, temperature=0, return_token_ids=True, stop_token_ids=[stop_id])
    c = js["choices"][0]
    show(f"stop_token_ids=[{stop_id}]", {k: c[k] for k in ("text", "token_ids", "finish_reason", "stop_reason")})
    st, js, dt = comp(prompt=ids, max_tokens=40, temperature=0, return_token_ids=True, stop_token_ids=[stop_id],
                      include_stop_str_in_output=True)
    c = js["choices"][0]
    show(f"stop_token_ids=[{stop_id}] include_stop_str_in_output", {k: c[k] for k in ("text", "token_ids", "finish_reason", "stop_reason")})
    st, js, dt = comp(prompt=ids, max_tokens=40, temperature=0, return_token_ids=True, skip_special_tokens=False)
    c = js["choices"][0]
    show("skip_special_tokens=false", {k: c[k] for k in ("text", "token_ids", "finish_reason", "stop_reason")})
    st, js, dt = comp(prompt=ids, max_tokens=3, temperature=0, return_token_ids=True)
    show("max_tokens=3 finish_reason", js["choices"][0]["finish_reason"])
    full = c["text"]
    stop_str = "la femme"
    for inc in (False, True):
        st, js, dt = comp(prompt=ids, max_tokens=40, temperature=0, return_token_ids=True, stop=[stop_str],
                          include_stop_str_in_output=inc)
        c = js["choices"][0]
        show(f"stop string {stop_str!r} include_stop_str_in_output={inc}", {k: c[k] for k in ("text", "token_ids", "finish_reason", "stop_reason")})
    for user in ("Say hello.", "What is 2+2?", "Hi"):
        eids = chat_ids(user)
        for sst in (True, False):
            st, js, dt = comp(prompt=eids, max_tokens=60, temperature=0, return_token_ids=True, skip_special_tokens=sst)
            c = js["choices"][0]
            show(f"EOS? user={user!r} skip_special_tokens={sst}", {k: c[k] for k in ("text", "token_ids", "finish_reason", "stop_reason")})
    # big stop list
    from transformers import AutoTokenizer

    from rain_core.models import resolve_spec

    tok = AutoTokenizer.from_pretrained(str(resolve_spec("smollm2")[0]))
    big = [i for i in range(len(tok)) if tok.decode([i]).endswith((",", ".", "?", ":", ";", "\n"))]
    show("size of the punctuation stop list", len(big))
    for rep in range(2):
        st, js, dt = comp(prompt=ids, max_tokens=40, temperature=0, return_token_ids=True, stop_token_ids=big)
        c = js["choices"][0]
        show(f"big stop list try {rep}", {"status": st, "seconds": round(dt, 3), **{k: c[k] for k in ("text", "token_ids", "finish_reason", "stop_reason")}})
    st, js, dt = comp(prompt=ids, max_tokens=40, temperature=0, return_token_ids=True)
    show("same request without the stop list", {"seconds": round(dt, 3)})
    wide = [i for i in range(len(tok)) if any(ch in tok.decode([i]) for ch in ",.?:;\n")]
    show("ids whose text CONTAINS , . ? : ; or newline", len(wide))
    gen = set(js["choices"][0]["token_ids"])
    two_k = [i for i in range(3, 49152) if i not in gen][:2000]
    for rep in range(2):
        st, js, dt = comp(prompt=ids, max_tokens=40, temperature=0, return_token_ids=True, stop_token_ids=two_k)
        c = js["choices"][0]
        show(f"2000 never-hit stop ids, try {rep}", {"status": st, "seconds": round(dt, 3), "n_tokens": len(c["token_ids"]), "finish_reason": c["finish_reason"]})
    st, js, dt = comp(prompt=ids, max_tokens=40, temperature=0, return_token_ids=True, stop_token_ids=list(range(3, 49152)))
    show("49149 stop ids", {"status": st, "seconds": round(dt, 3), "body": js["choices"][0]["token_ids"] if st == 200 else js})

if "g" in SECTIONS:
    print("\n===== g. top_k, ignore_eos")
    st, js, dt = comp(prompt=PROMPT_IDS, n=4, seed=3, temperature=1.0, top_k=15, max_tokens=6, return_token_ids=True,
                      logprobs=20, return_tokens_as_token_ids=True)
    if st == 200:
        ok = []
        for c in js["choices"]:
            for pos, (t, top) in enumerate(zip(c["token_ids"], c["logprobs"]["top_logprobs"])):
                ok.append(top.get(f"token_id:{t}") is not None and list(sorted(top, key=lambda k: -top[k])).index(f"token_id:{t}") < 15)
        show("top_k=15 n=4: statuses, every sampled token within the top-15 raw logprobs", [st, all(ok), len(ok)])
        show("top_k logprobs are raw (sum exp of top 20 < 1)?", sum(2.718281828 ** v for v in js["choices"][0]["logprobs"]["top_logprobs"][0].values()))
    else:
        show("top_k error", js)
    ids = chat_ids("What is the capital of France?")
    st, js, dt = comp(prompt=ids, max_tokens=40, temperature=0, return_token_ids=True, ignore_eos=True)
    c = js["choices"][0]
    show("ignore_eos=true", {k: c[k] for k in ("text", "token_ids", "finish_reason", "stop_reason")})

if "h" in SECTIONS:
    print("\n===== h. errors + utility endpoints")
    show("wrong model", post("/v1/completions", {"model": "nope", "prompt": PROMPT_IDS, "max_tokens": 1})[:2])
    show("logprobs 60", post("/v1/completions", {"model": MODEL, "prompt": PROMPT_IDS, "max_tokens": 1, "logprobs": 60})[:2])
    show("logprobs 50", post("/v1/completions", {"model": MODEL, "prompt": PROMPT_IDS, "max_tokens": 1, "logprobs": 50}, quiet=True)[0])
    long_ids = [28] * 2100
    show("prompt 2100 ids", post("/v1/completions", {"model": MODEL, "prompt": long_ids, "max_tokens": 1})[:2])
    show("prompt 2040 ids + max_tokens 16", post("/v1/completions", {"model": MODEL, "prompt": [28] * 2040, "max_tokens": 16})[:2])
    show("no model field", post("/v1/completions", {"prompt": PROMPT_IDS, "max_tokens": 1, "temperature": 0})[:2])
    show("token id out of vocab (49152)", post("/v1/completions", {"model": MODEL, "prompt": [49152], "max_tokens": 1})[:2])
    r = client.get(URL + "/v1/models")
    show("GET /v1/models", [r.status_code, r.json()])
    show("/tokenize text", post("/tokenize", {"model": MODEL, "prompt": "Hello world", "add_special_tokens": True})[:2])
    show("/tokenize return_token_strs", post("/tokenize", {"model": MODEL, "prompt": "Hello world", "return_token_strs": True})[:2])
    show("/tokenize messages", post("/tokenize", {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "add_generation_prompt": True})[:2])
    show("/detokenize", post("/detokenize", {"model": MODEL, "tokens": [19556, 905]})[:2])
    r = client.get(URL + "/health")
    show("GET /health", [r.status_code, r.text])
    r = client.get(URL + "/version")
    show("GET /version", [r.status_code, r.text])

if "i" in SECTIONS:
    print("\n===== i. structured outputs")
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    ids = chat_ids("Give me a JSON object describing a person with name and age.")
    import jsonschema

    for label, extra in (("structured_outputs.json", {"structured_outputs": {"json": schema}}),
                         ("response_format json_schema", {"response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}}),
                         ("none", {})):
        st, js, dt = comp(prompt=ids, max_tokens=60, temperature=0, **extra)
        if st != 200:
            show(label, {"status": st, "body": js})
            continue
        text = js["choices"][0]["text"]
        try:
            obj = json.loads(text)
            jsonschema.validate(obj, schema)
            verdict = "parses+valid"
        except Exception as exc:  # noqa: BLE001
            verdict = f"invalid: {type(exc).__name__}: {str(exc)[:100]}"
        show(label, {"status": st, "seconds": round(dt, 2), "text": text, "finish_reason": js["choices"][0]["finish_reason"], "verdict": verdict})
    st, js, dt = comp(prompt=ids, max_tokens=10, temperature=0, structured_outputs={"choice": ["yes", "no"]})
    show("structured_outputs.choice", {"status": st, "text": js["choices"][0]["text"] if st == 200 else js})
    st, js, dt = comp(prompt=ids, max_tokens=10, temperature=0, structured_outputs={"regex": "[0-9]{3}"})
    show("structured_outputs.regex", {"status": st, "text": js["choices"][0]["text"] if st == 200 else js})

if "j" in SECTIONS:
    print("\n===== j. latency (warm)")
    ids = chat_ids("What is the capital of France?")
    for name, body in (("1-token logprobs=20", dict(prompt=ids, max_tokens=1, logprobs=20, temperature=0)),
                       ("24-token greedy", dict(prompt=ids, max_tokens=24, temperature=0, ignore_eos=True)),
                       ("n=8 x 24 tokens sampled", dict(prompt=ids, max_tokens=24, n=8, temperature=1.0, seed=0, ignore_eos=True))):
        times = []
        for _ in range(6):
            st, js, dt = post("/v1/completions", {"model": MODEL, **body}, quiet=True)
            times.append(round(dt, 3))
        show(name, {"status": st, "seconds (6 runs)": times, "min": min(times), "median": sorted(times)[3]})
    import os

    show("load average", os.getloadavg())
