"""`ServedBackend`: the model seam over an OpenAI-compatible completions server (vLLM; SGLang and others with limits).

Every read the search and the judge make becomes a ``/v1/completions`` request on token ids:
- ``top_logprobs``: one generated token with ``logprobs: k`` (the server's top-k, keyed by token id);
- ``option_logprobs``: all rows in one request (``prompt`` as a list of id lists), one token each, with
  ``logprob_token_ids`` naming the judge's answer tokens so their log-probabilities come back whatever their rank;
  a server without that field falls back to its top-k, where an option outside the top-k gets the k-th value;
- ``rollouts``: rows of the same kind as one ``n``-sample request with a seed drawn from the caller's generator
  (vLLM seeds sample i with ``seed + i``), clause ends as ``stop_token_ids``; kinds that differ (the greedy row
  beside sampled ones) go out together.
Nothing is scheduled here: many requests at once simply become many server requests, and the server's continuous
batching and prefix cache share the work (a judge's few-shot block or a long RAG prompt is read once by the server).

The tokenizer is the served model's, loaded in this process (chat templates, clause ends and the judge's option
tokens need it); at connection it is checked against the server's ``/tokenize`` and refused if they disagree.
What a server cannot do is refused with an error, not skipped: response guards (``no_repeat_ngram_size``, a JSON
schema inside the search) would have to act on every sampled token inside the server.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ContextManager, Iterator, Sequence

import torch

from ...errors import ConfigError, ServerError
from ...model import ResponseGuard, Rollout, RowSpec
from ..sessions import SessionScope
from ..vocabulary import clause_end_ids, end_of_response_ids
from .client import ServerClient

log = logging.getLogger(__name__)

#: The most top log-probabilities the search asks for (the reference search's widening cap).
NEEDED_LOGPROBS = 20
_PROBE_TEXT = "Hello! Tokenizers must agree: 3.14, naïve café, \n\tdone."


@dataclass
class ServedSession:
    """One generation's counters (the model's work done for it)."""

    forward_calls: int = 0
    tokens_processed: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)


class ServedBackend:
    """`LanguageModel` over a served model.

    Args:
        base_url: the server's API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the served model's name (``--served-model-name``); None takes ``prefer`` when the server serves it,
            else the server's only model.
        tokenizer: the served model's tokenizer (a transformers tokenizer object).
        api_key, timeout, retries: passed to the HTTP client (`ServerClient`).
        top_logprobs: the most top log-probabilities this backend will ask for; checked against the server's cap.
    """

    device = torch.device("cpu")  # where sampling seeds are drawn; the model runs on the server
    supports_guards = False

    def __init__(self, base_url: str, *, tokenizer: Any, model: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, retries: int = 2, top_logprobs: int = NEEDED_LOGPROBS,
                 prefer: str | None = None, client: ServerClient | None = None) -> None:
        self.client = client or ServerClient(base_url, api_key=api_key, timeout=timeout, retries=retries)
        try:
            self._connect(tokenizer, model, prefer, top_logprobs)
        except BaseException:
            if client is None:  # a backend that never came up leaves no loop thread behind
                self.client.close()
            raise

    def _connect(self, tokenizer: Any, model: str | None, prefer: str | None, top_logprobs: int) -> None:
        self.base_url = self.client.base_url
        self.tokenizer = tokenizer
        self.served_model, self.context_window = self._find_model(model, prefer)
        self.vocab_size = len(tokenizer)
        self.eos_ids = end_of_response_ids(tokenizer)
        self._clause_set = frozenset(clause_end_ids(tokenizer))
        self.top_k_cap = top_logprobs
        self.lock = threading.RLock()
        self._sessions = SessionScope(f"rain_served_{id(self)}", ServedSession())
        self._option_ids_supported: bool | None = None
        self._check_tokenizer()
        self._check_logprobs_cap(top_logprobs)

    # ------------------------------------------------------------------------------------------ connection checks
    def _find_model(self, model: str | None, prefer: str | None) -> tuple[str, int]:
        name, entry = pick_model(self.client, model, prefer)
        window = entry.get("max_model_len") or getattr(self.tokenizer, "model_max_length", None) or 2048
        return name, int(min(window, 10**7))

    def _check_tokenizer(self) -> None:
        """Refuse a local tokenizer that encodes differently from the server's."""
        local = self.encode(_PROBE_TEXT)
        try:
            remote = self.client.post("//tokenize", {"model": self.served_model, "prompt": _PROBE_TEXT,
                                                      "add_special_tokens": False}).get("tokens")
        except ServerError as exc:
            if "HTTP 404" in str(exc):  # a server without vLLM's /tokenize route: nothing to compare against
                log.warning("%s has no /tokenize route; the local tokenizer of %r is used unchecked.",
                            self.client.root_url, self.served_model)
                return
            raise
        if remote != local:
            raise ServerError(f"The local tokenizer does not match {self.served_model!r} at {self.base_url}: "
                              f"{_PROBE_TEXT!r} encodes as {local[:12]}... here and {remote[:12]}... on the server. "
                              "Load the served model's own tokenizer (tokenizer=, or the model spec it was served "
                              "from).")

    def _check_logprobs_cap(self, needed: int) -> None:
        """Fail now, not mid-search, when the server caps top log-probabilities below what the search asks."""
        try:
            self._complete(self.encode("Hi"), max_tokens=1, logprobs=needed)
        except ServerError as exc:
            if "logprobs" in str(exc).lower():
                raise ServerError(f"{self.base_url} caps top log-probabilities below the {needed} the search needs: "
                                  f"{exc}. Start vLLM with --max-logprobs {needed} or more (or -1).") from None
            raise

    # ------------------------------------------------------------------------------------------ sessions and counters
    @property
    def name(self) -> str:
        return self.served_model

    @contextmanager
    def session(self) -> Iterator[ServedSession]:
        yield ServedSession()

    def using(self, session: ServedSession) -> ContextManager[ServedSession]:
        return self._sessions.using(session)

    def _session(self) -> ServedSession:
        return self._sessions.get()

    @property
    def forward_calls(self) -> int:
        """Model steps for the current session: one per request (its prefill) and one per generated token after the
        first of each sequence."""
        return self._session().forward_calls

    @property
    def tokens_processed(self) -> int:
        """Tokens the server ran for the current session: prompt tokens it did not find in its prefix cache (all of
        them when the server does not report cached tokens) plus generated tokens."""
        return self._session().tokens_processed

    def _count(self, answer: dict[str, Any], sequences: int) -> None:
        usage = answer.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        prompt = int(usage.get("prompt_tokens", 0)) - int(details.get("cached_tokens") or 0)
        generated = int(usage.get("completion_tokens", 0))
        session = self._session()
        with session.lock:
            session.forward_calls += 1 + max(0, generated - sequences)
            session.tokens_processed += prompt + generated

    def reset_cache(self) -> None:
        """Nothing to drop: the server keeps its own prefix cache."""

    def pin(self, ids: Sequence[int]) -> None:
        """Nothing to pin: the server's prefix cache keeps a prefix every request repeats."""

    # ------------------------------------------------------------------------------------------ text
    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def is_eos(self, token: int) -> bool:
        return token in self.eos_ids

    # ------------------------------------------------------------------------------------------ requests
    def _body(self, prompt: Any, **fields: Any) -> dict[str, Any]:
        return {"model": self.served_model, "prompt": prompt, "return_tokens_as_token_ids": True,
                "skip_special_tokens": False, **fields}

    def _complete(self, prompt: Any, **fields: Any) -> dict[str, Any]:
        return self._send([self._body(prompt, **fields)])[0]

    def _send(self, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answers = self.client.post_many("/completions", bodies)
        for body, answer in zip(bodies, answers):
            prompts = body["prompt"] if body["prompt"] and isinstance(body["prompt"][0], list) else [body["prompt"]]
            self._count(answer, len(prompts) * int(body.get("n", 1)))
        return answers

    def _refuse_guard(self, guard: ResponseGuard | None) -> None:
        if guard is not None:
            raise ConfigError(f"A served model ({self.base_url}) cannot apply response guards inside the search "
                              "(no_repeat_ngram_size, a JSON schema): they act on every sampled token in the server. "
                              "Set no_repeat_ngram_size=0; for JSON output use generate_plain(json_schema=...).")

    def top_logprobs(self, ids: Sequence[int], k: int, guard: ResponseGuard | None = None) -> list[tuple[int, float]]:
        self._refuse_guard(guard)
        if k > self.top_k_cap:
            raise ConfigError(f"{k} top log-probabilities asked; this served backend was checked for "
                              f"{self.top_k_cap} (top_logprobs=).")
        answer = self._complete(list(ids), max_tokens=1, temperature=0.0, logprobs=k)
        top = answer["choices"][0]["logprobs"]["top_logprobs"][0]
        ranking = sorted(((_token_id(key), float(value)) for key, value in top.items()), key=lambda kv: -kv[1])
        return ranking[:k]

    def option_logprobs(self, rows: Sequence[Sequence[int]], options: Sequence[int]) -> torch.Tensor:
        options = [int(o) for o in options]
        fields: dict[str, Any] = {"max_tokens": 1, "temperature": 0.0}
        if self._option_ids_supported is not False:
            fields.update(logprobs=1, logprob_token_ids=options)
        else:
            fields.update(logprobs=self.top_k_cap)
        answer = self._complete([list(r) for r in rows], **fields)
        choices = sorted(answer["choices"], key=lambda c: c["index"])
        out = torch.empty(len(rows), len(options))
        for i, choice in enumerate(choices):
            found = _first_position_logprobs(choice)
            if self._option_ids_supported is None:
                self._option_ids_supported = all(o in found for o in options)
                if not self._option_ids_supported:  # the server ignored the field: ask again through its top-k
                    return self.option_logprobs(rows, options)
            floor = min(found.values()) if found else -100.0
            out[i] = torch.tensor([found.get(o, floor) for o in options])
        return out

    def rollouts(self, ids: Sequence[int], rows: Sequence[RowSpec], generator: torch.Generator,
                 guard: ResponseGuard | None = None, keep: bool = False) -> list[Rollout]:
        """Rows of the same kind as one ``n``-sample request, the kinds at once. The seed comes from ``generator``
        (one draw per call), so a seeded search asks the server the same questions every run."""
        return self.rollouts_many([(ids, rows)], generator, guard)[0]

    def rollouts_many(self, groups: Sequence[tuple[Sequence[int], Sequence[RowSpec]]], generator: torch.Generator,
                      guard: ResponseGuard | None = None) -> list[list[Rollout]]:
        """Several prefixes' rows (a level's leaves) in one go: every request of every prefix goes out at once."""
        self._refuse_guard(guard)
        plans = []  # per prefix: its row kinds, each with the rows (indexes) it serves
        bodies: list[dict[str, Any]] = []
        for ids, rows in groups:
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator)) if rows else 0
            kinds: dict[RowSpec, list[int]] = {}
            for i, spec in enumerate(rows):
                kinds.setdefault(spec, []).append(i)
            offset = 0
            for spec, members in kinds.items():
                n = 1 if spec.mode == "greedy" else len(members)  # greedy rows are all the same row
                bodies.append(self._sample_body(ids, spec, n, seed + offset))
                offset += n  # vLLM seeds sample i with seed + i: the kinds' seeds never overlap
            plans.append((len(rows), list(kinds.items())))
        answers = iter(self._send(bodies)) if bodies else iter(())
        out = []
        for count, kinds_of_prefix in plans:
            made: list[Rollout | None] = [None] * count
            for spec, members in kinds_of_prefix:
                choices = sorted(next(answers)["choices"], key=lambda c: c["index"])
                rollouts = [self._rollout(spec, choice) for choice in choices]
                for j, i in enumerate(members):
                    made[i] = rollouts[j % len(rollouts)]
            out.append([r for r in made if r is not None])
        return out

    def _sample_body(self, ids: Sequence[int], spec: RowSpec, n: int, seed: int) -> dict[str, Any]:
        stops = self.eos_ids | (self._clause_set if spec.stop_at_clause else set())
        body = self._body(list(ids), max_tokens=spec.max_tokens, n=n, seed=seed, logprobs=0, return_token_ids=True,
                          temperature=0.0 if spec.mode == "greedy" else 1.0, stop_token_ids=sorted(stops))
        if spec.mode == "top_k":
            body["top_k"] = spec.top_k
        return body

    def _rollout(self, spec: RowSpec, choice: dict[str, Any]) -> Rollout:
        tokens = [int(t) for t in choice.get("token_ids") or []]
        logprobs = (choice.get("logprobs") or {}).get("token_logprobs") or []
        stop = choice.get("stop_reason")
        if choice.get("finish_reason") == "stop" and isinstance(stop, int) and (not tokens or tokens[-1] != stop):
            tokens.append(stop)  # a server that leaves the stop token out of the ids
        logprob = float(sum(lp for lp in logprobs if lp is not None))
        last = tokens[-1] if tokens else None
        if last is not None and last in self.eos_ids:
            finish = "eos"
        elif last is not None and spec.stop_at_clause and last in self._clause_set:
            finish = "clause"
        else:
            finish = "length"
        return Rollout(tokens=tokens, logprob=logprob, finish=finish)

    def greedy(self, ids: Sequence[int], max_tokens: int) -> Rollout:
        return self.rollouts(ids, [RowSpec("greedy", max_tokens)], torch.Generator().manual_seed(0))[0]

    def structured(self, ids: Sequence[int], max_tokens: int, schema: dict[str, Any], *, sample: bool = False,
                   seed: int = 0, n: int = 1) -> list[Rollout]:
        """Continuations the server constrains to ``schema`` (its structured outputs), checked to really parse:
        a server that silently ignores the field would otherwise pass unconstrained text off as JSON."""
        body = self._body(list(ids), max_tokens=max_tokens, n=n, seed=seed, logprobs=0, return_token_ids=True,
                          temperature=1.0 if sample else 0.0, stop_token_ids=sorted(self.eos_ids),
                          structured_outputs={"json": schema})
        answer = self._send([body])[0]
        spec = RowSpec("full" if sample else "greedy", max_tokens)
        return [self._rollout(spec, c) for c in sorted(answer["choices"], key=lambda c: c["index"])]

    def sequence_logprobs(self, ids: Sequence[int], start: int) -> list[float]:
        """Log-probabilities of ``ids[start:]`` given what precedes each (the server echoes the prompt's; not counted
        as the search's work): what fluency measures read."""
        answer = self.client.post("/completions", self._body(list(ids), max_tokens=1, echo=True, logprobs=0))
        values = answer["choices"][0]["logprobs"]["token_logprobs"][start:len(ids)]
        return [float(v) for v in values]

    def close(self) -> None:
        self.client.close()


