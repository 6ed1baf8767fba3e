"""Exact caches for what a decoder step computes from frozen networks on fixed inputs.

The encoder is frozen and in eval mode, the perceptual network too, and neither the paired targets nor the unpaired
images are augmented, so E(x) of an unpaired image and the perceptual features of a target image are the same in
every step. A `FrozenCache` computes them once per run (in fixed chunks, so a resumed run fills it with the same
values) for as many items as a memory budget allows, keeps them on the training device, and computes the rest per
step as before. Values equal the per-step ones within float round-off (only the batch a value is computed in differs;
tests/test_decoder.py checks a step's losses and gradients with and without the caches).
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

Values = dict[str, torch.Tensor]
CHUNK = 64


class FrozenCache:
    """values[i] = compute(items[i]) for i < n_cached (filled once by `fill`); later items are computed per call."""

    def __init__(self, name: str, items: torch.Tensor, compute: Callable[[torch.Tensor], Values]):
        self.name, self.items, self.compute = name, items, compute
        self.values: Values = {}
        self.n_cached, self.item_bytes = 0, 0

    def measure(self) -> int:
        """Bytes one cached item takes (computed on the first item)."""
        if not self.item_bytes:
            with torch.no_grad():
                one = self.compute(self.items[:1])
            self.item_bytes = sum(v[0].numel() * v.element_size() for v in one.values())
        return self.item_bytes

    def fill(self, budget_bytes: int, progress: Callable[[int], None] | None = None) -> int:
        """Cache the first items that fit in `budget_bytes`; returns the bytes used."""
        n = min(len(self.items), budget_bytes // max(1, self.measure()))
        self.n_cached = 0
        if n == 0:
            return 0
        with torch.no_grad():
            for start in range(0, n, CHUNK):
                chunk = self.compute(self.items[start:min(n, start + CHUNK)])
                if not self.values:
                    self.values = {k: torch.empty((n, *v.shape[1:]), dtype=v.dtype, device=v.device)
                                   for k, v in chunk.items()}
                for k, v in chunk.items():
                    self.values[k][start:start + len(v)] = v
                if progress is not None:
                    progress(len(next(iter(chunk.values()))))
        self.n_cached = n
        return n * self.item_bytes

    def get(self, idx: torch.Tensor) -> Values:
        """compute(items[idx]), from the cache where it holds the item."""
        idx = idx.to(self.items.device)
        if self.n_cached == len(self.items):  # everything cached: no per-step comparison (a host sync on CUDA)
            return {k: v[idx] for k, v in self.values.items()}
        hit = idx < self.n_cached
        if bool(hit.all()):
            return {k: v[idx] for k, v in self.values.items()}
        with torch.no_grad():
            fresh = self.compute(self.items[idx[~hit]])
        if not bool(hit.any()):
            return fresh
        out = {}
        for k, v in fresh.items():
            out[k] = torch.empty((len(idx), *v.shape[1:]), dtype=v.dtype, device=v.device)
            out[k][~hit] = v
            out[k][hit] = self.values[k][idx[hit]]
        return out

    def record(self) -> dict:
        mb = self.n_cached * self.item_bytes / 2 ** 20
        return {"items": self.n_cached, "of": len(self.items), "mb": round(mb, 1),
                "mb_per_item": round(self.item_bytes / 2 ** 20, 4)}


def fill_in_order(caches: list[FrozenCache], budget_mb: float, progress=None) -> dict:
    """Fill the caches in order (the first gets the budget first) and say what each holds, for metrics.json.
    `progress(total, description)`, if given, is a context manager that yields `tick(k)` (Monitor.counting)."""
    left = int(budget_mb * 2 ** 20)
    for cache in caches:
        n = min(len(cache.items), left // max(1, cache.measure()))
        bar = progress(n, f"caching {cache.name}") if progress is not None and n else contextlib.nullcontext()
        with bar as tick:
            left -= cache.fill(left, tick)
    return {"budget_mb": budget_mb, **{c.name: c.record() for c in caches}}
