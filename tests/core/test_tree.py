"""The pure tree rules on small hand-built trees, against values worked out by hand (docs/algorithm.md's formulas),
and the search driven through the `LanguageModel` seam by a scripted fake model."""

from __future__ import annotations

import math

import pytest
import torch

from rain_core import CallableEvaluator, RainConfig
from rain_core.exchange import FormattedPrompt
from rain_core.search import RainSearch
from rain_core.tree import (Node, ValueRange, backup, puct_child, remix_root_priors, set_priors,
                            share_with_similar_siblings, should_widen)

from fake_model import VOCAB, FakeModel


def _family(*specs: tuple[float, float, float]) -> tuple[Node, list[Node]]:
    """A parent whose children have the given (prior, visits, value)."""
    parent = Node(tokens=[], visits=sum(v for _, v, _ in specs))
    kids = [Node(tokens=[i], prior=p, visits=v, forward_visits=int(v), value=q, parent=parent)
            for i, (p, v, q) in enumerate(specs)]
    parent.children = kids
    return parent, kids


# ------------------------------------------------------------------------------------------ selection
def test_puct_prefers_the_valued_child_over_a_rarely_tried_one():
    # scores: A = (0.5+1)/2 + 2*0.5*2/3 = 1.4167; B = (-1+1)/2 + 2*0.3*2/2 = 0.6; C (unvisited) = 2*0.2*2/1 = 0.8
    parent, (a, b, c) = _family((0.5, 2, 0.5), (0.3, 1, -1.0), (0.2, 0, 0.0))
    parent.visits = 4
    assert puct_child(parent, 2.0, ValueRange()) is a


def test_puct_explores_an_unvisited_child_with_a_high_prior():
    # C's exploration term 2*0.5*2/1 = 2.0 now beats A's 1.4167
    parent, (a, b, c) = _family((0.5, 2, 0.5), (0.3, 1, -1.0), (0.5, 0, 0.0))
    parent.visits = 4
    assert puct_child(parent, 2.0, ValueRange()) is c


def test_puct_normalises_values_by_the_range_seen():
    # with the range narrowed to [-0.2, 0.2], q = 0.1 normalises to 0.75 and q = -0.1 to 0.25
    parent, (a, b) = _family((0.5, 1, 0.1), (0.5, 1, -0.1))
    values = ValueRange(-0.2, 0.2)
    assert values.normalise(0.1) == pytest.approx(0.75, abs=1e-4)
    assert puct_child(parent, 0.1, values) is a


# ------------------------------------------------------------------------------------------ backup and priors
def test_backup_folds_the_value_into_every_mean_on_the_path():
    root = Node(tokens=[])
    a = Node(tokens=[1], parent=root, visits=1, forward_visits=1, value=-0.2)
    b = Node(tokens=[2], parent=a)
    values = ValueRange()
    backup([root, a, b], 0.6, values)
    assert (root.visits, root.value) == (1, pytest.approx(0.6))
    assert (a.visits, a.forward_visits, a.value) == (2, 2, pytest.approx(0.2))  # -0.2 + (0.6 + 0.2) / 2
    assert (b.visits, b.value) == (1, pytest.approx(0.6))
    assert (values.low, values.high) == (-1.0, 1.0)


def test_priors_normalise_and_mix_root_noise():
    kids = [Node(tokens=[i]) for i in range(3)]
    set_priors(kids, [3.0, 1.0, 0.0], root_noise=0.25)
    assert [k.prior for k in kids] == pytest.approx([0.75 * 0.75 + 0.25 / 3, 0.75 * 0.25 + 0.25 / 3, 0.25 / 3])
    assert sum(k.prior for k in kids) == pytest.approx(1.0)
    root = Node(tokens=[], children=kids)
    remix_root_priors(root, 0.25)
    assert sum(k.prior for k in kids) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------ similarity credit
