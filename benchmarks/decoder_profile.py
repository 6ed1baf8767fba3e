"""python -m benchmarks.decoder_profile [--reps N] [--depth-input]: where one demo decoder step spends its time.

The demo's self-supervised step (configs/decoder/demo.yaml: decoder 32 ch at 64 px, D 24 + ED 48 + DE 16 samples,
effnet-lite0 perceptual, 1425 voxels) is cut into its parts, each timed forward + backward on its own at the step's
batch sizes, with random weights and inputs (speed does not depend on them):

- decoder: voxels -> image for the three batches, forward and backward to its weights;
- perceptual (predictions): the perceptual network on the 72 decoded images, forward and backward to its input;
- perceptual (targets): its features of the 72 fixed target images (no gradient): cached by train.cache_mb;
- encoder, ED cycle: E(x) of the 48 unpaired images (no gradient): cached by train.cache_mb;
- encoder, DE cycle: the frozen encoder on the 16 decoded images, forward and backward to its input;
- regularisers (group lasso on the input map, conv L1) and the optimiser (AMSGrad).

"before" is the step as it was: torch's nn.Upsample(bicubic) + ReflectionPad2d in the decoder blocks and nothing
cached; "after" is brainrecon's step now. The whole step is timed too, to show the parts add up.

--depth-input: what the rgbd encoder's depth input (model.depth_input grey | branch, configs/encoder/demo.yaml) costs,
both measured in the same run: an encoder training step (batch and input size of the demo encoder, forward and
backward to its weights), the ED cycle's E(x) of 48 images (no gradient) and the DE cycle's encoder pass over 16
decoded images (forward and backward to its input).
"""

from __future__ import annotations

import argparse
import time

import torch

from brainrecon import losses
from brainrecon.config import load_config
from brainrecon.models.decoder import Decoder, DecoderArch
from brainrecon.models.perceptual import build_perceptual_net
from brainrecon.runtime import autocast, setup
from brainrecon.train.distributed import place
from brainrecon.train.encoder import build_encoder

N_VOXELS = 1425


def timed(fn, reps: int) -> float:
    """Median ms of `reps` calls after one warm-up: this project's 2-core machines vary by 30 % from call to call."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times)[len(times) // 2]


def torch_upsampling(decoder: Decoder) -> Decoder:
    """The decoder as it was: torch's bicubic upsampling and reflection padding modules in each block."""
    for block in decoder.blocks:
        block[0] = torch.nn.Upsample(scale_factor=2, mode="bicubic", align_corners=False)
        block[1] = torch.nn.ReflectionPad2d(2)
    return decoder


