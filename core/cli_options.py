"""Command-line flags generated from `RainConfig`, plus the model and judge flags every ``rain`` command shares.

``rain generate``, ``rain bench`` and ``rain eval`` each call these instead of writing their own flag lists, so an
option added to `RainConfig` with `option(...)` metadata appears in all three with the same name, help and check.
A generated flag defaults to None ("not given"): the command's own base config supplies the value, and the help
shows RainConfig's default.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import Field
from typing import Any

from .backends.served.options import SERVER_FIELDS, ServerOptions
from .config import STRATEGY_DEFAULTS, RainConfig, field_default, user_options


def _value_type(f: Field) -> type:
    """The scalar type a flag parses (``int | None`` -> int, ``tuple[str, ...]`` -> str)."""
    hint = typing.get_type_hints(RainConfig)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None) and a is not Ellipsis]
    return args[0] if args else hint


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, *, for_eval: bool = False,
                     title: str = "search (the lookahead search by default; --search reference is the paper's method "
                                  "with its budget)") -> None:
    """Add one flag per exposed `RainConfig` option (``rain eval`` skips those it defines itself)."""
    group = parser.add_argument_group(title)
    for f in user_options():
        if for_eval and not f.metadata["eval_flag"]:
            continue
        meta = f.metadata
        kind = _value_type(f)
        default = field_default(f)
        shown = "none" if default in (None, ()) else default
        if default is None and f.name in STRATEGY_DEFAULTS["reference"]:
            shown = ", ".join(f"{name} {budget[f.name]}" for name, budget in STRATEGY_DEFAULTS.items())
        if kind is bool:  # --soft / --no-soft: both spellings, so a strategy's default can be turned either way
            group.add_argument(_flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                               help=f"{meta['help']} ({shown})")
        elif typing.get_origin(typing.get_type_hints(RainConfig)[f.name]) is tuple:
            group.add_argument(_flag(f.name), dest=f.name, action="append", type=kind, default=None,
                               metavar=meta["metavar"], help=f"{meta['help']}")
        else:
            group.add_argument(_flag(f.name), dest=f.name, type=kind, default=None, metavar=meta["metavar"],
                               help=f"{meta['help']} ({shown})")


def config_overrides(args: argparse.Namespace, *, for_eval: bool = False) -> dict[str, Any]:
    """The `RainConfig` options given on the command line (flags left out are absent; ``rain eval``'s own
    ``--seed`` and ``--max-new-tokens`` are not RainConfig flags)."""
    return {f.name: getattr(args, f.name) for f in user_options()
            if (f.metadata["eval_flag"] or not for_eval) and getattr(args, f.name, None) is not None}


def config_from(args: argparse.Namespace, base: RainConfig | None = None) -> RainConfig:
    """``base`` (the reference defaults) with the options given on the command line."""
    return (base or RainConfig()).updated(**config_overrides(args))


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2",
                        help="'smollm2' (embedded default), a model folder, a .gguf file, or a cached HF id")
    parser.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    parser.add_argument("--dtype", default=None, help="float32 / bfloat16 / float16 (default: auto)")
    group = parser.add_argument_group("served model (vLLM, SGLang: see docs/serving.md)")
    for f in dataclasses.fields(ServerOptions):  # one flag per option, from its one declaration
        group.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None,
                           type=float if f.type in (float, "float") else None, help=f.metadata["help"])


def server_from(args: argparse.Namespace) -> ServerOptions:
    """The served-model options given on the command line (none: the model runs in this process)."""
    return ServerOptions.pick({name: getattr(args, name, None) for name in SERVER_FIELDS})


def add_judge_flags(parser: argparse.ArgumentParser, *, evaluator_default: str | None = "harmless",
                    evaluator_help: str = "self-evaluation prompt: harmless, sentiment, or a prompt file path "
                                          "(default: harmless)") -> None:
    """The engine's judge and encoder switches (not search hyperparameters)."""
    group = parser.add_argument_group("judge")
    group.add_argument("--evaluator", default=evaluator_default, help=evaluator_help)
    group.add_argument("--no-similarity", action="store_true", help="turn off similarity credit and widening")
