"""The lookahead search: RAIN's commit-and-rewind loop with values the judge can actually judge.

The reference search (search.py) commits 1, 2, 4, then 10 tokens after evaluating clause-length simulations, so its
early commits rest on a few judgments of half-written text, and its visit-count rule follows the model's prior
towards greedy decoding. This strategy keeps RAIN's frame (a tree of token sets over the committed state, simulate →
self-evaluate → back up, commit a child and keep its subtree) and changes what a simulation and a commit are:

- **Simulate to the end of the response.** Every rollout samples (temperature 1, as plain sampling does) from the
  committed state until EOS, a stop string or ``max_new_tokens``, in batches. The judge reads complete responses,
  the same thing Best-of-N's judge reads, instead of a clause.
- **The model's own answer first.** With ``first_rollout = "greedy"`` (the default) the response's first rollout is
  the greedy continuation instead of a sample: the reference search's prior leads it towards greedy decoding, and
  here greedy is simply the first candidate the judge reads. When the judge accepts it (at least
  ``value_threshold``) the response is the model's most likely, most fluent wording at the cost of one rollout;
  when it does not, it stays in the tree as one candidate among the samples that follow.
- **Grow the tree from rollouts.** A rollout becomes a chain of clause nodes (`split_clauses`): each ends at the first
  clause end once it holds ``clause_tokens[0]`` tokens, or at ``clause_tokens[1]`` tokens. Equal clauses share a node.
- **Back up the mean and the peak.** Each node on the path gets the usual visit count and running mean (tree.backup)
  and the best complete value seen through it (tree.record_peak).
- **Commit the clause whose subtree holds the best judged response** (ties: more visits). The search therefore always
  stands on the path of its best complete response so far (the incumbent), and the final text is the best response
  it judged among those consistent with what it committed: never worse, by the judge, than the best sample it saw.
- **Reuse rollouts.** A committed clause keeps its subtree; the next round samples from the new, longer state, so
  its rollouts are shorter and their judgments share a longer prefix with earlier ones (the backend's prefix cache
  reuses both): later candidates cost fewer model tokens than whole samples.
- **Spend the budget where it is needed.** ``max_iterations`` counts the rollouts of the whole response (the
  reference counts per commit): the first round may spend all of it, and each later round gets what is left, but at
  least ``min_iterations`` fresh rollouts. Rollouts are decoded in batches (the backend samples a batch's rows in one
  forward pass per token, as Best-of-N samples its answers): a round's first batch, a pilot, holds a quarter of
  ``parallel_leaves`` (4 of the default 16: the greedy answer and three samples), each later one ``parallel_leaves``
  (the default budget's other 12 in one). A batch is judged in order, and the round stops at the first response
  judged at least ``value_threshold`` (RAIN's stopping rule, applied to complete responses; the rest of that batch is
  not judged). The order is the model's (``judge_order = "likely"``, full mode's default): the greedy answer, then the
  samples by mean log-probability per token, highest first, so of several responses the judge would accept the
  round keeps the most fluent; a batch is decoded as a whole, so the order costs nothing. ``"sampled"`` judges them
  in the order drawn, guard mode's default (both measured: docs/eval.md). A root whose incumbent already scores
  ``value_threshold`` is committed without new rollouts. The small first batch keeps the stopping rule cheap on
  prompts whose first responses are good; the wide later one keeps a hard prompt at two batched decodes, Best-of-N's
  count (measured: docs/eval.md). So an easy prompt costs a few rollouts and the budget goes to the prompts whose
  samples the judge does not like. With ``min_iterations = 0`` a response whose first round finds nothing good
  enough follows the best response of that round.

No clause is checked against greedy decoding, so ``stats.rewinds`` counts every commit of this strategy (the
greedy rollout's clauses too); ``inner_iterations`` counts judged rollouts (the budget counts decoded ones).

Batched rounds changed seeded texts (issue 21): a round's samples are drawn together from one generator, so the
same seed draws other samples than one-at-a-time decoding did; ``parallel_leaves=1`` decodes one at a time again.
The likely-first judging order changed them again where a batch held more than one acceptable response (12 of 140
dev items); ``judge_order="sampled"`` gives the earlier texts.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from .model import RowSpec
from .config import CLAUSE_END_CHARS
from .search import RainSearch
from .tree import Node, backup, record_peak


def _mean_logprob(rollout: Any) -> float:
    """A rollout's log-probability per token under the model (its fluency; the empty rollout ranks last)."""
    return rollout.logprob / len(rollout.tokens) if rollout.tokens else float("-inf")


def split_clauses(tokens: Sequence[int], ends_clause: Callable[[int], bool], *, min_tokens: int,
                  max_tokens: int) -> list[list[int]]:
    """Cut ``tokens`` into clauses: a clause ends at the first clause-ending token once it holds ``min_tokens``
    tokens, or when it reaches ``max_tokens``. The last clause takes whatever is left."""
    clauses: list[list[int]] = []
    current: list[int] = []
    for token in tokens:
        current.append(token)
        if len(current) >= max_tokens or (len(current) >= min_tokens and ends_clause(token)):
            clauses.append(current)
            current = []
    if current:
        clauses.append(current)
    return clauses


