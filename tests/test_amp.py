"""bf16 autocast where the hardware has it: `train.amp: auto` resolution, and a fast-path step that agrees with fp32."""

from __future__ import annotations

import warnings

import pytest
import torch

from brainrecon import losses, runtime
from brainrecon.config import load_config
from brainrecon.errors import ConfigError
from brainrecon.models.decoder import Decoder, DecoderArch
from brainrecon.models.perceptual import build_perceptual_net

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def native(monkeypatch):
    """Pretend this CPU has (True) or lacks (False) native bf16."""
    def set_(value: bool):
        monkeypatch.setattr(runtime, "cpu_bf16", lambda: (value, "bf16 autocast: mocked" if value else "fp32: mocked"))
        monkeypatch.setattr(runtime, "_warned", set())
    return set_


def test_auto_is_on_for_cuda_and_native_bf16_cpus_only(native):
    native(True)
    assert runtime.resolve_amp("auto", CUDA)[0] and runtime.resolve_amp("auto", CPU)[0]
    native(False)
    assert runtime.resolve_amp("auto", CUDA)[0]
    assert runtime.resolve_amp("auto", CPU) == (False, "fp32: mocked")
    assert not runtime.resolve_amp(False, CUDA)[0] and not runtime.resolve_amp(False, CPU)[0]
    assert not runtime.resolve_amp("auto", torch.device("mps"))[0]


def test_forcing_bf16_on_a_cpu_without_it_warns_once(native):
    native(False)
    with pytest.warns(UserWarning, match="no native bf16"):
        on, why = runtime.resolve_amp(True, CPU)
    assert on and "emulated" in why
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert runtime.resolve_amp(True, CPU)[0]                   # the second time: no warning
    native(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert runtime.resolve_amp(True, CPU) == (True, "bf16 autocast: forced by train.amp true")


@pytest.mark.parametrize("machine,flags,expected", [
    ("x86_64", {"avx512f", "avx512_bf16"}, True),
    ("x86_64", {"avx512f", "avx512bw"}, False),        # oneDNN would emulate bf16 here: slower than fp32
    ("x86_64", None, False),                            # flags unreadable: never assume
    ("aarch64", None, True),                            # oneDNN's check is the native BF16 feature on ARM
])
def test_cpu_bf16_needs_native_instructions(monkeypatch, machine, flags, expected):
    monkeypatch.setattr(runtime.platform, "machine", lambda: machine)
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    native, why = runtime.cpu_bf16.__wrapped__()
    assert native is expected, why


def test_amp_config_values():
    assert load_config("encoder", "rgb", "paper").train.amp == "auto"
    assert load_config("encoder", "rgb", "paper", ["train.amp=false"]).train.amp is False
    with pytest.raises(ConfigError, match="train.amp"):
        load_config("encoder", "rgb", "paper", ["train.amp=sometimes"])


def _fast_path_cosine(rt: runtime.Runtime) -> float:
    """One decoder step as train-decoder runs it under autocast (decoder fp32, frozen perceptual net in bf16 and
    channels_last) on the runtime's device: finite losses and gradients; their cosine to the all-fp32 step's."""
    torch.manual_seed(0)
    dev = rt.device
    decoder = Decoder(DecoderArch(n_voxels=40, modality="rgbd", channels=32, start_size=4)).to(dev)
    net = build_perceptual_net("vgg16-random", "rgbd", None, width=0.25)
    image_loss = losses.ImageLoss("rgbd", torch.full((4,), 0.4), net).to(dev)
    voxels, target = torch.randn(6, 40, device=dev), torch.rand(6, 4, 32, 32, device=dev)

    def gradient(fast: bool) -> torch.Tensor:
        decoder.zero_grad(set_to_none=True)
        image_loss.to(memory_format=torch.channels_last if fast else torch.contiguous_format)
        pred = decoder(voxels)
        with runtime.autocast(runtime.Runtime(device=dev, amp=fast and rt.amp)):
            terms = image_loss(pred, target)
        assert all(torch.isfinite(v) for v in terms.values())
        sum(terms.values()).backward()
        return torch.cat([p.grad.flatten() for p in decoder.parameters()])
    fp32, fast = gradient(False), gradient(True)
    assert torch.isfinite(fast).all() and fast.dtype == torch.float32
    return float(torch.nn.functional.cosine_similarity(fp32, fast, dim=0))


def test_fast_path_step_agrees_with_fp32():
    cosine = _fast_path_cosine(runtime.Runtime(device=CPU, amp=True))
    assert cosine > 0.99, cosine


@pytest.mark.gpu
def test_cuda_chooses_bf16_autocast_and_its_step_agrees_with_fp32():
    """On a CUDA machine: `train.amp: auto` picks bf16 autocast, set-up gives a CUDA runtime with it (and no
    channels_last, which was never measured on CUDA), autocast computes in bf16 there, and a decoder step under it
    agrees with the fp32 step."""
    assert runtime.resolve_amp("auto", CUDA) == (True, "bf16 autocast on CUDA")
    assert runtime.resolve_amp(True, CUDA)[0] and not runtime.resolve_amp(False, CUDA)[0]
    rt = runtime.setup("cuda", "auto", seed=0)
    assert rt.device.type == "cuda" and rt.amp and rt.amp_reason == "bf16 autocast on CUDA"
    assert rt.channels_last == frozenset() and rt.record()["autocast"] is True
    layer = torch.nn.Linear(16, 8).to(rt.device)
    x = torch.randn(4, 16, device=rt.device, requires_grad=True)
    with runtime.autocast(rt):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert layer.weight.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()
    cosine = _fast_path_cosine(rt)
    assert cosine > 0.99, cosine
