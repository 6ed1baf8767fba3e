"""python -m benchmarks [--quick]: speed figures, each next to a baseline measured in the same run, as a ratio.

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
from brainrecon.train.encoder import build_encoder, encoder_loss


def timed(fn, reps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps * 1000


def row(name: str, ms: float, base: float, unit: str = "ms/step") -> None:
    print(f"  {name:<38s} {ms:10.1f} {unit:8s}  x{base / ms:5.2f} vs baseline")


def time_step(variant: str, loss_fn, optimizer, reps: int, base: float | None) -> float:
    """Time one optimiser step of `loss_fn`, print it against the baseline; returns the baseline."""
    def step():
        loss = loss_fn()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    ms = timed(step, reps)
    row(variant, ms, base or ms)
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


def evaluate_speed(reps: int) -> None:
    from brainrecon.evaluate import distance_matrix, identification
    rng = np.random.default_rng(0)
    recon = rng.integers(0, 256, (50, 112, 112, 3), dtype=np.uint8)
    truth = rng.integers(0, 256, (50, 112, 112, 3), dtype=np.uint8)
    print("evaluate: 50 reconstructions x ways 2,5,10 x 100 repeats")

    def naive():  # the original's shape: distances recomputed for every repeat and candidate
        from brainrecon.evaluate import pixcorr_distance
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
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    reps = 1 if args.quick else 3
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    evaluate_speed(reps)
    encoder_step(device, 1500 if args.quick else 4500, 64, reps)
    decoder_step(device, 1500 if args.quick else 4500, reps)
    depth_speed(args.quick)
    print("peak memory of the demo: run `/usr/bin/time -v brainrecon demo` (Maximum resident set size)")


if __name__ == "__main__":
    main()
