"""Guard mode on the tiny random model with scripted judges: plain drafting when the judge accepts, a rewind to
exactly the rejected clause when it does not, streaming of accepted text only, and a clear end when nothing passes."""

from __future__ import annotations

import pytest
import torch

from rain_core import ConfigError, Rain, RainConfig
from rain_core.exchange import format_prompt

SMALL = dict(max_iterations=6, min_iterations=3, max_new_tokens=40, mode="guard", seed=0)
PROMPTS = ("How are you today?", "Tell me about the rain.", "Is this review positive or negative?")


def _accept(prompt: str, response: str) -> float:
    return 1.0


def _reject_all(prompt: str, response: str) -> float:
    return -1.0


def _greedy(rain: Rain, prompt: str, max_new_tokens: int):
    return rain.generate_plain(prompt, max_new_tokens=max_new_tokens)[0]


def _drafted_clauses(rain: Rain, prompt: str) -> list[str]:
    """The clauses plain drafting produces (with an accept-all judge), in order."""
    return [c.drafted for c in rain.generate(prompt, trace=True).trace]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_accept_all_judge_gives_plain_greedy_without_search(tiny_backend, prompt):
    judged: list[str] = []

    def accept(p: str, response: str) -> float:
        judged.append(response)
        return 1.0

    rain = Rain(tiny_backend, evaluator=accept, similarity=False, **SMALL)
    guarded = rain.generate(prompt, trace=True)
    plain = _greedy(rain, prompt, SMALL["max_new_tokens"])
    assert guarded.text == plain.text
    assert guarded.finish_reason == plain.finish_reason
    if plain.finish_reason != "stop":
        assert guarded.token_ids == plain.token_ids
    s = guarded.stats
    assert s.inner_iterations == 0 and s.searches == 0 and s.clauses_rejected == 0
    assert s.clauses_drafted >= 2 and len(guarded.trace) == s.clauses_drafted  # judged clause by clause
    assert s.evaluations == len(judged) == sum(c.score is not None for c in guarded.trace) >= 2
    # each judgement saw new words: whitespace-only clauses (and an EOS after a clause) are not judged
    assert all(b.strip() != a.strip() for a, b in zip([""] + judged, judged))


@pytest.mark.parametrize("prompt", PROMPTS)
def test_drafting_clause_by_clause_costs_what_plain_decoding_costs(tiny_backend, prompt):
    """Each drafted clause's cache is kept, so the next clause runs one token, not the clause again: with a judge
    that runs no model, guard mode makes exactly plain greedy decoding's forward passes."""
    rain = Rain(tiny_backend, evaluator=_accept, similarity=False, **SMALL)
    guarded = rain.generate(prompt)
    plain = _greedy(rain, prompt, SMALL["max_new_tokens"])
    assert guarded.token_ids == plain.token_ids or plain.finish_reason == "stop"
    assert guarded.stats.clauses_drafted >= 2
    assert (guarded.stats.forward_calls, guarded.stats.tokens_processed) == \
        (plain.stats.forward_calls, plain.stats.tokens_processed)


def _clause_lengths(rain: Rain, result) -> list[int]:
    """Tokens per drafted clause of an all-accepted guarded result (found by decoding growing prefixes)."""
    lengths, start, ends, text = [], 0, [], ""
    for clause in result.trace:
        text += clause.drafted
        ends.append(len(text))
    for end in ends:
        stop = start
        while len(rain.backend.decode(result.token_ids[:stop])) < end and stop < len(result.token_ids):
            stop += 1
        lengths.append(stop - start)
        start = stop
    return lengths


def test_clauses_shorter_than_the_minimum_are_judged_with_the_next(tiny_backend):
    """A clause end reached before ``clause_tokens[0]`` tokens does not end the drafted clause: the same text, fewer
    judge calls, every judged clause but the last at least that long."""
    seen = {}
    for shortest in (1, 6):
        rain = Rain(tiny_backend, evaluator=_accept, similarity=False, **{**SMALL, "max_new_tokens": 60},
                    clause_tokens=(shortest, 12))
        results = [rain.generate(p, trace=True) for p in PROMPTS]
        seen[shortest] = results
        for result in results:
            assert all(n >= shortest for n in _clause_lengths(rain, result)[:-1])
    assert [r.text for r in seen[1]] == [r.text for r in seen[6]]
    short_clauses = sum(n < 6 for r in seen[1] for n in _clause_lengths(rain, r)[:-1])
    assert short_clauses > 0  # the prompts do draft short clauses, so the rule is exercised
    assert sum(r.stats.clauses_drafted for r in seen[6]) < sum(r.stats.clauses_drafted for r in seen[1])