def test_a_close_sibling_gets_a_weighted_share_and_a_far_one_nothing():
    parent, (node, near, far) = _family((0.4, 1, 0.0), (0.3, 2, 0.0), (0.3, 1, 0.5))
    node.embedding = torch.tensor([1.0, 0.0])
    near.embedding = torch.tensor([2.0, 0.0])   # cosine 1.0
    far.embedding = torch.tensor([0.0, 1.0])    # cosine 0.0
    credited = share_with_similar_siblings(node, node.embedding, 1.0, threshold=0.95, weight=0.2,
                                           values=ValueRange())
    assert credited == 1
    assert near.visits == pytest.approx(2.2) and near.value == pytest.approx(0.2 / 2.2)  # (0*2 + 1*0.2) / 2.2
    assert (far.visits, far.value) == (1, 0.5)


# ------------------------------------------------------------------------------------------ widening
def test_widening_needs_similar_children_a_bad_best_and_room():
    parent, kids = _family((0.5, 1, -0.4), (0.5, 1, -0.2))
    for k in kids:
        k.embedding = torch.tensor([1.0, 0.0])
    assert should_widen(parent, tokens_per_set=1, threshold=0.03, max_children=20)
    assert not should_widen(parent, tokens_per_set=1, threshold=0.03, max_children=2)  # no room
    kids[1].value = 0.1
    assert not should_widen(parent, tokens_per_set=1, threshold=0.03, max_children=20)  # the best is good
    kids[1].value = -0.2
    kids[1].embedding = torch.tensor([0.0, 1.0])  # spread: var norm = ||(0.25, 0.25)|| = 0.354 > 0.03
    assert not should_widen(parent, tokens_per_set=1, threshold=0.03, max_children=20)
    kids[1].embedding = None
    assert not should_widen(parent, tokens_per_set=1, threshold=0.03, max_children=20)  # not all embedded


# ------------------------------------------------------------------------------------------ the search on a fake model
def _search(judge, **config) -> RainSearch:
    model = FakeModel()
    prompt = FormattedPrompt("", (), "", "", raw=True, add_special_tokens=False)
    generator = torch.Generator().manual_seed(0)
    cfg = RainConfig(**{"max_iterations": 6, "min_iterations": 3, "max_new_tokens": 4, "num_candidates": 3,
                        "parallel_leaves": 1, **config})
    return RainSearch(model=model, evaluator=CallableEvaluator(judge), embedder=None, config=cfg, prompt=prompt,
                      prompt_ids=[VOCAB.index("c")], generator=generator)


def _run(search: RainSearch) -> str:
    return "".join(search.run())


def test_an_indifferent_judge_lets_the_fake_models_greedy_token_through():
    search = _search(lambda text: 0.0, token_set_lengths=(1,))
    text = _run(search)
    assert text == "aaaa"  # "a" is the greedy token after every token
    assert search.result.stats.rewinds == 0 and search.result.stats.commits == 4


def test_a_judge_against_a_token_makes_the_search_rewind_away_from_it():
    # the judge reads the response through a one-token look-ahead: the share of "a" in it is what it dislikes
    search = _search(lambda text: 1.0 - 2.0 * text.count("a") / max(1, len(text)), token_set_lengths=(1,),
                     max_simulation_tokens=1, max_iterations=12, min_iterations=8)
    text = _run(search)
    assert "a" not in text and len(text) == 4
    assert search.result.stats.rewinds == 4  # every commit overruled the greedy "a"


def test_every_inner_iteration_is_one_evaluation_and_visits_add_up():
    search = _search(lambda text: math.tanh(text.count("b") - text.count("x")), token_set_lengths=(1, 2))
    _run(search)
    s = search.result.stats
    assert s.evaluations + s.evaluation_cache_hits == s.inner_iterations
    root = search.root  # the last committed node: its subtree's forward visits add up

    def check(node: Node) -> None:
        if node.children:
            assert node.forward_visits >= sum(c.forward_visits for c in node.children)
            for c in node.children:
                check(c)

    check(root)
