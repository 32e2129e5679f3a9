"""RAIN's search: the outer commit loop and the inner select → simulate → evaluate → expand → back-up iteration.

One `RainSearch` runs one generation. It reaches the model only through a `LanguageModel` (model.py), the judge
only through an `Evaluator`, and the sentence encoder only through an `Embedder`; the tree rules live in tree.py.
`run()` yields committed text as it is committed (never text a rewind discarded) and leaves the result on
``self.result``.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterator, Sequence

import torch

from .model import LanguageModel, ResponseGuard, RowSpec, Rollout
from .config import RainConfig
from .embedder import Embedder
from .evaluator import Evaluator, score_all
from .exchange import Exchange, FormattedPrompt
from .results import CandidateTrace, CommitTrace, FinishReason, GenerationResult, SearchStats
from .stops import cut_at_stop, stop_index, visible_text
from .tree import (Node, ValueRange, apply_virtual_loss, backup, fold_embedding, puct_child, remix_root_priors,
                   set_priors, share_with_similar_siblings, should_widen, undo_virtual_loss)

ProgressCallback = Callable[[SearchStats], None]


class Generation:
    """What every runner of one generation holds (the search, guard mode): the model, judge, encoder and config it
    runs with, the prompt, the rules every drawn token obeys, the response so far and its statistics."""

    def __init__(self, *, model: LanguageModel, evaluator: Evaluator, embedder: Embedder | None, config: RainConfig,
                 prompt: FormattedPrompt, prompt_ids: Sequence[int], generator: torch.Generator,
                 on_progress: ProgressCallback | None = None, constraint: Any = None,
                 response: Sequence[int] = ()) -> None:
        self.model = model
        self.evaluator = evaluator
        self.embedder = embedder
        self.config = config
        self.prompt = prompt
        self.prompt_ids = list(prompt_ids)
        self.generator = generator
        self.on_progress = on_progress
        self.constraint = constraint
        # every candidate, simulation and prior is drawn under the same rules (a grammar constraint included)
        self.guard = ResponseGuard.build(len(self.prompt_ids), no_repeat_ngram_size=config.no_repeat_ngram_size,
                                         constraint=constraint)
        self.stops = tuple(config.stop) + tuple(prompt.stop_markers)
        self.response: list[int] = list(response)
        self.stats = SearchStats(prompt_tokens=len(self.prompt_ids))
        self.result: GenerationResult | None = None

    def _account(self, start: float, calls0: int, tokens0: int) -> None:
        """Bring the cost counters up to date: the model's forward calls and tokens since the generation began (at
        ``calls0`` and ``tokens0``) and the wall seconds since ``start``."""
        self.stats.forward_calls = self.model.forward_calls - calls0
        self.stats.tokens_processed = self.model.tokens_processed - tokens0
        self.stats.wall_seconds = time.perf_counter() - start

    def _report(self, value: float) -> None:
        """Record the value the search now stands on and tell the progress callback, if there is one."""
        self.stats.last_value = value
        if self.on_progress is not None:
            self.on_progress(self.stats)


def unseen(visible: str, emitted: str) -> str:
    """What a stream should yield now: the part of ``visible`` past ``emitted`` ('' when there is none, or when
    ``visible`` no longer extends what was emitted)."""
    return visible[len(emitted):] if len(visible) > len(emitted) and visible.startswith(emitted) else ""


class RainSearch(Generation):
    """The state of one RAIN generation (docs/algorithm.md states the method this follows step by step)."""

    #: Whether the values are judgements of complete responses (so a continuation is judged as a whole) or, as here,
    #: of clause-length simulations. Guard mode asks it to decide what a search's replacement is.
    judges_complete_responses = False

    def __init__(self, *, model: LanguageModel, evaluator: Evaluator, embedder: Embedder | None, config: RainConfig,
                 prompt: FormattedPrompt, prompt_ids: Sequence[int], generator: torch.Generator,
                 trace: bool = False, on_progress: ProgressCallback | None = None, constraint: Any = None,
                 response: Sequence[int] = (), stop_when: Callable[[list[int]], bool] | None = None) -> None:
        """``response``: tokens already accepted, which the search continues (guard mode starts a search at a
        rejected clause); they count against ``max_new_tokens`` and are part of the result. ``stop_when(response)``
        is asked after each commit; True ends the search there, with finish reason ``stop`` (as when a caller ends
        a stream early)."""
        super().__init__(model=model, evaluator=evaluator, embedder=embedder, config=config, prompt=prompt,
                         prompt_ids=prompt_ids, generator=generator, on_progress=on_progress, constraint=constraint,
                         response=response)
        self.stop_when = stop_when
        self.root = Node(tokens=[], depth=0)
        self.values = ValueRange()
        self.trace: list[CommitTrace] | None = [] if trace else None
        self._scores: dict[str, float] = {}

    # ------------------------------------------------------------------------------------------ outer loop
    def run(self) -> Iterator[str]:
        """Search, commit, move the root down; yield each committed piece of text."""
        start = time.perf_counter()
        calls0, tokens0 = self.model.forward_calls, self.model.tokens_processed
        emitted = self._visible_text(None)[0]
        finish: FinishReason | None = None
        while finish is None:
            iterations = self._search_root()
            child = self._choose()
            finish = self._commit(child, iterations)
            if finish is None and self.stop_when is not None and self.stop_when(self.response):
                finish = "stop"
            text, final = self._visible_text(finish)
            piece = unseen(text, emitted)
            if piece:
                yield piece
                emitted = text
            self._account(start, calls0, tokens0)
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
        while done < budget:
            done += self._iterate(min(cfg.parallel_leaves, budget - done))
            best = self.root.best_child()
            self._report(best.value)
            if best.forward_visits > cfg.min_visits and best.value > cfg.value_threshold:
                break
        return done

    def _choose(self) -> Node:
        """The root child to commit: the reference commits the most visited one (ties by value)."""
        return self.root.best_child()

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
        self.stats.completion_tokens = len(self.response)
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
        return stop_index(text, self.stops)

    def _cut(self, text: str) -> str:
        return cut_at_stop(text, self.stops)

    def _visible_text(self, finish: FinishReason | None) -> tuple[str, str]:
        """Text safe to show now (see `visible_text`), and the whole text so far."""
        text = self._cut(self.model.decode(self.response))
        return visible_text(text, self.stops, final=finish is not None), text

    # ------------------------------------------------------------------------------------------ inner iteration
    def _iterate(self, leaves: int = 1) -> int:
        """Select leaves (one in the reference search), simulate each to a clause end, self-evaluate, expand the
        leaves, back the values up. Several leaves share each model call. Returns how many leaves ran."""
        chosen = self._select_leaves(leaves)
        self.stats.inner_iterations += len(chosen)
        groups: list[tuple[list[int], list[RowSpec]]] = []
        for path, path_tokens in chosen:
            if not path[-1].terminal:
                rows = self._candidate_rows(path[-1], len(path_tokens)) + [
                    RowSpec("full", self.config.max_simulation_tokens, stop_at_clause=True)]
                groups.append((self.prompt_ids + self.response + path_tokens, rows))
        if len(groups) == 1:
            sampled = [self.model.rollouts(groups[0][0], groups[0][1], self.generator, self.guard)]
        elif hasattr(self.model, "rollouts_many"):
            sampled = self.model.rollouts_many(groups, self.generator, self.guard) if groups else []
        else:
            sampled = [self.model.rollouts(ids, rows, self.generator, self.guard) for ids, rows in groups]
        rollouts: list[list[Rollout]] = []
        simulations: list[list[int]] = []
        for path, _ in chosen:
            rollouts.append([] if path[-1].terminal else sampled.pop(0))
            simulations.append(rollouts[-1].pop().tokens if rollouts[-1] else [])
        values = self._evaluate_many([tokens + sim for (_, tokens), sim in zip(chosen, simulations)])
        for (path, path_tokens), leaf_rollouts, value in zip(chosen, rollouts, values):
            if not path[-1].terminal:
                self._expand(path[-1], self.prompt_ids + self.response + path_tokens, len(path_tokens), leaf_rollouts)
            backup(path, value, self.values)
        self._credit_similar([path for path, _ in chosen], simulations, values)
        return len(chosen)

    def _select_leaves(self, leaves: int) -> list[tuple[list[Node], list[int]]]:
        """``leaves`` selections from the root, each counting a virtual loss on its path so the next one looks
        elsewhere (undone before the real values are backed up). A leaf selected twice is run once."""
        if leaves == 1:
            return [self._select()]
        chosen: list[tuple[list[Node], list[int]]] = []
        pending = []
        try:
            for _ in range(leaves):
                path, tokens = self._select()
                if all(path[-1] is not other[-1] for other, _ in chosen):
                    chosen.append((path, tokens))
                pending.append(apply_virtual_loss(path))
        finally:
            for saved in reversed(pending):
                undo_virtual_loss(saved)
        return chosen

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
    def _evaluate_many(self, new_tokens: list[list[int]]) -> list[float]:
        """Scores of the response extended by each of ``new_tokens``: cached ones reused, the rest judged together
        when the judge can (`score_many`)."""
        responses = [self._cut(self.model.decode(self.response + tokens)) for tokens in new_tokens]
        missing = list(dict.fromkeys(r for r in responses if r not in self._scores))
        self.stats.evaluation_cache_hits += len(responses) - len(missing)
        exchanges = [Exchange(prompt=self.prompt.last_user, response=response, history=self.prompt.history,
                              raw=self.prompt.raw) for response in missing]
        for response, score in zip(missing, score_all(self.evaluator, exchanges)):
            self._scores[response] = score
            self.stats.evaluations += 1
        return [self._scores[response] for response in responses]

    # ------------------------------------------------------------------------------------------ expand
    def _expand(self, leaf: Node, leaf_ids: list[int], path_len: int, rollouts: list[Rollout]) -> None:
        cfg = self.config
        depth = leaf.depth + 1
        if not rollouts:
            # a constraint's masked tokens never become children: the seam leaves them out of the ranking
            ranking = self.model.top_logprobs(leaf_ids, cfg.widen_max_children, self.guard)
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
    def _credit_similar(self, paths: list[list[Node]], simulations: list[list[int]], values: list[float]) -> None:
        """Each node on each path embeds its text through the end of its simulation (one encoder call for all the
        paths); close siblings share the path's value."""
        if self.embedder is None:
            return
        texts: list[str] = []
        for path, simulation in zip(paths, simulations):
            suffix, own = list(simulation), []
            for node in reversed(path[1:]):
                suffix = node.tokens + suffix
                own.append(self.model.decode(suffix))
            texts.extend(reversed(own))
        if not texts:
            return
        embeddings = iter(self.embedder.embed(texts))
        for path, value in zip(paths, values):
            for node in path[1:]:
                embedding = next(embeddings)
                fold_embedding(node, embedding)
                share_with_similar_siblings(node, embedding, value, threshold=self.config.similarity_threshold,
                                            weight=self.config.similarity_weight, values=self.values)