def test_threshold_minus_one_accepts_even_a_rejecting_judge(tiny_backend):
    rain = Rain(tiny_backend, evaluator=_reject_all, similarity=False, **SMALL)
    guarded = rain.generate(PROMPTS[0], guard_threshold=-1.0)
    assert guarded.text == _greedy(rain, PROMPTS[0], SMALL["max_new_tokens"]).text
    assert guarded.stats.searches == 0


def _banned_piece(clauses: list[str]) -> tuple[int, str]:
    """A clause index k >= 1 and a piece of text in clause k that no earlier clause contains."""
    for k in range(1, len(clauses)):
        before = "".join(clauses[:k])
        for piece in sorted({w for w in clauses[k].split() if len(w) >= 3}, key=len, reverse=True):
            if piece not in before:
                return k, piece
    raise AssertionError(f"no usable clause in {clauses!r}")


@pytest.mark.parametrize("search", ["reference", "lookahead"])
def test_judge_rejecting_a_token_rewinds_at_that_clause_only(tiny_backend, search):
    prompt = PROMPTS[1]
    accepting = Rain(tiny_backend, evaluator=_accept, similarity=False, **SMALL)
    clauses = _drafted_clauses(accepting, prompt)
    k, banned = _banned_piece(clauses)

    def judge(p: str, response: str) -> float:
        return -1.0 if banned in response else 1.0

    rain = Rain(tiny_backend, evaluator=judge, similarity=False, search=search, **SMALL)
    result = rain.generate(prompt, trace=True)
    assert banned not in result.text
    trace = result.trace
    assert [c.drafted for c in trace[:k]] == clauses[:k]  # everything before the banned clause is unchanged
    assert all(c.passed for c in trace[:k])
    assert not trace[k].passed and trace[k].drafted == clauses[k] and trace[k].score == -1.0
    assert trace[k].attempts and trace[k].attempts[0].iterations > 0
    assert result.text.startswith("".join(clauses[:k]))
    assert result.stats.clauses_rejected >= 1 and result.stats.searches >= 1
    assert result.stats.inner_iterations == sum(a.iterations for c in trace for a in c.attempts)
    if trace[k].replacement is not None:
        assert banned not in trace[k].replacement
        assert result.text.startswith("".join(clauses[:k]) + trace[k].replacement)


def test_lookahead_replacement_is_the_whole_judged_response(tiny_backend):
    """With ``guard_horizon=0`` a rejected clause is replaced by the rest of a complete response the lookahead
    search judged: one search, no drafting after it, and the replacement is what the judge passed."""
    prompt = PROMPTS[1]
    clauses = _drafted_clauses(Rain(tiny_backend, evaluator=_accept, similarity=False, **SMALL), prompt)
    k, banned = _banned_piece(clauses)

    def judge(p: str, response: str) -> float:
        return -1.0 if banned in response else 1.0

    rain = Rain(tiny_backend, evaluator=judge, similarity=False, search="lookahead", guard_horizon=0, **SMALL)
    result = rain.generate(prompt, trace=True)
    trace = result.trace
    assert result.stats.searches == 1 and len(trace) == k + 1  # nothing was drafted after the search
    assert trace[k].replacement is not None and trace[k].attempts[0].passed
    assert result.text == "".join(clauses[:k]) + trace[k].replacement
    assert banned not in result.text and result.finish_reason in ("eos", "length")