class LookaheadSearch(RainSearch):
    """RAIN with complete-response rollouts, clause commits and best-response commit (see the module docstring)."""

    judges_complete_responses = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._clause_ends: dict[int, bool] = {}
        self._decoded = 0  # rollouts decoded for this response (the budget); judged ones are stats.inner_iterations

    def _search_root(self) -> int:
        cfg = self.config
        if self.root.children and self._choose().peak >= cfg.value_threshold:
            return 0  # the incumbent is already good enough: commit its next clause as it stands
        # the budget is the response's: what earlier rounds spent is gone; a later round still gets min_iterations
        budget = max(cfg.max_iterations - self._decoded, cfg.min_iterations, 0 if self.root.children else 1)
        done, size = 0, max(1, cfg.parallel_leaves // 4)  # a pilot batch first, as Best-of-N samples one first
        while done < budget:
            size = min(size, budget - done)
            found = self._rollout_batch(size, greedy_first=cfg.first_rollout == "greedy" and self._decoded == 0)
            done += size
            self._decoded += size
            self._report(self._choose().peak)
            if found:
                break  # RAIN's stopping rule, applied to judged complete responses: a good one has been found
            size = cfg.parallel_leaves
        return done

    def _choose(self) -> Node:
        """The root child on the path of the best judged response (ties: the more visited)."""
        return max(self.root.children, key=lambda c: (c.peak, c.visits))

    def _rollout_batch(self, size: int, greedy_first: bool = False) -> bool:
        """Decode ``size`` complete responses from the root in one batch (the first greedy when ``greedy_first``, the
        rest sampled), then judge them in order, adding each to the tree, until one is judged at least
        ``value_threshold``: RAIN's stopping rule in the batch's order, so the greedy answer, first in the batch,
        still wins when it is good, and the responses after the first good one are not judged. Returns whether a
        good one was found."""
        remaining = self.config.max_new_tokens - len(self.response)
        ids = self.prompt_ids + self.response
        rows = [RowSpec("greedy" if greedy_first and i == 0 else "full", remaining) for i in range(size)]
        rollouts = self.model.rollouts(ids, rows, self.generator, self.guard)
        if self.config.judge_order == "likely":
            # the greedy answer stays first (it is the most likely by construction, and the judge reads it first
            # so an accepted greedy answer costs one judgement); the samples most likely per token come next
            head = rollouts[:1] if greedy_first else []
            rollouts = head + sorted(rollouts[len(head):], key=_mean_logprob, reverse=True)
        for rollout in rollouts:
            self.stats.inner_iterations += 1
            # judged one at a time, as Best-of-N judges: consecutive judgements share the committed prefix in the
            # prefix cache (a batched judgement reads each response once per option order), and judging stops at
            # the first good response
            value = self._evaluate_many([rollout.tokens])[0]
            path = self._insert(rollout.tokens)
            backup(path, value, self.values)
            record_peak(path, value)
            if value >= self.config.value_threshold:
                return True
        return False

    def _insert(self, tokens: list[int]) -> list[Node]:
        """The path (root first) of clause nodes spelling ``tokens`` below the root, created where missing."""
        low, high = self.config.clause_tokens
        node, path, depth_tokens = self.root, [self.root], 0
        for clause in split_clauses(tokens, self._ends_clause, min_tokens=low, max_tokens=high):
            child = next((c for c in node.children if c.tokens == clause), None)
            if child is None:
                child = self._child(node, clause, 0.0, node.depth + 1, depth_tokens)
                node.children.append(child)
                node.expanded = True
            for sibling in node.children:  # prior: the share of rollouts from ``node`` that began with this clause
                sibling.prior = (sibling.forward_visits + (sibling is child)) / (node.forward_visits + 1)
            path.append(child)
            depth_tokens += len(clause)
            node = child
            if child.terminal:
                break
        return path

    def _ends_clause(self, token: int) -> bool:
        """Whether ``token``'s text ends in a clause-ending character (the rule simulations stop at), or it is EOS."""
        known = self._clause_ends.get(token)
        if known is None:
            text = self.model.decode([token])
            known = self._clause_ends[token] = (bool(text) and text[-1] in CLAUSE_END_CHARS) or self.model.is_eos(token)
        return known


#: The search strategies `RainConfig.search` selects.
SEARCHES: dict[str, type[RainSearch]] = {"reference": RainSearch, "lookahead": LookaheadSearch}


def search_class(name: str) -> type[RainSearch]:
    """The strategy class for ``RainConfig.search`` (validated there, so the name is known)."""
    return SEARCHES[name]