def parts(device, variant: str, reps: int) -> tuple[dict, float]:
    """{part: ms} and the whole step's ms for a variant (before | after) as trained on this machine."""
    enc_cfg, cfg = load_config("encoder", "rgbd", "demo"), load_config("decoder", "rgbd", "demo")
    t, lc = cfg.train, cfg.loss
    runtime = setup(device.type, "auto")
    torch.manual_seed(0)
    encoder = place(build_encoder(enc_cfg, N_VOXELS, None).eval().requires_grad_(False), runtime, "encoder")
    decoder = Decoder(DecoderArch(N_VOXELS, "rgbd", cfg.model.channels, cfg.data.resolution // 8))
    decoder = place(torch_upsampling(decoder) if variant == "before" else decoder, runtime, "decoder")
    net = build_perceptual_net("effnet-lite0", "rgbd", None)
    image_loss = place(losses.ImageLoss("rgbd", torch.full((4,), 0.4), net, lc.perceptual_weights), runtime,
                            "perceptual")
    optimizer = torch.optim.Adam(decoder.parameters(), lr=t.lr, amsgrad=True)
    res = cfg.data.resolution
    n_d, n_ed, n_de = t.batch_size, t.unpaired_image_batch, t.unpaired_fmri_batch
    voxels = {k: torch.randn(n, N_VOXELS, device=device) for k, n in (("D", n_d), ("ED", n_ed), ("DE", n_de))}
    targets = torch.rand(n_d + n_ed, 4, res, res, device=device)
    snr = torch.ones(N_VOXELS, device=device)
    frozen = lambda: autocast(runtime)  # noqa: E731  (the decoder trains in fp32, see train/decoder.py)
    cached = variant == "after"
    feats = image_loss.target_features(targets)

    def decoder_part():
        decoder.zero_grad()
        sum(decoder(v).sum() for v in voxels.values()).backward()

    def perceptual_predictions():
        pred = targets.clone().requires_grad_()
        with frozen():
            f = image_loss.net(pred)
        sum((losses.unit_channels(f[k]) * feats[k]).sum() for k in f).backward()

    def perceptual_targets():
        with frozen():
            image_loss.target_features(targets)

    def encoder_ed():
        with torch.no_grad(), frozen():
            encoder(targets[:n_ed])

    def encoder_de():
        x = targets[:n_de].clone().requires_grad_()
        with frozen():
            encoder(x).float().sum().backward()

    def regularisers():
        decoder.zero_grad()
        reg = losses.decoder_group_lasso(decoder.input_map(), snr, lc.gl_l1, lc.gl_gl) + \
            lc.l1_convs * losses.l1(m.weight for m in decoder.modules() if isinstance(m, torch.nn.Conv2d))
        reg.backward()

    decoder_part()
    table = {"decoder": decoder_part, "perceptual (predictions)": perceptual_predictions,
             "perceptual (targets)": None if cached else perceptual_targets,
             "encoder, ED cycle (no gradient)": None if cached else encoder_ed,
             "encoder, DE cycle": encoder_de, "regularisers": regularisers, "optimiser": optimizer.step}
    ms = {name: timed(fn, reps) if fn is not None else 0.0 for name, fn in table.items()}

    def whole():
        with frozen():
            d = sum(image_loss(decoder(voxels["D"]).float(), targets[:n_d],
                               {k: v[:n_d] for k, v in feats.items()} if cached else None).values())
            if cached:
                ed_voxels = voxels["ED"]
            else:
                with torch.no_grad():
                    ed_voxels = encoder(targets[:n_ed]).float()
            ed = sum(image_loss(decoder(ed_voxels).float(), targets[n_d:],
                                {k: v[n_d:] for k, v in feats.items()} if cached else None).values())
            fmri = voxels["DE"]
            de = losses.fmri_loss(encoder(decoder(fmri)).float(), fmri, snr)
        loss = d + ed + de
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return ms, timed(whole, reps)


def depth_input_cost(device, reps: int) -> None:
    runtime = setup(device.type, "auto")
    dec_cfg = load_config("decoder", "rgbd", "demo")
    res, n_ed, n_de = dec_cfg.data.resolution, dec_cfg.train.unpaired_image_batch, dec_cfg.train.unpaired_fmri_batch
    print(f"demo rgbd encoder by depth input ({N_VOXELS} voxels, {device}, {runtime.amp_reason}; median ms of {reps})")
    print(f"  {'depth input':<12s} {'encoder step':>13s} {'ED E(x)':>9s} {'DE pass':>9s}")
    rows = {}
    for depth_input in ("grey", "branch"):
        cfg = load_config("encoder", "rgbd", "demo", [f"model.depth_input={depth_input}"])
        torch.manual_seed(0)
        encoder = place(build_encoder(cfg, N_VOXELS, None), runtime, "encoder")
        images = torch.rand(cfg.train.batch_size, 4, res, res, device=device)

        def step():
            encoder.zero_grad()
            with autocast(runtime):
                encoder(images).float().sum().backward()

        def ed():
            with torch.no_grad(), autocast(runtime):
                encoder(images[:n_ed])

        def de():
            x = images[:n_de].clone().requires_grad_()
            with autocast(runtime):
                encoder(x).float().sum().backward()

        encoder.train()
        t_step = timed(step, reps)
        encoder.eval()
        rows[depth_input] = t_step, t_ed, t_de = t_step, timed(ed, reps), timed(de, reps)
        print(f"  {depth_input:<12s} {t_step:13.1f} {t_ed:9.1f} {t_de:9.1f}")
    ratios = [g / b for g, b in zip(rows["grey"], rows["branch"])]
    print(f"  {'grey/branch':<12s} {ratios[0]:12.2f}x {ratios[1]:8.2f}x {ratios[2]:8.2f}x")


def profile(device, reps: int) -> None:
    runtime = setup(device.type, "auto")
    print(f"demo decoder step, part by part (demo.yaml, {N_VOXELS} voxels, {device}, {runtime.amp_reason}; "
          f"channels_last: {', '.join(sorted(runtime.channels_last)) or 'none'})")
    results = {v: parts(device, v, reps) for v in ("before", "after")}
    before_sum = sum(results["before"][0].values())
    print(f"  {'part':<34s} {'before ms':>10s} {'share':>6s} {'after ms':>10s} {'share':>6s}")
    after_sum = sum(results["after"][0].values())
    for name in results["before"][0]:
        b, a = results["before"][0][name], results["after"][0][name]
        shown = f"{a:10.1f} {a / after_sum:6.0%}" if a else f"{'cached':>10s} {'':>6s}"
        print(f"  {name:<34s} {b:10.1f} {b / before_sum:6.0%} {shown}")
    print(f"  {'sum of the parts':<34s} {before_sum:10.1f} {'':>6s} {after_sum:10.1f}")
    b, a = results["before"][1], results["after"][1]
    print(f"  {'whole step, timed':<34s} {b:10.1f} {'':>6s} {a:10.1f}   x{b / a:4.2f} vs before")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--depth-input", action="store_true", help="compare the rgbd encoder's depth inputs instead")
    args = ap.parse_args()
    (depth_input_cost if args.depth_input else profile)(torch.device(args.device), args.reps)


if __name__ == "__main__":
    main()