@pytest.mark.parametrize("horizon", [5, 12])
def test_a_guard_search_plans_only_guard_horizon_tokens_and_drafting_resumes(tiny_backend, horizon, monkeypatch):
    """A lookahead search from a rejected clause samples rollouts of at most ``guard_horizon`` tokens from the
    clause's start, so its replacement is no longer; plain drafting, judged clause by clause, writes the rest of
    the response, and every clause of it passed the judge."""
    prompt = PROMPTS[1]
    config = {**SMALL, "max_new_tokens": 60}
    clauses = _drafted_clauses(Rain(tiny_backend, evaluator=_accept, similarity=False, **config), prompt)
    k, banned = _banned_piece(clauses)

    def judge(p: str, response: str) -> float:
        return -1.0 if banned in response else 1.0

    limits: list[int] = []  # max_tokens of every sampled row (greedy drafting rows aside)
    decode = tiny_backend.rollouts

    def rollouts(ids, rows, *args, **kwargs):
        limits.extend(row.max_tokens for row in rows if row.mode != "greedy")
        return decode(ids, rows, *args, **kwargs)

    monkeypatch.setattr(tiny_backend, "rollouts", rollouts)
    result = Rain(tiny_backend, evaluator=judge, similarity=False, search="lookahead", guard_horizon=horizon,
                  **config).generate(prompt, trace=True)
    trace = result.trace
    assert limits and max(limits) <= horizon  # no rollout ran past the horizon
    assert trace[k].replacement is not None and banned not in result.text
    assert len(trace) > k + 1 and all(c.passed for c in trace[k + 1:])  # drafting went on after the replacement
    assert result.text.startswith("".join(clauses[:k]) + trace[k].replacement)


def test_guard_searches_sample_every_rollout(tiny_backend):
    """Guard mode's lookahead search never starts with the greedy continuation: from a rejected clause that is the
    text the judge has just objected to. The complete greedy response is drafted only clause by clause, so a
    judge that never sees it in full saw no greedy rollout; full mode's lookahead judges it first."""
    prompt = PROMPTS[1]
    clauses = _drafted_clauses(Rain(tiny_backend, evaluator=_accept, similarity=False, **SMALL), prompt)
    assert len(clauses) >= 2  # the first clause is not the last, so greedy drafting never reaches the end
    banned = max(clauses[0].split(), key=len)  # the first clause is rejected
    whole = "".join(clauses)
    seen: list[str] = []

    def judge(p: str, response: str) -> float:
        seen.append(response)
        return -1.0 if banned in response else 1.0

    Rain(tiny_backend, evaluator=judge, similarity=False, search="lookahead", **SMALL).generate(prompt)
    assert whole not in seen and len(seen) > 1
    seen.clear()
    Rain(tiny_backend, evaluator=judge, similarity=False, search="lookahead", **{**SMALL, "mode": "full"}).generate(prompt)
    assert seen[0] == whole


def test_streamed_pieces_join_to_the_final_text(tiny_backend):
    def judge(p: str, response: str) -> float:
        return -1.0 if "e" in response[10:] else 1.0  # rejects often, so searches run mid-stream

    rain = Rain(tiny_backend, evaluator=judge, similarity=False, **SMALL)
    for prompt, stop in ((PROMPTS[0], ()), (PROMPTS[2], ("the",))):
        results = []
        pieces = list(rain.stream(prompt, on_result=results.append, stop=stop))
        assert "".join(pieces) == results[0].text
        assert results[0].text == rain.generate(prompt, stop=stop).text
        assert all(s not in results[0].text for s in stop)


def test_a_clause_no_search_can_fix_ends_with_a_clear_reason(tiny_backend):
    rain = Rain(tiny_backend, evaluator=_reject_all, similarity=False, **SMALL)
    pieces = []
    results = []
    for piece in rain.stream(PROMPTS[0], on_result=results.append, guard_searches=3, trace=True):
        pieces.append(piece)
    result = results[0]
    assert result.finish_reason == "rejected"
    assert pieces == [] and result.text == ""  # nothing the judge rejected was shown
    assert result.stats.searches == 3 and result.stats.clauses_rejected == 1
    assert len(result.trace) == 1 and len(result.trace[0].attempts) == 3
    assert result.trace[0].replacement is None


def test_search_hooks_continue_a_response_and_stop_on_request(tiny_backend):
    """The two hooks guard mode uses: a search that starts from accepted tokens, and one that stops when asked."""
    from rain_core.search import RainSearch

    config = RainConfig(max_iterations=4, min_iterations=2, max_new_tokens=20, seed=0)
    prompt = format_prompt(tiny_backend.tokenizer, PROMPTS[0])
    ids = tiny_backend.encode(prompt.text)
    start = tiny_backend.encode(" I am")
    judge = type("J", (), {"score": lambda self, ex: 1.0})()
    search = RainSearch(model=tiny_backend, evaluator=judge, embedder=None, config=config, prompt=prompt,
                        prompt_ids=ids, generator=torch.Generator().manual_seed(0), response=start,
                        stop_when=lambda response: len(response) >= len(start) + 3)
    pieces = list(search.run())
    assert search.response[: len(start)] == start
    assert search.result.finish_reason == "stop" and search.stats.commits == 2  # 1 + 2 tokens, then asked to stop
    assert "".join(pieces) == tiny_backend.decode(search.response)[len(tiny_backend.decode(start)):]


