"""Several subjects in one model: one encoder (or decoder) per subject, all sharing what can be shared.

The encoders share the image pathway (backbone and per-tap heads) and keep their own voxel readout (space maps,
channel mixes, branch mix); the decoders share the image-generating trunk (upsampling blocks and top) and keep their
own voxel -> seed-features input layer. Each member is a plain `Encoder` / `Decoder` whose shared modules are the same
objects as the first member's, so `members[str(N)]` is subject N's complete network (what reconstruct, the API and the
decoder's frozen encoder use), `parameters()` lists every shared weight once, and a checkpoint stores it once.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from brainrecon.models.decoder import Decoder, DecoderArch
from brainrecon.models.encoder import Encoder, EncoderArch


class _Members(nn.Module):
    """`members[str(N)]`: subject N's network, built by `make(arch, trunk)`; the first member is every other's trunk."""

    def __init__(self, archs: dict, make):
        super().__init__()
        subjects = list(archs)
        first = make(archs[subjects[0]], None)
        self.members = nn.ModuleDict({str(subjects[0]): first})
        for s in subjects[1:]:
            self.members[str(s)] = make(archs[s], first)

    @property
    def subjects(self) -> list[int]:
        return [int(k) for k in self.members]

    def forward(self, x: torch.Tensor, subject: int) -> torch.Tensor:
        return self.members[str(subject)](x)


class SubjectEncoders(_Members):
    def __init__(self, archs: dict[int, EncoderArch], backbone: nn.Module | None = None):
        super().__init__(archs, lambda arch, trunk: Encoder(arch, backbone if trunk is None else None, trunk=trunk))

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]


class SubjectDecoders(_Members):
    def __init__(self, archs: dict[int, DecoderArch]):
        super().__init__(archs, lambda arch, trunk: Decoder(arch, trunk=trunk))


def encoder_members(archs: dict[int, EncoderArch], backbone: nn.Module | None = None
                    ) -> tuple[nn.Module, dict[int, Encoder]]:
    """(the network a run trains and saves, each subject's encoder): a plain Encoder for one subject (saved in the
    single-subject format), a SubjectEncoders for several."""
    if len(archs) == 1:
        (s, arch), = archs.items()
        raw = Encoder(arch, backbone)
        return raw, {s: raw}
    group = SubjectEncoders(archs, backbone)
    return group, {s: group.members[str(s)] for s in archs}


def decoder_members(archs: dict[int, DecoderArch]) -> tuple[nn.Module, dict[int, Decoder]]:
    """As `encoder_members`, for decoders."""
    if len(archs) == 1:
        (s, arch), = archs.items()
        raw = Decoder(arch)
        return raw, {s: raw}
    group = SubjectDecoders(archs)
    return group, {s: group.members[str(s)] for s in archs}


def member_call(model, subject: int, single: bool):
    """Subject `subject`'s forward through `model` (the possibly DDP-wrapped run network)."""
    if single:
        return model
    return lambda x: model(x, subject=subject)
