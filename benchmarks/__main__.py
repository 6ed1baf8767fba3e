"""python -m benchmarks [--quick]: speed figures, each next to a baseline measured in the same run, as a ratio.

- where one demo decoder step spends its time, part by part, before and after the exact caches and the matrix-form
  upsampling (benchmarks/decoder_profile.py);
- the demo's encoder and decoder steps (demo configs): fp32 (baseline) vs channels_last vs bf16 autocast vs both, and
  "as trained" (what `train.amp: auto` and brainrecon.runtime.CHANNELS_LAST choose on this machine). Each line also
  gives the step's share of the machine's measured matmul throughput (FLOPs of one step counted by torch's
  FlopCounterMode / step time, over a large matmul's GFLOP/s in the same dtype): the distance to the physical floor;
- encoder / decoder training step (ms/step at paper batch sizes, 112 px): eager fp32 (baseline) vs channels_last vs
  bf16 autocast (CPU here; CUDA when present);
- evaluate: the vectorised identification vs a naive per-repeat loop (50 reconstructions, ways 2,5,10, 100 repeats,
  pixcorr and ssim);
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
import torch

from brainrecon.config import load_config
from brainrecon.models.decoder import Decoder, DecoderArch
from brainrecon.runtime import autocast, cpu_bf16, resolve_amp, setup
from brainrecon.train.distributed import place
from brainrecon.train.encoder import build_encoder, encoder_loss


def timed(fn, reps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps * 1000


def row(name: str, ms: float, base: float, unit: str = "ms/step", extra: str = "") -> None:
    print(f"  {name:<38s} {ms:10.1f} {unit:8s}  x{base / ms:5.2f} vs baseline{extra}")


PEAK: dict = {}


def matmul_gflops(device, dtype) -> float:
    """Measured GFLOP/s of a large square matmul in `dtype`: the physical floor every step is compared with."""
    key = (str(device), dtype)
    if key not in PEAK:
        n = 2048
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        ms = timed(lambda: a @ b, 3)
        PEAK[key] = 2 * n ** 3 / (ms / 1000) / 1e9
    return PEAK[key]


def step_flops(step) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def time_step(variant: str, loss_fn, optimizer, reps: int, base: float | None, device=None) -> float:
    """Time one optimiser step of `loss_fn`, print it against the baseline and its share of the machine's matmul
    throughput; returns the baseline."""
    def step():
        loss = loss_fn()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    ms = timed(step, reps)
    extra = ""
    if device is not None:
        dtype = torch.bfloat16 if "bf16" in variant or "as trained" in variant and cpu_bf16()[0] \
            else torch.float32
        gflops = step_flops(step) / (ms / 1000) / 1e9
        peak = matmul_gflops(device, dtype)
        extra = f"   {gflops:6.1f} GFLOP/s = {gflops / peak:4.0%} of {str(dtype)[6:]} matmul ({peak:.0f})"
    row(variant, ms, base or ms, extra=extra)
    return base or ms


def encoder_step(device, n_voxels: int, batch: int, reps: int) -> None:
    cfg = load_config("encoder", "rgbd", "paper", ["model.backbone_weights=none", f"train.batch_size={batch}"])
    print(f"encoder train step: VGG19 frozen, 112 px, batch {batch}, {n_voxels} voxels, dropout 0.5 ({device})")
    base = None
    for variant in ("eager fp32 (baseline)", "channels_last", "bf16 autocast"):
        model = build_encoder(cfg, n_voxels, None).to(device)
        if variant == "channels_last":
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.trainable_parameters(), lr=1e-3)
        x = torch.rand(batch, 4, 112, 112, device=device)
        y = torch.randn(batch, n_voxels, device=device)
        if variant == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        ctx = torch.autocast(device.type, dtype=torch.bfloat16) if variant == "bf16 autocast" else \
            contextlib.nullcontext()

        def loss():
            with ctx:
                pred = model(x).float()
            return encoder_loss(model, pred, y, cfg)[0]
        base = time_step(variant, loss, opt, reps, base)


def decoder_step(device, n_voxels: int, reps: int) -> None:
    from brainrecon import losses
    from brainrecon.models.perceptual import build_perceptual_net
    print(f"decoder train step: 64-ch decoder at 112 px, batches 24 paired + 48 unpaired images, VGG16 perceptual "
          f"({device})")
    base = None
    for variant in ("eager fp32 (baseline)", "channels_last", "bf16 autocast"):
        dec = Decoder(DecoderArch(n_voxels, "rgbd", 64, 14)).to(device)
        net = build_perceptual_net("vgg16-random", "rgbd", None).to(device)
        loss_fn = losses.ImageLoss("rgbd", torch.full((4,), 0.4), net).to(device)
        if variant == "channels_last":
            dec, net = dec.to(memory_format=torch.channels_last), net.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(dec.parameters(), lr=5e-3, amsgrad=True)
        v = torch.randn(72, n_voxels, device=device)
        target = torch.rand(72, 4, 112, 112, device=device)
        ctx = torch.autocast(device.type, dtype=torch.bfloat16) if variant == "bf16 autocast" else \
            contextlib.nullcontext()

        def loss():
            with ctx:
                return sum(loss_fn(dec(v).float(), target).values())
        base = time_step(variant, loss, opt, reps, base)


VARIANTS = ("fp32 (baseline)", "channels_last", "bf16 autocast", "bf16 + channels_last", "as trained")


def _variant(name: str, device, *nets):
    """Apply a variant's memory format to the nets; return (autocast context of frozen nets, of the trained net)."""
    if name == "as trained":  # what train-encoder / train-decoder do on this machine
        runtime = setup(device.type, "auto")
        for net, role in zip(nets, ("encoder", "decoder", "perceptual")):
            place(net, runtime, role)
        # the encoder trains under autocast; the decoder trains in fp32 (autocast off inside the frozen nets' context)
        trained = autocast(runtime) if len(nets) == 1 else torch.autocast(device.type, enabled=False)
        return autocast(runtime), trained
    if "channels_last" in name:
        for net in nets:
            net.to(memory_format=torch.channels_last)
    if "bf16" in name:
        return torch.autocast(device.type, dtype=torch.bfloat16), torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext(), contextlib.nullcontext()


