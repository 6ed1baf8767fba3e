"""The process runtime: device choice, CPU threads, native-bf16 detection and autocast, seeding, and the process
group's set-up and teardown. Every command that runs networks (training, reconstruction, evaluation) starts here.

Under `torchrun --nproc_per_node N` set-up starts the process group (NCCL on CUDA, gloo on CPU); `Runtime` says which
rank this process is.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from brainrecon.errors import ConfigError
from brainrecon.version import version_string


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    amp: bool = False
    amp_reason: str = "autocast off"
    channels_last: frozenset = frozenset()
    """Roles of the networks kept in channels_last memory format (see CHANNELS_LAST)."""
    threads: int = 1
    threads_reason: str = ""

    def record(self) -> dict:
        """What metrics.json says about how the run computed, and with which code (brainrecon/version.py)."""
        return {"brainrecon_version": version_string(), "device": str(self.device), "autocast": self.amp,
                "autocast_reason": self.amp_reason, "channels_last": sorted(self.channels_last),
                "world_size": self.world_size, "cpu_threads": self.threads, "cpu_threads_reason": self.threads_reason}

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


X86 = ("x86_64", "amd64", "i386", "i686")
# Which networks run in channels_last, by (device type, autocast): measured with `python -m benchmarks --demo-only` on
# a 2-core avx512_bf16 CPU at the demo's sizes (final run). Encoder step vs fp32: channels_last 1.29x, bf16 2.59x,
# bf16 + channels_last 3.01x. Decoder + EfficientNet perceptual step: channels_last 1.12x in fp32, but under bf16
# channels_last lost (1.29x -> 1.17x), so under autocast only the encoder is converted (the decoder itself trains in
# fp32 there, see train/decoder.py). Not measured on CUDA here: left off there.
CHANNELS_LAST = {("cpu", False): frozenset({"encoder", "decoder", "perceptual"}),
                 ("cpu", True): frozenset({"encoder"})}


def _cpu_flags() -> set[str] | None:
    """The x86 feature flags of this CPU from /proc/cpuinfo (Linux); None where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


@functools.lru_cache(maxsize=None)
def cpu_bf16() -> tuple[bool, str]:
    """(native bf16 on this CPU, why). Checked at run time, never assumed.

    First torch's own oneDNN check, `torch.ops.mkldnn._is_mkldnn_bf16_supported()` (the capability torch's tests and
    inductor consult). On x86 oneDNN also says yes for AVX-512 CPUs without bf16 instructions, where it emulates bf16
    and runs slower than fp32, so there the CPU must also list `avx512_bf16` or `amx_bf16`; on ARM the oneDNN check
    is already the native BF16 feature.
    """
    try:
        onednn = torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        onednn = False
    if not onednn:
        return False, "fp32: oneDNN reports no bf16 on this CPU"
    if platform.machine().lower() in X86:
        flags = _cpu_flags()
        if flags is None:
            return False, "fp32: oneDNN offers bf16 but native bf16 could not be confirmed (no /proc/cpuinfo)"
        native = sorted({"avx512_bf16", "amx_bf16"} & flags)
        if not native:
            return False, "fp32: this CPU would emulate bf16 (AVX-512 without avx512_bf16/amx_bf16), slower than fp32"
        return True, f"bf16 autocast: native bf16 on this CPU ({', '.join(native)})"
    return True, f"bf16 autocast: native bf16 on this CPU (oneDNN, {platform.machine()})"


def _cgroup_cpus() -> float | None:
    """The CPU quota of this process's cgroup in CPUs (v2 cpu.max, else v1 cfs quota / period); None if unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def cpu_threads(requested: int = 0) -> tuple[int, str]:
    """(torch's intra-op thread count, why). `requested` (--threads / train.threads) wins, then OMP_NUM_THREADS; else
    the CPUs this process may use: its affinity mask, capped by the cgroup quota (as containers and schedulers set
    them), divided among the ranks torchrun started on this host. torch's own default is every core of the machine,
    which on a shared or containerised machine makes its OpenMP threads spin-wait for cores they do not get."""
    if requested > 0:
        return requested, f"{requested} (train.threads / --threads)"
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env), f"{env} (OMP_NUM_THREADS)"
    try:
        usable = len(os.sched_getaffinity(0))
        parts = [f"{usable} CPUs in the affinity mask"]
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
        parts = [f"{usable} CPUs"]
    quota = _cgroup_cpus()
    if quota is not None and quota < usable:
        usable = max(1, int(quota))
        parts.append(f"cgroup quota {quota:g} CPUs")
    local = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    if local > 1:
        parts.append(f"/ {local} ranks on this host")
    n = max(1, usable // local)
    return n, f"{n} ({', '.join(parts)})"


_warned: set[str] = set()


def resolve_amp(setting, device: torch.device) -> tuple[bool, str]:
    """`train.amp` (auto | true | false) on a device -> (autocast on, why), recorded in every run's metrics.json.

    auto: bf16 on CUDA, and on CPUs with native bf16; fp32 elsewhere (emulated bf16 is slower than fp32).
    """
    if setting is False:
        return False, "fp32: train.amp is false"
    if device.type == "cuda":
        return True, "bf16 autocast on CUDA"
    if device.type != "cpu":
        return False, f"fp32: no bf16 autocast on {device.type}"
    native, why = cpu_bf16()
    if setting == "auto":
        return native, why
    if not native and "forced" not in _warned:  # amp: true on a CPU without native bf16
        _warned.add("forced")
        warnings.warn(f"train.amp is true but this CPU has no native bf16 ({why.split(': ', 1)[1]}); bf16 will be "
                      "emulated and slower than fp32", stacklevel=2)
    return True, "bf16 autocast: forced by train.amp true" + ("" if native else " (emulated on this CPU)")


def setup(device: str = "auto", amp="auto", seed: int = 0, deterministic: bool = False, threads: int = 0) -> Runtime:
    """Start the process group when launched by torchrun, choose the device and the CPU threads, seed everything."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    n_threads, threads_reason = cpu_threads(threads)
    torch.set_num_threads(n_threads)
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
    use_amp, why = resolve_amp(amp, dev)
    return Runtime(device=dev, rank=rank, world_size=world, amp=use_amp, amp_reason=why,
                   channels_last=CHANNELS_LAST.get((dev.type, use_amp), frozenset()), threads=n_threads,
                   threads_reason=threads_reason)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        # every rank reaches this point before any destroys the group: a gloo rank whose peer tore down first can
        # abort in its background threads ("terminate called without an active exception")
        dist.barrier()
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def autocast(runtime: Runtime):
    """bf16 autocast on the runtime's device when `runtime.amp` (see resolve_amp); a no-op otherwise."""
    if runtime.amp:
        return torch.autocast(device_type=runtime.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
