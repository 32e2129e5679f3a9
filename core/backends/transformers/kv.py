"""KV-cache operations the search needs: fork, crop, repeat and select, without recomputing a prefix.

transformers' `DynamicLayer` grows by `torch.cat`, which makes new tensors and never writes into old ones. So a fork
that shares the tensors is safe and costs nothing: the fork and the original diverge on their next update. Crop,
repeat and select likewise rebind tensors (slices and copies), leaving any other fork untouched. Layers of other
kinds (static or sliding-window caches that write in place) fall back to a deep copy.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


def _shares_safely(cache: Any) -> bool:
    return isinstance(cache, DynamicCache) and all(type(layer) is DynamicLayer for layer in cache.layers)


def mergeable(cache: Any) -> bool:
    """Whether ``cache`` can be left-padded and joined with others in one batch (`merge_left_padded`)."""
    return _shares_safely(cache)


def fork(cache: Any) -> Any:
    """A cache equal to ``cache`` that can be extended without changing ``cache``."""
    if not _shares_safely(cache):
        return copy.deepcopy(cache)
    twin = copy.copy(cache)
    twin.layers = [copy.copy(layer) for layer in cache.layers]
    return twin


def seq_len(cache: Any) -> int:
    return int(cache.get_seq_length())


def crop(cache: Any, length: int) -> Any:
    """A fork of ``cache`` holding only its first ``length`` positions."""
    twin = fork(cache)
    remove = seq_len(twin) - length
    if remove < 0:
        raise ValueError(f"cannot crop a cache of {seq_len(twin)} positions to {length}")
    if remove == 0:
        return twin
    for layer in twin.layers:
        if getattr(layer, "is_initialized", True) and layer.keys is not None and layer.keys.numel():
            layer.keys = layer.keys[..., :length, :]
            layer.values = layer.values[..., :length, :]
    return twin


def repeat(cache: Any, times: int) -> Any:
    """A fork of a batch-1 ``cache`` with its single row repeated ``times`` times."""
    twin = fork(cache)
    if times == 1:
        return twin
    for layer in twin.layers:
        if getattr(layer, "is_initialized", True) and layer.keys is not None and layer.keys.numel():
            layer.keys = layer.keys.expand(times, *layer.keys.shape[1:]).contiguous()
            layer.values = layer.values.expand(times, *layer.values.shape[1:]).contiguous()
    return twin


def select_rows(cache: Any, rows: torch.Tensor) -> None:
    """Keep only ``rows`` of the batch, in place (used to drop finished rows from a batched decode)."""
    for layer in cache.layers:
        if getattr(layer, "is_initialized", True) and layer.keys is not None and layer.keys.numel():
            layer.keys = layer.keys.index_select(0, rows)
            layer.values = layer.values.index_select(0, rows)


def merge_left_padded(caches: list[Any]) -> tuple[Any, list[int]] | None:
    """One batch holding the rows of every cache in ``caches``, each left-padded with zeros to the longest.

    Returns the merged cache and each input's length (its rows' padding is ``longest - length`` positions, which
    the caller masks out), or None when a cache is not a plain `DynamicCache` (those cannot be padded safely).
    """
    if not all(_shares_safely(c) for c in caches):
        return None
    lengths = [seq_len(c) for c in caches]
    longest = max(lengths)
    merged = fork(caches[0])
    for index, layer in enumerate(merged.layers):
        keys, values = [], []
        for cache, length in zip(caches, lengths):
            other = cache.layers[index]
            pad = (0, 0, longest - length, 0)
            keys.append(torch.nn.functional.pad(other.keys, pad) if longest > length else other.keys)
            values.append(torch.nn.functional.pad(other.values, pad) if longest > length else other.values)
        layer.keys = torch.cat(keys, dim=0)
        layer.values = torch.cat(values, dim=0)
    return merged, lengths


def split_rows(cache: Any, start: int, stop: int, length: int, first: int = 0) -> Any:
    """A fork of rows ``start:stop`` of ``cache`` keeping positions ``first:first + length`` (undoes a merge)."""
    twin = fork(cache)
    for layer in twin.layers:
        if getattr(layer, "is_initialized", True) and layer.keys is not None and layer.keys.numel():
            layer.keys = layer.keys[start:stop, :, first:first + length, :]
            layer.values = layer.values[start:stop, :, first:first + length, :]
    return twin


def empty_rows(like: Any, rows: int) -> Any:
    """A cache shaped like ``like`` with ``rows`` rows and no positions (a from-scratch row in a merged batch)."""
    twin = fork(like)
    for layer in twin.layers:
        if getattr(layer, "is_initialized", True) and layer.keys is not None:
            layer.keys = layer.keys.new_zeros((rows, *layer.keys.shape[1:-2], 0, layer.keys.shape[-1]))
            layer.values = layer.values.new_zeros((rows, *layer.values.shape[1:-2], 0, layer.values.shape[-1]))
    return twin
