"""``rain eval``: measure alignment against plain decoding and equal-compute Best-of-N.

    from rain_core.eval import run_eval
    summary = run_eval("sentiment", n=30, max_new_tokens=24, out="runs/eval-sentiment")

See docs/eval.md for the tasks, the judges, how Best-of-N gets RAIN's compute, and the files a run writes.
"""

from .judges import ModelJudge, SentimentJudge, TruthfulnessJudge, refusal_verdict, rouge_l
from .methods import METHODS, parse_methods, run_best_of_n
from .report import wilson_interval
from .runner import EvalRun, EvalSettings, run_eval
from .tasks import TASKS, make_task

__all__ = ["run_eval", "EvalRun", "EvalSettings", "TASKS", "METHODS", "make_task", "parse_methods",
           "run_best_of_n", "wilson_interval", "SentimentJudge", "TruthfulnessJudge", "ModelJudge",
           "refusal_verdict", "rouge_l"]
