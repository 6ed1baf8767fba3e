"""bf16 autocast where the hardware has it: `train.amp: auto` resolution, and a fast-path step that agrees with fp32."""

from __future__ import annotations

import warnings

import pytest
import torch

from brainrecon import losses
from brainrecon.config import load_config
from brainrecon.errors import ConfigError
from brainrecon.models.decoder import Decoder, DecoderArch
from brainrecon.models.perceptual import build_perceptual_net
from brainrecon.train import core

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def native(monkeypatch):
    """Pretend this CPU has (True) or lacks (False) native bf16."""
    def set_(value: bool):
        monkeypatch.setattr(core, "cpu_bf16", lambda: (value, "bf16 autocast: mocked" if value else "fp32: mocked"))
        monkeypatch.setattr(core, "_warned", set())
    return set_


def test_auto_is_on_for_cuda_and_native_bf16_cpus_only(native):
    native(True)
    assert core.resolve_amp("auto", CUDA)[0] and core.resolve_amp("auto", CPU)[0]
    native(False)
    assert core.resolve_amp("auto", CUDA)[0]
    assert core.resolve_amp("auto", CPU) == (False, "fp32: mocked")
    assert not core.resolve_amp(False, CUDA)[0] and not core.resolve_amp(False, CPU)[0]
    assert not core.resolve_amp("auto", torch.device("mps"))[0]


def test_forcing_bf16_on_a_cpu_without_it_warns_once(native):
    native(False)
    with pytest.warns(UserWarning, match="no native bf16"):
        on, why = core.resolve_amp(True, CPU)
    assert on and "emulated" in why
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert core.resolve_amp(True, CPU)[0]                   # the second time: no warning
    native(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert core.resolve_amp(True, CPU) == (True, "bf16 autocast: forced by train.amp true")


@pytest.mark.parametrize("machine,flags,expected", [
    ("x86_64", {"avx512f", "avx512_bf16"}, True),
    ("x86_64", {"avx512f", "avx512bw"}, False),        # oneDNN would emulate bf16 here: slower than fp32
    ("x86_64", None, False),                            # flags unreadable: never assume
    ("aarch64", None, True),                            # oneDNN's check is the native BF16 feature on ARM
])
def test_cpu_bf16_needs_native_instructions(monkeypatch, machine, flags, expected):
    monkeypatch.setattr(core.platform, "machine", lambda: machine)
    monkeypatch.setattr(core, "_cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    native, why = core.cpu_bf16.__wrapped__()
    assert native is expected, why


def test_amp_config_values():
    assert load_config("encoder", "rgb", "paper").train.amp == "auto"
    assert load_config("encoder", "rgb", "paper", ["train.amp=false"]).train.amp is False
    with pytest.raises(ConfigError, match="train.amp"):
        load_config("encoder", "rgb", "paper", ["train.amp=sometimes"])


def test_fast_path_step_agrees_with_fp32():
    """One decoder step as train-decoder runs it under autocast (decoder fp32, frozen perceptual net in bf16 and
    channels_last): finite losses, gradients aligned with the all-fp32 step."""
    torch.manual_seed(0)
    decoder = Decoder(DecoderArch(n_voxels=40, modality="rgbd", channels=32, start_size=4))
    net = build_perceptual_net("vgg16-random", "rgbd", None, width=0.25)
    image_loss = losses.ImageLoss("rgbd", torch.full((4,), 0.4), net)
    voxels, target = torch.randn(6, 40), torch.rand(6, 4, 32, 32)

    def gradient(fast: bool) -> torch.Tensor:
        decoder.zero_grad(set_to_none=True)
        image_loss.to(memory_format=torch.channels_last if fast else torch.contiguous_format)
        pred = decoder(voxels)
        with core.autocast(core.Runtime(device=CPU, amp=fast)):
            terms = image_loss(pred, target)
        assert all(torch.isfinite(v) for v in terms.values())
        sum(terms.values()).backward()
        return torch.cat([p.grad.flatten() for p in decoder.parameters()])
    fp32, fast = gradient(False), gradient(True)
    assert torch.isfinite(fast).all()
    cosine = torch.nn.functional.cosine_similarity(fp32, fast, dim=0)
    assert cosine > 0.99, float(cosine)
