"""What every trainer shares: device choice, bf16 autocast, seeding, DDP set-up and teardown, rank-0 gating.

Under `torchrun --nproc_per_node N` the same command runs DDP (NCCL on CUDA, gloo on CPU); each rank sees its shard
of every batch order and only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from brainrecon.errors import ConfigError


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    amp: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("--device mps: MPS is not available on this machine; use --device cpu or auto")
    return torch.device(name)


def setup(device: str = "auto", amp: bool = True, seed: int = 0, deterministic: bool = False) -> Runtime:
    """Start the process group when launched by torchrun, choose the device, seed everything."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    dev = pick_device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            local = int(os.environ.get("LOCAL_RANK", 0))
            torch.cuda.set_device(local)
            dev = torch.device("cuda", local)
        dist.init_process_group(backend=backend)
    if world > 1 and dev.type == "cuda":
        dev = torch.device("cuda", torch.cuda.current_device())
    seed_everything(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(device=dev, rank=rank, world_size=world, amp=amp and dev.type == "cuda")


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def autocast(runtime: Runtime):
    """bf16 autocast on CUDA when enabled; a no-op elsewhere."""
    if runtime.amp:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def wrap(model: torch.nn.Module, runtime: Runtime) -> torch.nn.Module:
    """Move to the device and wrap in DDP when distributed (only if the model has trainable parameters)."""
    model = model.to(runtime.device)
    if runtime.distributed and any(p.requires_grad for p in model.parameters()):
        from torch.nn.parallel import DistributedDataParallel
        ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        model = DistributedDataParallel(model, device_ids=ids)
    return model


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def epoch_order(n: int, seed: int, epoch: int, runtime: Runtime) -> torch.Tensor:
    """This rank's shard of a seeded permutation of n items: the same on every rank and on resume."""
    g = torch.Generator().manual_seed(seed * 100003 + epoch)
    order = torch.randperm(n, generator=g)
    if runtime.distributed:
        usable = (n // runtime.world_size) * runtime.world_size
        order = order[:usable][runtime.rank::runtime.world_size]
    return order


def epoch_generator(seed: int, epoch: int, runtime: Runtime, stream: int = 0) -> torch.Generator:
    """A per-(epoch, rank, stream) generator for augmentation and sampling, so that resume replays exactly."""
    return torch.Generator().manual_seed(seed * 100003 + epoch * 101 + runtime.rank * 7 + stream * 1_000_003)


def all_reduce_mean(value: float, runtime: Runtime) -> float:
    if not runtime.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=runtime.device)
    dist.all_reduce(t)
    return float(t.item()) / runtime.world_size


def to_device(array, runtime: Runtime, dtype=None) -> torch.Tensor:
    """Keep a whole data array on the device (it fits for this data): no per-item copies in the hot loop."""
    t = torch.as_tensor(array)
    return t.to(runtime.device, dtype=dtype) if dtype else t.to(runtime.device)