def demo_steps(device, reps: int) -> None:
    """The demo's own steps (configs/*/demo.yaml, the --full demo's subject size): what `train.amp: auto` and the
    channels_last choice in brainrecon.runtime were decided on."""
    from brainrecon import losses
    from brainrecon.models.perceptual import build_perceptual_net
    n_voxels = 1425
    enc_cfg = load_config("encoder", "rgbd", "demo")
    dec_cfg = load_config("decoder", "rgbd", "demo")
    t = dec_cfg.train
    print(f"demo steps: encoder (demo.yaml, 64 px, batch 64) and self-supervised decoder (D {t.batch_size} + ED "
          f"{t.unpaired_image_batch} + DE {t.unpaired_fmri_batch}, effnet-lite0 perceptual), {n_voxels} voxels "
          f"({device})")
    for stage in ("encoder", "decoder"):
        print(f" {stage}")
        base = None
        for variant in VARIANTS:
            torch.manual_seed(0)
            encoder = build_encoder(enc_cfg, n_voxels, None).to(device)
            x = torch.rand(64, 4, 64, 64, device=device)
            if stage == "encoder":
                _, ctx = _variant(variant, device, encoder)
                opt = torch.optim.Adam(encoder.trainable_parameters(), lr=1e-3)
                y = torch.randn(64, n_voxels, device=device)

                def loss():
                    with ctx:
                        pred = encoder(x).float()
                    return encoder_loss(encoder, pred, y, enc_cfg)[0]
            else:
                encoder.eval().requires_grad_(False)
                dec = Decoder(DecoderArch(n_voxels, "rgbd", dec_cfg.model.channels, 8)).to(device)
                net = build_perceptual_net("effnet-lite0", "rgbd", None)
                image_loss = losses.ImageLoss("rgbd", torch.full((4,), 0.4), net,
                                              dec_cfg.loss.perceptual_weights).to(device)
                frozen, trained = _variant(variant, device, encoder, dec, image_loss)
                opt = torch.optim.Adam(dec.parameters(), lr=5e-3, amsgrad=True)
                v = torch.randn(t.batch_size, n_voxels, device=device)
                fmri = torch.randn(t.unpaired_fmri_batch, n_voxels, device=device)
                images = torch.rand(t.unpaired_image_batch, 4, 64, 64, device=device)

                def decode(z):
                    with trained:
                        return dec(z).float()

                def loss():
                    with frozen:
                        d = sum(image_loss(decode(v), x[:t.batch_size]).values())
                        with torch.no_grad():
                            voxels = encoder(images).float()
                        ed = sum(image_loss(decode(voxels), images).values())
                        de = losses.fmri_loss(encoder(decode(fmri)).float(), fmri, torch.ones(n_voxels))
                    return d + ed + de
            base = time_step(variant, loss, opt, reps, base, device)


