"""The served backend: the model seam over an OpenAI-compatible server (vLLM, SGLang, llama.cpp's server).

`backend.py` turns each of the seam's reads into completions requests; `client.py` sends them (pooled, at once,
with bounded retries and errors that name the URL)."""

from .backend import ServedBackend
from .client import ServerClient

__all__ = ["ServedBackend", "ServerClient"]
