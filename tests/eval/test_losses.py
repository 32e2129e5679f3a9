"""rain_core.eval.losses: the paired items of a run, sorted by how the search ended."""

from __future__ import annotations

import json

import pytest

from rain_core.errors import RainError
from rain_core.eval.losses import main, paired_items, table


def _record(index: int, method: str, output: str, positive: bool, score: float, judged: int = 0, n: int | None = None):
    details = {"rain_stats": {"inner_iterations": judged}} if method.startswith("rain") else {"n": n}
    return {"index": index, "method": method, "output": output, "verdicts": {"positive": positive},
            "self_score": score, "details": details}


RECORDS = [
    # 0: the search accepted the greedy answer (0.25 >= Vt), which is not positive; BoN's sample is
    _record(0, "vanilla-greedy", "g0", False, 0.25), _record(0, "rain", "g0", False, 0.25, judged=1),
    _record(0, "bon", "b0", True, 0.05, n=2),
    # 1: a sample reached Vt and is positive; BoN's best is not, and the judge agreed with the search
    _record(1, "vanilla-greedy", "g1", False, 0.0), _record(1, "rain", "r1", True, 0.3, judged=3),
    _record(1, "bon", "b1", False, 0.1, n=3),
    # 2: nothing reached Vt, the search followed its best sample; BoN's best is positive and the judge preferred it
    _record(2, "vanilla-greedy", "g2", False, 0.0), _record(2, "rain", "r2", False, 0.15, judged=16),
    _record(2, "bon", "b2", True, 0.18, n=15),
    # 3: both positive: not a paired item
    _record(3, "vanilla-greedy", "g3", True, 0.3), _record(3, "rain", "g3", True, 0.3, judged=1),
    _record(3, "bon", "b3", True, 0.2, n=2),
]


def test_paired_items_are_sorted_by_how_the_search_ended():
    items = {i.index: i for i in paired_items(RECORDS, headline="positive", value_threshold=0.2)}
    assert set(items) == {0, 1, 2}
    assert (items[0].ending, items[0].winner, items[0].judge_preferred_winner) == ("greedy accepted", "bon", False)
    assert (items[1].ending, items[1].winner, items[1].judge_preferred_winner) == ("sample accepted", "rain", True)
    assert (items[2].ending, items[2].winner, items[2].judge_preferred_winner) == ("budget spent", "bon", True)
    assert items[2].other_candidates == 15 and items[2].rollouts == 16
    markdown = table(list(items.values()), "bon")
    assert "| greedy accepted | 0 | 1 | 0 / 0 |" in markdown and "| **all** | **1** | **2** | 1 / 1 |" in markdown


def test_the_command_reads_a_run_directory(tmp_path, capsys):
    (tmp_path / "results.jsonl").write_text("\n".join(json.dumps(r) for r in RECORDS))
    (tmp_path / "config.json").write_text(json.dumps({"rain_config": {"value_threshold": 0.2}}))
    assert main([str(tmp_path), "--json"]) == 0
    assert [i["index"] for i in json.loads(capsys.readouterr().out)] == [0, 1, 2]
    with pytest.raises(RainError, match="bon-guard"):
        main([str(tmp_path), "--guard"])
