"""The in-process backend: a transformers causal LM with KV caches reused across the search tree.

`backend.py` (the backend and its per-request sessions), `kv.py` (cache surgery), `rollouts.py` (the batched decode
loop), `static_decode.py` + `graph_thread.py` (long rollouts on a static cache, CUDA graphs), `batching.py`
(concurrent requests' forwards in one batch): everything that exists because the model runs in this process.
"""

from .backend import TransformersBackend

__all__ = ["TransformersBackend"]