def pick_model(client: ServerClient, model: str | None, prefer: str | None = None) -> tuple[str, dict[str, Any]]:
    """The served model to use and its ``/models`` entry: ``model`` (which must be served), else ``prefer`` when
    served, else the server's only model."""
    listing = client.get("/models").get("data", [])
    names = [m.get("id") for m in listing]
    if model is None and prefer in names:
        model = prefer
    if model is None:
        if len(names) != 1:
            raise ServerError(f"{client.base_url} serves {names or 'no models'}; name the one to use "
                              "(served_model=...).")
        model = names[0]
    if model not in names:
        raise ServerError(f"{client.base_url} does not serve a model named {model!r}; it serves {names}. Pass the "
                          "server's --served-model-name as the model (or served_model=).")
    return model, listing[names.index(model)]


def _token_id(key: str) -> int:
    """``token_id:123`` (``return_tokens_as_token_ids``) -> 123."""
    if not key.startswith("token_id:"):
        raise ServerError(f"The server returned log-probabilities keyed {key!r}, not by token id: it ignores "
                          "return_tokens_as_token_ids, which the search needs (vLLM supports it).")
    return int(key.split(":", 1)[1])


def _first_position_logprobs(choice: dict[str, Any]) -> dict[int, float]:
    """Token id -> log-probability at a choice's first generated position (top-k and named ids together)."""
    logprobs = choice.get("logprobs") or {}
    top = (logprobs.get("top_logprobs") or [{}])[0] or {}
    return {_token_id(k): float(v) for k, v in top.items()}
