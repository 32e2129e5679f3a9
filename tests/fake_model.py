"""A scripted `LanguageModel` for the pure unit tier: one character per token, a fixed next-token table, no
transformers. The search runs on it exactly as on a real backend, so its rules can be checked against hand-worked
expectations in milliseconds."""

from __future__ import annotations

from typing import Sequence

import torch

from rain_core.model import ResponseGuard, Rollout, RowSpec

VOCAB = list("abcxyz ,.") + ["<eos>"]
EOS = len(VOCAB) - 1
CLAUSE_END = {VOCAB.index(","), VOCAB.index(".")}


class FakeModel:
    """Next-token log-probabilities depend only on the last token: ``table[last]`` (a [vocab] row of weights).

    The default table makes "a" the greedy choice after anything, "b" second and "x" third, with the rest rare; tests
    pass their own table to script other preferences.
    """

    tokenizer = None

    def __init__(self, table: dict[int, list[float]] | None = None) -> None:
        default = [6.0, 4.0, 1.0, 3.0, 0.5, 0.5, 0.2, 0.2, 0.2, 0.1]
        self.table = {i: list(default) for i in range(len(VOCAB))}
        self.table.update(table or {})
        self.forward_calls = 0
        self.tokens_processed = 0

    # text
    def encode(self, text: str) -> list[int]:
        return [VOCAB.index(ch) for ch in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(VOCAB[i] for i in ids if i != EOS)

    def is_eos(self, token: int) -> bool:
        return token == EOS

    # distributions
    def _logprobs(self, ids: Sequence[int]) -> torch.Tensor:
        self.forward_calls += 1
        self.tokens_processed += 1
        weights = torch.tensor(self.table[ids[-1]] if ids else self.table[0])
        return torch.log(weights / weights.sum())

    def top_logprobs(self, ids: Sequence[int], k: int, guard: ResponseGuard | None = None) -> list[tuple[int, float]]:
        top = torch.topk(self._logprobs(ids), min(k, len(self.table[0])))
        return list(zip(top.indices.tolist(), top.values.tolist()))

    def rollouts(self, ids: Sequence[int], rows: Sequence[RowSpec], generator: torch.Generator,
                 guard: ResponseGuard | None = None, keep: bool = False) -> list[Rollout]:
        out = []
        for spec in rows:
            tokens: list[int] = []
            logprob, finish = 0.0, "length"
            while True:
                row = self._logprobs(list(ids) + tokens)
                if spec.mode == "greedy":
                    token = int(torch.argmax(row))
                else:
                    k = min(spec.top_k, row.shape[-1]) if spec.mode == "top_k" else row.shape[-1]
                    top = torch.topk(row, k)
                    pick = torch.multinomial(torch.softmax(top.values, -1), 1, generator=generator)
                    token = int(top.indices[pick])
                tokens.append(token)
                logprob += float(row[token])
                if token == EOS:
                    finish = "eos"
                    break
                if spec.stop_at_clause and token in CLAUSE_END:
                    finish = "clause"
                    break
                if len(tokens) >= spec.max_tokens:
                    break
            out.append(Rollout(tokens=tokens, logprob=logprob, finish=finish))
        return out

    def option_logprobs(self, rows: Sequence[Sequence[int]], options: Sequence[int]) -> torch.Tensor:
        return torch.stack([self._logprobs(r) for r in rows])[:, list(options)]