@pytest.mark.parametrize("bad, name", [(dict(mode="fast"), "mode"), (dict(guard_threshold=1.5), "guard_threshold"),
                                       (dict(guard_threshold=-2), "guard_threshold"),
                                       (dict(guard_searches=0), "guard_searches"),
                                       (dict(guard_horizon=-1), "guard_horizon"),
                                       (dict(guard_clause_tokens=0), "guard_clause_tokens")])
def test_bad_guard_options_fail_naming_the_option(tiny_backend, bad, name):
    with pytest.raises(ConfigError, match=rf"RainConfig\.{name}="):
        RainConfig(**bad)
    rain = Rain(tiny_backend, evaluator=_accept, similarity=False)
    with pytest.raises(ConfigError, match=name):
        rain.generate(PROMPTS[0], **bad)


def test_guarded_generation_is_reproducible(tiny_backend):
    def judge(p: str, response: str) -> float:
        return 1.0 if response.count("e") % 2 == 0 else -1.0

    rain = Rain(tiny_backend, evaluator=judge, similarity="hidden", **SMALL)
    first = rain.generate(PROMPTS[2])
    second = rain.generate(PROMPTS[2])
    assert first.text == second.text and first.stats.inner_iterations == second.stats.inner_iterations


def test_guard_bench_reports_ratios_and_searched_share(tiny_backend):
    from rain_core.bench import BENIGN_PROMPTS, run_guard_bench

    assert len(BENIGN_PROMPTS) >= 8
    def judge(p: str, response: str) -> float:
        return -1.0 if "e" in response[10:] else 1.0

    rain = Rain(tiny_backend, evaluator=judge, similarity=False, **{**SMALL, "max_new_tokens": 16})
    report = run_guard_bench(rain, sets={"benign": list(BENIGN_PROMPTS[:2]), "other": [PROMPTS[0]]}, progress=False)
    assert set(report["sets"]) == {"benign", "other"} and len(report["runs"]) == 3
    for figures in report["sets"].values():
        assert figures["guard_to_plain_median"] > 0 and figures["full_to_plain_median"] > 0
        assert 0 <= figures["share_of_clauses_searched"] <= 1
    runs = report["runs"]
    assert report["sets"]["benign"]["clauses_drafted"] == sum(r["clauses_drafted"] for r in runs[:2])
    assert any(r["clauses_rejected"] for r in runs)  # this judge rejects, so some clauses were searched
    # the settings in effect for this judge (a function judge: the scoring's threshold, clause_tokens[0])
    assert (report["guard_threshold"], report["guard_clause_tokens"], report["guard_horizon"]) == (0.1, 4, 32)


class _LukewarmJudge:
    """Scores every response 0.05: above the neutral 0, below the soft score's default guard threshold of 0.1.
    ``keeps_lowest`` says whether its verdict is the lowest score of several texts, as a defended judge's is."""

    def __init__(self, keeps_lowest: bool) -> None:
        self.keeps_lowest = keeps_lowest

    def score(self, exchange) -> float:
        return 0.05

    def judge(self, exchange):
        from rain_core.evaluator import Judgement

        return Judgement(0.05)


@pytest.mark.parametrize("keeps_lowest, searched", [(False, True), (True, False)])
def test_default_guard_threshold_is_0_for_a_judge_that_keeps_the_lowest_of_several_scores(tiny_backend, keeps_lowest,
                                                                                           searched):
    """The soft score's default 0.1 sends a clause scored 0.05 to the search; a judge whose verdict is already the
    lowest of several texts' scores (the clauses defence) passes it at its default of 0 and decodes plainly."""
    rain = Rain(tiny_backend, evaluator=_LukewarmJudge(keeps_lowest), similarity=False, **SMALL)
    result = rain.generate(PROMPTS[0], trace=True)
    assert (result.stats.searches > 0) is searched
    assert all(c.passed is not searched for c in result.trace[:1])
    if not searched:
        assert result.text == _greedy(rain, PROMPTS[0], SMALL["max_new_tokens"]).text


