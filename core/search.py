"""RAIN's search: the outer commit loop and the inner select → simulate → evaluate → expand → back-up iteration.

One `RainSearch` runs one generation. It reaches the model only through a `LanguageModel` (backend.py), the judge
only through an `Evaluator`, and the sentence encoder only through an `Embedder`; the tree rules live in tree.py.
`run()` yields committed text as it is committed (never text a rewind discarded) and leaves the result on
``self.result``.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Iterator, Sequence

import torch

from .backend import LanguageModel, ResponseGuard, RowSpec, Rollout
from .config import RainConfig
from .embedder import Embedder
from .evaluator import Evaluator
from .exchange import Exchange, FormattedPrompt
from .results import CandidateTrace, CommitTrace, FinishReason, GenerationResult, SearchStats
from .tree import (Node, ValueRange, backup, fold_embedding, puct_child, remix_root_priors, set_priors,
                   share_with_similar_siblings, should_widen)

ProgressCallback = Callable[[SearchStats], None]


class RainSearch:
    """The state of one RAIN generation (docs/algorithm.md states the method this follows step by step)."""

    def __init__(self, *, model: LanguageModel, evaluator: Evaluator, embedder: Embedder | None, config: RainConfig,
                 prompt: FormattedPrompt, prompt_ids: Sequence[int], generator: torch.Generator,
                 trace: bool = False, on_progress: ProgressCallback | None = None) -> None:
        self.model = model
        self.evaluator = evaluator
        self.embedder = embedder
        self.config = config
        self.prompt = prompt
        self.prompt_ids = list(prompt_ids)
        self.generator = generator
        self.guard = ResponseGuard.no_repeat_ngrams(config.no_repeat_ngram_size, start=len(self.prompt_ids))
        self.on_progress = on_progress
        self.stops = tuple(config.stop) + tuple(prompt.stop_markers)
        self.response: list[int] = []
        self.root = Node(tokens=[], depth=0)
        self.values = ValueRange()
        self.stats = SearchStats(prompt_tokens=len(self.prompt_ids))
        self.trace: list[CommitTrace] | None = [] if trace else None
        self.result: GenerationResult | None = None
        self._scores: dict[str, float] = {}

    # ------------------------------------------------------------------------------------------ outer loop
    def run(self) -> Iterator[str]:
        """Search, commit, move the root down; yield each committed piece of text."""
        start = time.perf_counter()
        calls0, tokens0 = self.model.forward_calls, self.model.tokens_processed
        emitted = ""
        finish: FinishReason | None = None
        while finish is None:
            iterations = self._search_root()
            child = self.root.best_child()
            finish = self._commit(child, iterations)
            text, final = self._visible_text(finish)
            if len(text) > len(emitted) and text.startswith(emitted):
                yield text[len(emitted):]
                emitted = text
            self.stats.forward_calls = self.model.forward_calls - calls0
            self.stats.tokens_processed = self.model.tokens_processed - tokens0
            self.stats.wall_seconds = time.perf_counter() - start
        self.stats.completion_tokens = len(self.response)
        self.result = GenerationResult(text=final, token_ids=list(self.response), finish_reason=finish,
                                       stats=self.stats, trace=self.trace)

    def stopped_early(self) -> GenerationResult:
        """The result of a generation its caller ends after a commit (finish reason ``stop``): what was committed
        and what it cost so far."""
        self.stats.completion_tokens = len(self.response)
        return GenerationResult(text=self._visible_text(None)[1], token_ids=list(self.response), finish_reason="stop",
                                stats=self.stats, trace=self.trace)

    def _search_root(self) -> int:
        """Run the inner iterations for the current root; stop early once its best child is good and well visited."""
        cfg = self.config
        budget = max(cfg.max_iterations - self.root.forward_visits, cfg.min_iterations)
        if not self.root.children:
            budget = max(budget, 1)
        done = 0
        for _ in range(budget):
            self._iterate()
            done += 1
            best = self.root.best_child()
            self.stats.last_value = best.value
            if self.on_progress is not None:
                self.on_progress(self.stats)
            if best.forward_visits > cfg.min_visits and best.value > cfg.value_threshold:
                break
        return done

    def _commit(self, child: Node, iterations: int) -> FinishReason | None:
        """Append the chosen token set to the response, make it the root, and say whether the response ended."""
        self.stats.commits += 1
        self.stats.rewinds += 0 if child.is_greedy else 1
        if self.trace is not None:
            self.trace.append(CommitTrace(
                index=self.stats.commits, committed_text=self.model.decode(child.tokens), iterations=iterations,
                candidates=[CandidateTrace(text=self.model.decode(c.tokens), prior=c.prior, visits=c.visits,
                                           value=c.value, greedy=c.is_greedy, chosen=c is child)
                            for c in self.root.children]))
        tokens = list(child.tokens)
        ended_by_eos = bool(tokens) and self.model.is_eos(tokens[-1])
        if ended_by_eos:
            tokens.pop()
        self.response.extend(tokens)
        child.parent = None
        self.root = child
        remix_root_priors(child, self.config.root_noise)
        if self._stop_index(self.model.decode(self.response)) is not None:
            return "stop"
        if ended_by_eos:
            return "eos"
        if len(self.response) >= self.config.max_new_tokens:
            return "length"
        return None

    # ------------------------------------------------------------------------------------------ text helpers
    def _stop_index(self, text: str) -> int | None:
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        return min(hits) if hits else None

    def _cut(self, text: str) -> str:
        index = self._stop_index(text)
        return text if index is None else text[:index]

    def _visible_text(self, finish: FinishReason | None) -> tuple[str, str]:
        """Text safe to show now: while running, hold back a tail that may still become a stop string or a
        half-decoded character."""
        text = self._cut(self.model.decode(self.response))
        if finish is not None:
            return text, text
        hold = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:k]):
                    hold = max(hold, k)
                    break
        visible = text[: len(text) - hold] if hold else text
        return visible.rstrip("\ufffd"), text

    # ------------------------------------------------------------------------------------------ inner iteration
    def _iterate(self) -> None:
        """Select a leaf, simulate to a clause end, self-evaluate, expand the leaf, back the value up."""
        self.stats.inner_iterations += 1
        path, path_tokens = self._select()
        leaf = path[-1]
        leaf_ids = self.prompt_ids + self.response + path_tokens
        rollouts: list[Rollout] = []
        if leaf.terminal:
            simulation: list[int] = []
        else:
            rows = self._candidate_rows(leaf, len(path_tokens)) + [
                RowSpec("full", self.config.max_simulation_tokens, stop_at_clause=True)]
            rollouts = self.model.rollouts(leaf_ids, rows, self.generator, self.guard)
            simulation = rollouts.pop().tokens
        value = self._evaluate(path_tokens + simulation)
        if not leaf.terminal:
            self._expand(leaf, leaf_ids, len(path_tokens), rollouts)
        backup(path, value, self.values)
        self._credit_similar(path, simulation, value)

    def _select(self) -> tuple[list[Node], list[int]]:
        node, path, tokens = self.root, [self.root], []
        while node.children:
            self._maybe_widen(node, tokens)
            node = puct_child(node, self.config.c_puct, self.values)
            path.append(node)
            tokens = tokens + node.tokens
        return path, tokens

    def _remaining(self, path_len: int) -> int:
        return self.config.max_new_tokens - len(self.response) - path_len

    def _candidate_rows(self, leaf: Node, path_len: int) -> list[RowSpec]:
        length = min(self.config.tokens_per_set(leaf.depth), self._remaining(path_len))
        if length <= 1:
            return []  # one-token children come from the leaf's next-token distribution
        k = self.config.candidate_top_k
        return [RowSpec("greedy", length)] + [RowSpec("top_k", length, top_k=k)] * (self.config.num_candidates - 1)

    # ------------------------------------------------------------------------------------------ evaluate
    def _evaluate(self, new_tokens: list[int]) -> float:
        response = self._cut(self.model.decode(self.response + new_tokens))
        if response in self._scores:
            self.stats.evaluation_cache_hits += 1
            return self._scores[response]
        exchange = Exchange(prompt=self.prompt.last_user, response=response, history=self.prompt.history,
                            raw=self.prompt.raw)
        value = float(self.evaluator.score(exchange))
        self.stats.evaluations += 1
        self._scores[response] = value
        return value

    # ------------------------------------------------------------------------------------------ expand
    def _expand(self, leaf: Node, leaf_ids: list[int], path_len: int, rollouts: list[Rollout]) -> None:
        cfg = self.config
        depth = leaf.depth + 1
        if not rollouts:
            logprobs = self.model.next_token_logprobs(leaf_ids, self.guard)
            top = torch.topk(logprobs, min(cfg.widen_max_children, logprobs.shape[-1]))
            ranking = list(zip(top.indices.tolist(), top.values.tolist()))
            children = [self._child(leaf, [tok], math.exp(lp), depth, path_len) for tok, lp in ranking[: cfg.num_candidates]]
            children[0].is_greedy = True
            leaf.widen_state = ranking
        else:
            children, seen = [], set()
            for rollout in rollouts:
                key = tuple(rollout.tokens)
                if key in seen:
                    continue
                seen.add(key)
                children.append(self._child(leaf, rollout.tokens, math.exp(rollout.logprob), depth, path_len))
            children[0].is_greedy = True
            sampled = [c.raw_prior for c in children[1:]]
            if sampled:
                children[0].raw_prior = min(max(children[0].raw_prior, max(sampled) + min(sampled)), sum(sampled))
        leaf.children = children
        leaf.expanded = True
        set_priors(children, [c.raw_prior for c in children], cfg.root_noise if leaf is self.root else 0.0)

    def _child(self, parent: Node, tokens: list[int], raw_prior: float, depth: int, path_len: int) -> Node:
        child = Node(tokens=list(tokens), parent=parent, depth=depth, raw_prior=raw_prior)
        upto = path_len + len(tokens)
        child.terminal = (
            self.model.is_eos(tokens[-1])
            or self._remaining(upto) <= 0
            or (bool(self.stops) and self._stop_index(self.model.decode(self.response + self._tokens_to(parent) + tokens)) is not None)
        )
        return child

    def _tokens_to(self, node: Node) -> list[int]:
        """Tokens from the root (exclusive) down to ``node`` (inclusive)."""
        chain: list[list[int]] = []
        while node is not None and node is not self.root:
            chain.append(node.tokens)
            node = node.parent
        return [t for part in reversed(chain) for t in part]

    # ------------------------------------------------------------------------------------------ widen
    def _maybe_widen(self, node: Node, tokens_to_node: list[int]) -> None:
        cfg = self.config
        if self.embedder is None or not should_widen(node, tokens_per_set=cfg.tokens_per_set(node.depth),
                                                     threshold=cfg.widen_threshold, max_children=cfg.widen_max_children):
            return
        existing = {tuple(c.tokens) for c in node.children}
        new: Node | None = None
        if isinstance(node.widen_state, list):  # one-token children: next most probable token
            for token, logprob in node.widen_state:
                if (token,) not in existing:
                    new = self._child(node, [token], math.exp(logprob), node.depth + 1, len(tokens_to_node))
                    break
        else:
            ids = self.prompt_ids + self.response + tokens_to_node
            length = min(cfg.tokens_per_set(node.depth), self._remaining(len(tokens_to_node)))
            for rollout in self.model.rollouts(ids, [RowSpec("top_k", length, top_k=cfg.candidate_top_k)] * 2,
                                               self.generator, self.guard):
                if tuple(rollout.tokens) not in existing:
                    new = self._child(node, rollout.tokens, math.exp(rollout.logprob), node.depth + 1,
                                      len(tokens_to_node))
                    break
        if new is None:
            return
        total = sum(c.raw_prior for c in node.children) or 1.0
        new.prior = new.raw_prior / total
        node.children.append(new)
        self.stats.widenings += 1

    # ------------------------------------------------------------------------------------------ similarity
    def _credit_similar(self, path: list[Node], simulation: list[int], value: float) -> None:
        """Each node on the path embeds its text through the end of the simulation; close siblings share the value."""
        if self.embedder is None or len(path) < 2:
            return
        texts, suffix = [], list(simulation)
        for node in reversed(path[1:]):
            suffix = node.tokens + suffix
            texts.append(self.model.decode(suffix))
        embeddings = self.embedder.embed(list(reversed(texts)))
        for node, embedding in zip(path[1:], embeddings):
            fold_embedding(node, embedding)
            share_with_similar_siblings(node, embedding, value, threshold=self.config.similarity_threshold,
                                        weight=self.config.similarity_weight, values=self.values)