def evaluate_speed(reps: int) -> None:
    from brainrecon.evaluation.distances import distance_matrix
    from brainrecon.evaluation.statistics import identification
    rng = np.random.default_rng(0)
    recon = rng.integers(0, 256, (50, 112, 112, 3), dtype=np.uint8)
    truth = rng.integers(0, 256, (50, 112, 112, 3), dtype=np.uint8)
    print("evaluate: 50 reconstructions x ways 2,5,10 x 100 repeats (evaluate has no bf16 path: metrics are computed "
          "in full precision)")

    def naive():  # the original's shape: distances recomputed for every repeat and candidate
        from brainrecon.evaluation.distances import pixcorr_distance
        r = np.random.default_rng(0)
        for ways in (2, 5, 10):
            for i in range(50):
                for _ in range(100):
                    others = r.choice([j for j in range(50) if j != i], ways - 1, replace=False)
                    cand = truth[[i, *others]]
                    pixcorr_distance(recon[i:i + 1], cand)

    def vectorised():
        d = distance_matrix("pixcorr", recon, truth)
        for ways in (2, 5, 10):
            identification(d, ways, 100, np.random.default_rng(ways))
    base = timed(naive, 1, 0)
    row("pixcorr, naive per-repeat loop (baseline)", base, base, "ms")
    row("pixcorr, distances once + vectorised", timed(vectorised, reps), base, "ms")
    for metric in ("pixcorr", "ssim"):
        ms = timed(lambda: distance_matrix(metric, recon, truth), 1, 0)
        print(f"  per-metric distance matrix {metric:<12s} {ms:10.1f} ms")


def depth_speed(quick: bool) -> None:
    from brainrecon.depth import predict
    from brainrecon.models.midas import MidasNet
    print("make-depth: MiDaS v2.1 on 375x500 images (random weights: speed does not depend on them)")
    rng = np.random.default_rng(0)
    for size in ("small", "large"):
        net = MidasNet(size).eval()
        base = None
        for batch in (1,) if quick else (1, 16):
            images = list(rng.integers(0, 256, (batch, 375, 500, 3), dtype=np.uint8))
            ms = timed(lambda: predict(net, images, "cpu"), 1 if quick else 2)
            ips = batch / ms * 1000
            base = base or ips
            print(f"  {size:<6s} batch {batch:<3d} {ips:8.2f} images/s   x{ips / base:5.2f} vs batch 1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and voxels")
    ap.add_argument("--demo-only", action="store_true", help="only the demo-config steps")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    reps = 1 if args.quick else 3
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}; "
          f"train.amp auto here: {resolve_amp('auto', device)[1]}")
    demo_steps(device, reps)
    from benchmarks.decoder_profile import profile
    profile(device, 3 if args.quick else 5)
    if args.demo_only:
        return
    evaluate_speed(reps)
    encoder_step(device, 1500 if args.quick else 4500, 64, reps)
    decoder_step(device, 1500 if args.quick else 4500, reps)
    depth_speed(args.quick)
    print("peak memory of the demo: run `/usr/bin/time -v brainrecon demo` (Maximum resident set size)")


if __name__ == "__main__":
    main()