def test_a_given_guard_threshold_wins_over_the_judges_default(tiny_backend):
    from rain_core.evaluator import EvaluationPrompt, SelfEvaluator
    from rain_core.guard import guard_threshold

    letters = EvaluationPrompt.builtin("harmless-letters")  # defended as shipped; option letters the tiny model has
    defended = SelfEvaluator(tiny_backend, letters, soft=True)
    bare = SelfEvaluator(tiny_backend, letters.defended(()), soft=True)
    assert defended.keeps_lowest and not bare.keeps_lowest
    assert guard_threshold(RainConfig(mode="guard"), defended) == 0.0
    assert guard_threshold(RainConfig(mode="guard"), bare) == 0.1
    assert guard_threshold(RainConfig(mode="guard", guard_threshold=0.1), defended) == 0.1
    assert guard_threshold(RainConfig(mode="guard").updated(max_new_tokens=8), defended) == 0.0
    rain = Rain(tiny_backend, evaluator=_LukewarmJudge(True), similarity=False, **SMALL)
    assert rain.generate(PROMPTS[0], guard_threshold=0.1).stats.searches > 0  # a per-call value is respected


@pytest.mark.parametrize("keeps_lowest", [False, True])
def test_a_judge_that_keeps_the_lowest_of_several_scores_judges_sentence_sized_clauses(tiny_backend, keeps_lowest):
    """Guard mode's judged clause holds at least clause_tokens[0] tokens by default, 12 for a judge that reads
    leave-out texts (each of its judgements costs about two texts per sentence); a given value wins. Longer clauses
    mean fewer judgements of the same greedy text."""
    from rain_core.guard import guard_clause_tokens

    judge = _LukewarmJudge(keeps_lowest)
    assert guard_clause_tokens(RainConfig(mode="guard"), judge) == (12 if keeps_lowest else 4)
    assert guard_clause_tokens(RainConfig(mode="guard", guard_clause_tokens=6), judge) == 6
    config = {**SMALL, "guard_threshold": 0.0, "max_new_tokens": 60}
    rain = Rain(tiny_backend, evaluator=judge, similarity=False, **config)
    default, fine = (rain.generate(PROMPTS[2], trace=True, **extra) for extra in ({}, {"guard_clause_tokens": 4}))
    assert default.text == fine.text == _greedy(rain, PROMPTS[2], 60).text
    assert (len(default.trace) < len(fine.trace)) is keeps_lowest
    assert default.stats.clauses_drafted == len(default.trace)


def _defended(tiny_backend):
    """The built-in letters safety judge on the tiny model, defended as shipped (it reads leave-out texts)."""
    from rain_core.evaluator import EvaluationPrompt, SelfEvaluator

    return SelfEvaluator(tiny_backend, EvaluationPrompt.builtin("harmless-letters"), soft=True)


def test_a_guard_search_ranks_with_the_whole_reply_and_acceptance_uses_every_text(tiny_backend, monkeypatch):
    """A defended judge reads a reply and its leave-out texts; guard mode's searches only propose replacements, so
    they rank rollouts by the whole reply (neutralised), and each proposal is then judged by the generation's own
    judge, leave-out texts included, before it is accepted."""
    from rain_core import guard as guard_module
    from rain_core.evaluator import EvaluationPrompt, SelfEvaluator
    from rain_core.exchange import Exchange

    defended = _defended(tiny_backend)
    whole = defended.whole_reply()
    reply = Exchange.single_turn("Hi?", "First part. Second part. (An aside here.) Third part.")
    assert len(defended.units(reply)) > 1 and whole.units(reply) == defended.units(reply)[:1]
    assert not whole.keeps_lowest and whole._unit_cache is defended._unit_cache
    bare = SelfEvaluator(tiny_backend, EvaluationPrompt.builtin("harmless-letters").defended(()), soft=True)
    assert bare.whole_reply() is bare

    used: list = []
    real = guard_module.search_class

    def spy(name):
        cls = real(name)

        class Spy(cls):  # type: ignore[misc, valid-type]
            def __init__(self, **kwargs):
                used.append(kwargs["evaluator"])
                super().__init__(**kwargs)

        return Spy

    monkeypatch.setattr(guard_module, "search_class", spy)
    rain = Rain(tiny_backend, evaluator=defended, similarity=False, **{**SMALL, "max_new_tokens": 16})
    deciders: list[bool] = []  # which judge each score came from: the defended one, or the whole-reply twin

    def reject(self, exchange):
        deciders.append(self.keeps_lowest)
        return -1.0

    monkeypatch.setattr(SelfEvaluator, "score", reject)
    result = rain.generate(PROMPTS[0], guard_threshold=0.0, trace=True)
    assert used and all(isinstance(judge, guard_module.ProposalJudge) and judge.full is defended
                        and not judge.whole.keeps_lowest and judge.whole.prompt.defences == ("neutralise",)
                        for judge in used)
    # the clause and every proposal were decided by the defended judge itself: nothing passed, nothing emitted
    assert result.finish_reason == "rejected" and result.text == ""
    assert deciders.count(True) == 1 + result.stats.searches == 1 + len(result.trace[0].attempts)
    assert deciders.count(False) > 0  # the searches' rollouts, ranked by the whole reply


