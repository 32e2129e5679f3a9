"""The search tree as plain data, and the pure rules over it: PUCT selection, backup, similarity credit, widening test.

Nothing here knows about models or text; `search.py` wires these rules to the backend and the evaluator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(eq=False)
class Node:
    """A token set appended to its parent's state.

    prior: P(set) normalised among siblings. visits: n, including similarity credit. forward_visits: fn, only
    iterations that passed through this node. value: q, mean backed-up score. embedding: running mean of the
    sentence embeddings of the simulated text from this set on.
    """

    tokens: list[int]
    prior: float = 1.0
    parent: "Node | None" = None
    depth: int = 0
    visits: float = 0.0
    forward_visits: int = 0
    value: float = 0.0
    embedding: torch.Tensor | None = None
    embedding_count: int = 0
    children: list["Node"] = field(default_factory=list)
    expanded: bool = False
    terminal: bool = False
    is_greedy: bool = False
    raw_prior: float = 0.0  # unnormalised probability of the set, kept for widening
    peak: float = float("-inf")  # the best value backed up through this node (the lookahead search commits by it)
    widen_state: Any = None  # what widening needs to add more candidates (next token rank, or None)

    def best_child(self) -> "Node":
        """Most visits, ties broken by higher value: the child the outer loop commits."""
        return max(self.children, key=lambda c: (c.visits, c.value))


@dataclass
class ValueRange:
    """The smallest and largest q seen in the tree (the root starts it at [-1, +1])."""

    low: float = -1.0
    high: float = 1.0

    def see(self, q: float) -> None:
        self.low = min(self.low, q)
        self.high = max(self.high, q)

    def normalise(self, q: float) -> float:
        return (q - self.low) / (self.high - self.low + 1e-5)


def puct_child(node: Node, c_puct: float, values: ValueRange) -> Node:
    """The child maximising normalised q + c_puct * p * sqrt(n_parent) / (1 + n); unvisited children have q̂ = 0."""
    sqrt_n = math.sqrt(node.visits)

    def score(child: Node) -> float:
        q_hat = values.normalise(child.value) if child.visits > 0 else 0.0
        return q_hat + c_puct * child.prior * sqrt_n / (1.0 + child.visits)

    return max(node.children, key=score)


def set_priors(children: list[Node], raw: list[float], root_noise: float = 0.0) -> None:
    """Normalise ``raw`` into the children's priors, optionally mixing in uniform noise (done at the root)."""
    total = sum(raw)
    count = len(children)
    for child, r in zip(children, raw):
        p = r / total if total > 0 else 1.0 / count
        child.prior = (1 - root_noise) * p + root_noise / count


def remix_root_priors(root: Node, root_noise: float) -> None:
    """When a child becomes the root, its children's priors get the root's uniform mix."""
    if root.children and root_noise > 0:
        count = len(root.children)
        for child in root.children:
            child.prior = (1 - root_noise) * child.prior + root_noise / count


def backup(path: list[Node], value: float, values: ValueRange) -> None:
    """Fold ``value`` into the running mean of every node on ``path`` (root first)."""
    for node in path:
        node.visits += 1
        node.forward_visits += 1
        node.value += (value - node.value) / node.visits
        values.see(node.value)


def record_peak(path: list[Node], value: float) -> None:
    """Raise the peak (best value seen through the node) of every node on ``path`` to ``value``."""
    for node in path:
        node.peak = max(node.peak, value)


def fold_embedding(node: Node, embedding: torch.Tensor) -> None:
    """Add ``embedding`` to the node's running mean embedding."""
    node.embedding_count += 1
    if node.embedding is None:
        node.embedding = embedding.clone()
    else:
        node.embedding += (embedding - node.embedding) / node.embedding_count


def share_with_similar_siblings(node: Node, embedding: torch.Tensor, value: float, *, threshold: float,
                                weight: float, values: ValueRange) -> int:
    """Give siblings whose embedding is close to ``embedding`` a ``weight * similarity`` share of ``value``.

    Returns how many siblings were credited. Similar phrasings thus learn from each other's evaluations.
    """
    if node.parent is None:
        return 0
    credited = 0
    for sibling in node.parent.children:
        if sibling is node or sibling.embedding is None:
            continue
        similarity = float(torch.nn.functional.cosine_similarity(sibling.embedding, embedding, dim=0))
        if similarity >= threshold:
            share = weight * similarity
            sibling.value = (sibling.value * sibling.visits + value * share) / (sibling.visits + share)
            sibling.visits += share
            values.see(sibling.value)
            credited += 1
    return credited


def should_widen(node: Node, *, tokens_per_set: int, threshold: float, max_children: int) -> bool:
    """All children embedded, nearly identical (variance norm below threshold × tokens per set), and the best is bad."""
    if not node.children or len(node.children) >= max_children:
        return False
    if any(c.embedding is None for c in node.children):
        return False
    stacked = torch.stack([c.embedding for c in node.children])
    spread = float(torch.linalg.vector_norm(stacked.var(dim=0, unbiased=False)))
    best = max(c.value for c in node.children)
    return spread < threshold * tokens_per_set and best < 0


def tree_size(node: Node) -> int:
    return 1 + sum(tree_size(c) for c in node.children)


def apply_virtual_loss(path: list[Node]) -> list[tuple[Node, float, float]]:
    """Count one pending loss (-1) on every node of ``path``, so that the next selection in the same batch of
    leaves prefers another path. Returns what `undo_virtual_loss` needs to restore the nodes exactly."""
    saved = [(node, node.visits, node.value) for node in path]
    for node in path:
        node.visits += 1
        node.value += (-1.0 - node.value) / node.visits
    return saved


def undo_virtual_loss(saved: list[tuple[Node, float, float]]) -> None:
    """Restore the visits and values `apply_virtual_loss` changed (in reverse, so repeated nodes end as they began)."""
    for node, visits, value in reversed(saved):
        node.visits = visits
        node.value = value
