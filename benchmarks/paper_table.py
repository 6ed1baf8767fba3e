"""python -m benchmarks.paper_table --data-dir DATA --subject 3: the 2021 paper's identification table, brainrecon
beside the published numbers, in one command.

Trains the paper presets' rgb-only, depth-only and rgbd encoders and decoders (the DE cycle off, as the published
`*_noDE` runs), reconstructs the test images, and evaluates them with the authors' protocol: n-way identification
(5 and 10) against distractors drawn from the ImageNet validation images (a pool of --pool-size images, 1,000 by
default, where the authors drew from all 50,000; depth: their MiDaS-large depth maps),
10 repeats per image, means over the test images; RGB scored with brainrecon's `perceptual-vgg` (torchvision's
ImageNet VGG16, pool1-5 channel cosine; the authors' uncalibrated LPIPS-VGG16 taps relu1_2-relu5_3: close, not the
same), depth with `depth-perceptual` (the release's vgg16_depth_only network, pool1-5 channel cosine: the authors').
The decoders leave the GOD test synsets out of their unpaired images (the presets' `data.exclude_classes: god-test`,
as the 2022 code); whether the 2021 runs did is not known here: `--decoder-set data.exclude_classes=none` keeps them.
Published: the official code's evaluation file (WeizmannVision/SelfSuperReconst `eval_results/eval.pkl`, subject 3,
means over the 50 test images, their SEM in brackets).

Every stage runs the `brainrecon` command a user would type (printed before it runs), into OUT/<stage>; the
commands and their completion are recorded in OUT/stages.json. A rerun skips every stage that finished with the same
command, continues an interrupted training with --resume, and redoes a stage whose command changed (and all after it).
Options for the numbers of epochs and for config overrides (--encoder-set / --decoder-set) make it run in minutes on
small data (the tests run it on the rehearsal world, where every network is random and the numbers meaningless).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

MODALITIES = ("rgb", "depth", "rgbd")
PUBLISHED_SOURCE = ("published: the official code's evaluation file (SelfSuperReconst eval_results/eval.pkl), "
                    "GOD subject 3, *_noDE runs, 10 repeats, ImageNet-val distractors")
PUBLISHED = (  # (row, decoder run, channel, ways, % correct as a fraction, SEM over images)
    ("rgb-only decoder, RGB", "dec_rgb", "rgb", 5, 0.952, 0.014),
    ("rgb-only decoder, RGB", "dec_rgb", "rgb", 10, 0.920, 0.024),
    ("rgbd decoder, RGB", "dec_rgbd", "rgb", 5, 0.940, 0.018),
    ("rgbd decoder, RGB", "dec_rgbd", "rgb", 10, 0.910, 0.024),
    ("rgbd decoder, depth", "dec_rgbd", "depth", 5, 0.760, 0.043),
    ("rgbd decoder, depth", "dec_rgbd", "depth", 10, 0.652, 0.056),
    ("depth-only decoder, depth", "dec_depth", "depth", 5, 0.700, 0.052),
    ("depth-only decoder, depth", "dec_depth", "depth", 10, 0.598, 0.057),
)
METRIC = {"rgb": "perceptual-vgg", "depth": "depth-perceptual"}


def stages(args) -> list[tuple[str, list[str], Path]]:
    """(name, brainrecon arguments, the file whose presence means the stage finished), in order."""
    out, s = Path(args.out), str(args.subject)
    common = ["--data-dir", str(args.data_dir)] + (["--device", args.device] if args.device else [])
    plan = []
    for m in MODALITIES:
        cmd = ["train-encoder", "--modality", m, "--subject", s, "--out", str(out / f"enc_{m}"), *common]
        cmd += (["--epochs", str(args.encoder_epochs)] if args.encoder_epochs else [])
        cmd += [x for v in args.encoder_set for x in ("--set", v)]
        plan.append((f"enc_{m}", cmd, out / f"enc_{m}" / "metrics.json"))
    for m in MODALITIES:
        cmd = ["train-decoder", "--modality", m, "--subject", s, "--encoder", str(out / f"enc_{m}"), "--out",
               str(out / f"dec_{m}"), *common]
        cmd += (["--epochs", str(args.decoder_epochs)] if args.decoder_epochs else [])
        cmd += [x for v in args.decoder_set for x in ("--set", v)]
        plan.append((f"dec_{m}", cmd, out / f"dec_{m}" / "metrics.json"))
    for m in MODALITIES:
        plan.append((f"reconstruct_{m}", ["reconstruct", str(out / f"dec_{m}"), "--data-dir", str(args.data_dir)]
                     + (["--device", args.device] if args.device else []),
                     out / f"dec_{m}" / "reconstruct_test" / "reconstructions.npz"))
    plan.append(("evaluate", ["evaluate", *(str(out / f"dec_{m}") for m in MODALITIES), "--ways", "5,10",
                              "--distractors", "imagenet", "--repeats", str(args.repeats), "--pool-size",
                              str(args.pool_size), "--metric", METRIC["rgb"], "--metric", METRIC["depth"], "--mode",
                              "percent", "--seed", str(args.seed), "--data-dir", str(args.data_dir), "--out",
                              str(out / "evaluation")],
                 out / "evaluation" / "identification.json"))
    return plan


def run_stages(args, say=print) -> dict[str, str]:
    """Run what is not done; returns stage -> ran | resumed | skipped. A stage is skipped when it finished before with
    the same command and nothing before it was redone; an interrupted training with the same command is resumed;
    anything else starts afresh (its old run folder removed), and so does every stage after it."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record_path = out / "stages.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    what, redo = {}, False
    for name, cmd, done in stages(args):
        old = record.get(name, {})
        same = old.get("command") == cmd and not redo
        if same and old.get("finished") and done.exists():
            what[name] = "skipped"
            say(f"[{name}] finished before with the same command: skipped")
            continue
        redo = True
        training = name.startswith(("enc_", "dec_"))
        resume = same and training and (done.parent / "last.pt").exists()
        if training and not resume and done.parent.exists():
            shutil.rmtree(done.parent)
        full = cmd + (["--resume"] if resume else [])
        say(f"[{name}] brainrecon {' '.join(full)}")
        record[name] = {"command": cmd, "finished": False}
        record_path.write_text(json.dumps(record, indent=1))
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "brainrecon", *full], env=os.environ.copy())
        if proc.returncode != 0:
            raise SystemExit(f"[{name}] exited {proc.returncode}; fix the cause and run the same command again to "
                             "continue from this stage")
        record[name] = {"command": cmd, "finished": True, "seconds": round(time.perf_counter() - t0, 1)}
        record_path.write_text(json.dumps(record, indent=1))
        what[name] = "resumed" if resume else "ran"
    return what


