"""One declaration of the user-facing options (RainConfig field metadata) reaches every surface: the three CLI
commands and both integrations' settings; and the process registries can be emptied."""

from __future__ import annotations

import argparse

import pytest

from rain_core import RainConfig
from rain_core.cli import build_parser
from rain_core.cli_options import config_from
from rain_core.config import option_aliases, user_options
from rain_core.registry import Registry


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def _sub(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def test_every_option_is_a_flag_of_generate_bench_and_eval():
    names = {"--" + f.name.replace("_", "-") for f in user_options()}
    assert {"--max-new-tokens", "--max-iterations", "--value-threshold", "--no-repeat-ngram-size"} <= names
    assert names <= _flags(_sub("generate")) and names <= _flags(_sub("bench"))
    assert {"--mode", "--guard-threshold", "--guard-searches"} <= names
    # rain eval gives --max-new-tokens (per-task default) and --seed (base seed) its own meaning, and picks the
    # mode per method (rain, rain-guard)
    own = ("--max-new-tokens", "--seed", "--stop", "--mode")
    assert {n for n in names if n not in own} <= _flags(_sub("eval"))
    assert "--mode" not in _flags(_sub("eval"))


def test_flags_left_out_keep_the_base_config_and_given_ones_override_it():
    args = _sub("generate").parse_args(["hi", "--max-iterations", "7", "--stop", "x", "--stop", "y", "--c-puct", "1.5"])
    config = config_from(args)
    assert (config.max_iterations, config.stop, config.c_puct) == (7, ("x", "y"), 1.5)
    assert config.min_iterations == RainConfig().min_iterations
    bench = config_from(_sub("bench").parse_args([]), RainConfig(max_new_tokens=32))
    assert bench.max_new_tokens == 32


def test_bad_flag_values_fail_with_the_config_error():
    from rain_core import ConfigError

    with pytest.raises(ConfigError, match="value_threshold"):
        config_from(_sub("generate").parse_args(["hi", "--value-threshold", "3"]))


def test_integrations_get_one_field_per_option_with_its_aliases():
    from rain_core.integrations.settings import RainSettings

    fields = RainSettings.model_fields
    for f in user_options():
        assert f.name in fields and fields[f.name].description == f.metadata["help"]
    assert fields["max_new_tokens"].alias == "max_tokens"
    assert option_aliases() == {"minT": "min_visits", "T": "max_iterations", "Vt": "value_threshold",
                                "max_tokens": "max_new_tokens"}


def test_registry_builds_once_and_clears():
    registry: Registry[object] = Registry()
    made = []
    first = registry.get("k", lambda: made.append(1) or object())
    assert registry.get("k", lambda: made.append(1) or object()) is first and made == [1]
    registry.clear()
    assert len(registry) == 0 and registry.get("k", lambda: object()) is not first
