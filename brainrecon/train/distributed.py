"""How a training job spreads over devices and ranks: placing networks (channels_last where it measured faster),
wrapping them in DDP, each rank's shard of an epoch's seeded order, per-epoch generators and the mean over ranks.

Each rank sees its shard of every batch order and only rank 0 writes files (see brainrecon.runtime for set-up).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from brainrecon.runtime import Runtime


def place(model: torch.nn.Module, runtime: Runtime, role: str) -> torch.nn.Module:
    """Move a network (role: encoder | decoder | perceptual) to the device, in channels_last where that measured
    faster (CHANNELS_LAST)."""
    if role in runtime.channels_last:
        return model.to(runtime.device, memory_format=torch.channels_last)
    return model.to(runtime.device)


def wrap(model: torch.nn.Module, runtime: Runtime, role: str) -> torch.nn.Module:
    """Move to the device and wrap in DDP when distributed (only if the model has trainable parameters)."""
    model = place(model, runtime, role)
    if runtime.distributed and any(p.requires_grad for p in model.parameters()):
        from torch.nn.parallel import DistributedDataParallel
        ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        model = DistributedDataParallel(model, device_ids=ids)
    return model


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def epoch_order(n: int, seed: int, epoch: int, runtime: Runtime, at_least: int = 0) -> torch.Tensor:
    """This rank's shard of a seeded permutation of n items: the same on every rank and on resume. When this rank
    needs `at_least` items (train.steps_per_epoch beyond one pass), further seeded permutations follow the first."""
    shards, have, k = [], 0, 0
    while k == 0 or have < at_least:
        g = torch.Generator().manual_seed(seed * 100003 + epoch + k * 7_919_111)
        order = torch.randperm(n, generator=g)
        if runtime.distributed:
            usable = (n // runtime.world_size) * runtime.world_size
            order = order[:usable][runtime.rank::runtime.world_size]
        shards.append(order)
        have, k = have + len(order), k + 1
        if len(order) == 0:
            break
    return shards[0] if len(shards) == 1 else torch.cat(shards)


def steps_per_epoch(n: int, batch: int, runtime: Runtime, every_pair: bool, fixed: int = 0) -> int:
    """Batches per epoch on this rank: `fixed` when given (train.steps_per_epoch), else whole batches only (the
    remainder of the shuffled order is left out), or, with `every_pair` (no validation split, the original code's
    stream), every item with the last batch partial."""
    if fixed:
        return fixed
    per_rank = n // runtime.world_size if runtime.distributed else n
    return max(1, -(-per_rank // batch) if every_pair else per_rank // batch)


def epoch_generator(seed: int, epoch: int, runtime: Runtime, stream: int = 0) -> torch.Generator:
    """A per-(epoch, rank, stream) generator for augmentation and sampling, so that resume replays exactly."""
    return torch.Generator().manual_seed(seed * 100003 + epoch * 101 + runtime.rank * 7 + stream * 1_000_003)


def all_reduce_mean(value: float, runtime: Runtime) -> float:
    if not runtime.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=runtime.device)
    dist.all_reduce(t)
    return float(t.item()) / runtime.world_size