def table(evaluation: Path) -> list[dict]:
    """One row per published number: brainrecon's mean and 95 % CI beside it, and the difference with its CI
    (normal approximation from both standard errors: brainrecon's from its bootstrap CI, the published SEM)."""
    records = json.loads(Path(evaluation).read_text())
    rows = []
    for label, run, channel, ways, pub, pub_sem in PUBLISHED:
        hit = [r for r in records if r["run"] == run and r["channel"] == channel and r["ways"] == ways
               and r["mode"] == "percent" and r["metric"] == METRIC[channel]]
        if not hit:
            raise SystemExit(f"{evaluation}: no {METRIC[channel]} {ways}-way row for {run} ({channel}); rerun the "
                             "evaluate stage")
        r = hit[0]
        se = (r["ci_high"] - r["ci_low"]) / (2 * 1.96)
        diff, half = r["mean"] - pub, 1.96 * math.sqrt(se ** 2 + pub_sem ** 2)
        rows.append({"row": label, "ways": ways, "metric": METRIC[channel], "published": pub,
                     "published_sem": pub_sem, "brainrecon": r["mean"], "ci_low": r["ci_low"],
                     "ci_high": r["ci_high"], "difference": diff, "diff_ci_low": diff - half,
                     "diff_ci_high": diff + half, "n_images": r["n_images"], "repeats": r["repeats"]})
    return rows


def render(rows: list[dict], subject: int) -> str:
    lines = ["n-way identification, % correct (chance 20 % at 5-way, 10 % at 10-way), ImageNet-val distractors",
             f"  brainrecon: subject {subject}, mean over {rows[0]['n_images']} test images, {rows[0]['repeats']} "
             "repeats, 95 % bootstrap CI over images",
             f"  {PUBLISHED_SOURCE}; mean (SEM)",
             "  difference = brainrecon - published, 95 % CI from both standard errors",
             f"{'':27s} {'n':>3s}  {'metric':16s}  {'published':>12s}  {'brainrecon [95% CI]':>21s}  "
             f"{'difference [95% CI]':>24s}"]
    for r in rows:
        lines.append(f"{r['row']:27s} {r['ways']:3d}  {r['metric']:16s}  {100 * r['published']:5.1f} "
                     f"({100 * r['published_sem']:3.1f})   {100 * r['brainrecon']:5.1f} [{100 * r['ci_low']:5.1f}, "
                     f"{100 * r['ci_high']:5.1f}]   {100 * r['difference']:+6.1f} [{100 * r['diff_ci_low']:+6.1f}, "
                     f"{100 * r['diff_ci_high']:+6.1f}]")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.paper_table", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, type=Path, help="GOD data folder (the release, or convert-god's).")
    p.add_argument("--subject", type=int, default=3, help="GOD subject (the published numbers are subject 3's).")
    p.add_argument("--out", type=Path, default=None, help="Runs and tables (default runs/paper_table_sub<N>).")
    p.add_argument("--encoder-epochs", type=int, default=None, help="Encoder epochs (default the preset's, 50).")
    p.add_argument("--decoder-epochs", type=int, default=None, help="Decoder epochs (default the preset's, 150).")
    p.add_argument("--encoder-set", action="append", default=[], help="Encoder config override (repeatable).")
    p.add_argument("--decoder-set", action="append", default=[], help="Decoder config override (repeatable).")
    p.add_argument("--repeats", type=int, default=10, help="Distractor draws per image (the authors': 10).")
    p.add_argument("--pool-size", type=int, default=1000, help="ImageNet-val distractor pool.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="auto | cpu | cuda | mps")
    return p


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    args.out = args.out or Path(f"runs/paper_table_sub{args.subject}")
    if args.subject != 3:
        print(f"note: the published numbers are subject 3's; subject {args.subject} is compared with them anyway")
    run_stages(args)
    rows = table(Path(args.out) / "evaluation" / "identification.json")
    text = render(rows, args.subject)
    print(text)
    (Path(args.out) / "paper_table.txt").write_text(text + "\n")
    with open(Path(args.out) / "paper_table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


if __name__ == "__main__":
    main()