def test_a_guard_search_stops_only_on_a_rollout_every_text_accepts(tiny_backend, monkeypatch):
    """A rollout the whole reply scores at the search's stopping threshold is judged with every text before it can
    stop the search: when the leave-out texts reject every such rollout, the search spends its whole budget instead
    of stopping at its first rollout and proposing what the judge then rejects."""
    from rain_core.evaluator import SelfEvaluator

    defended = _defended(tiny_backend)
    deciders: list[bool] = []

    def whole_likes_every_text_rejects(self, exchange):
        deciders.append(self.keeps_lowest)
        return -1.0 if self.keeps_lowest else 1.0

    monkeypatch.setattr(SelfEvaluator, "score", whole_likes_every_text_rejects)
    config = {**SMALL, "max_new_tokens": 16, "max_iterations": 5, "min_iterations": 0}
    result = Rain(tiny_backend, evaluator=defended, similarity=False, **config).generate(PROMPTS[0], trace=True)
    attempts = result.trace[0].attempts
    assert result.finish_reason == "rejected" and len(attempts) == 2
    assert all(a.iterations == 5 for a in attempts)  # no rollout stopped a search: each ran its budget
    # every rollout the twin liked was judged with every text, besides the clause and the two proposals
    assert deciders.count(False) == deciders.count(True) - 1 - 2 == 10


def test_a_guard_search_stops_on_the_first_rollout_the_judge_accepts(tiny_backend, monkeypatch):
    """The check only vetoes: a rollout the whole reply likes and every text accepts (0.05: at least the guard
    threshold 0, below the search's 0.2) stops the search at once, and that proposal is accepted."""
    from rain_core.evaluator import SelfEvaluator

    defended = _defended(tiny_backend)
    full_calls: list[str] = []

    def draft_rejected_then_accepting(self, exchange):
        if not self.keeps_lowest:
            return 1.0
        full_calls.append(exchange.response)
        return -1.0 if len(full_calls) == 1 else 0.05  # the drafted clause, then every rollout and proposal

    monkeypatch.setattr(SelfEvaluator, "score", draft_rejected_then_accepting)
    config = {**SMALL, "max_new_tokens": 16, "max_iterations": 5, "min_iterations": 0}
    result = Rain(tiny_backend, evaluator=defended, similarity=False, **config).generate(PROMPTS[0], trace=True)
    first = result.trace[0]
    assert not first.passed and len(first.attempts) == 1 and first.attempts[0].iterations == 1
    assert first.attempts[0].passed and first.replacement is not None
    assert full_calls[1] == full_calls[2]  # the rollout that stopped the search is the proposal judged


def test_a_proposal_judge_reads_a_batch_of_whole_replies_in_one_call():
    """`score_many` gives what `score` gives one by one, with the whole replies read in one call of the whole-reply
    judge (as the search reads a batch without the check) and only those at the stopping threshold checked."""
    from rain_core.exchange import Exchange
    from rain_core.guard import ProposalJudge

    class Whole:
        calls = 0
        values = {"low": 0.1, "liked": 0.5, "vetoed": 0.6}

        def score(self, exchange):
            return self.values[exchange.response]

        def score_many(self, exchanges):
            self.calls += 1
            return [self.score(e) for e in exchanges]

    class Full:
        read: list = []

        def score(self, exchange):
            self.read.append(exchange.response)
            return -0.3 if exchange.response == "vetoed" else 0.05

    whole, full = Whole(), Full()
    judge = ProposalJudge(whole, full, stop=0.2, accept=0.0)
    batch = [Exchange.single_turn("Hi?", text) for text in ("low", "liked", "vetoed")]
    assert judge.score_many(batch) == [0.1, 0.5, -0.3] == [judge.score(e) for e in batch]
    assert whole.calls == 1 and full.read == ["liked", "vetoed", "liked", "vetoed"]
