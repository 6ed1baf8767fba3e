"""python -m benchmarks.amp_quality OUT: the quality check behind `train.amp: auto` on CPUs with native bf16.

On the --full demo's subject (DEMO_SUBJECT), with the demo configs and the same seed, trains the encoder and the
self-supervised decoder twice, autocast off (fp32) and on (bf16), and prints the encoder's median r / ceiling and the
decoder's n-way identification (RGB pixcorr and perceptual-effnet, 95 % bootstrap CIs). The bf16 numbers must lie inside
the fp32 run's 95 % CI. Long: about 15 minutes on 2 cores (speed is measured by `python -m benchmarks`, not here).
Writes OUT/amp_quality.csv; the committed result is benchmarks/results/amp_quality.csv.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from brainrecon.config import load_config
from brainrecon.demo import DEMO_SUBJECT
from brainrecon.evaluation.identification import EvalOptions, evaluate_runs
from brainrecon.reconstruct import load_reconstructions, reconstruct
from brainrecon.simulation.simulate import simulate_subject
from brainrecon.train.decoder import train_decoder
from brainrecon.train.encoder import train_encoder


def main(out: Path, epochs: list[str]) -> None:
    data = out / "data"
    if not (data / "simulated.json").exists():
        simulate_subject(data, DEMO_SUBJECT)
    rows = []
    for amp in ("false", "auto"):
        sets = [f"train.amp={amp}"]
        enc_dir, dec_dir = out / f"encoder_amp_{amp}", out / f"decoder_amp_{amp}"
        enc = train_encoder(load_config("encoder", "rgbd", "demo", sets), data, enc_dir,
                            resume=(enc_dir / "last.pt").exists(), quiet=True)
        dec = train_decoder(load_config("decoder", "rgbd", "demo", sets + epochs), data, dec_dir,
                            encoder_run=enc_dir, resume=(dec_dir / "last.pt").exists(), quiet=True)
        records, _ = evaluate_runs([load_reconstructions(reconstruct(dec_dir, "test", data_dir=data))],
                                   EvalOptions(ways=(2, 5, 10), metrics=("pixcorr", "perceptual-effnet"),
                                               repeats=100, mode="percent"), data)
        base = {"amp": amp, "autocast": enc["autocast"], "why": enc["autocast_reason"],
                "decoder_epochs": dec["epochs"]}
        rows.append({**base, "metric": "encoder median r/ceiling", "channel": "", "ways": "",
                     "mean": round(enc["median_r_over_ceiling"], 4), "ci_low": "", "ci_high": ""})
        for r in records:
            if r["channel"] == "rgb":
                rows.append({**base, "metric": r["metric"], "channel": r["channel"], "ways": r["ways"],
                             "mean": round(r["mean"], 4), "ci_low": round(r["ci_low"], 4),
                             "ci_high": round(r["ci_high"], 4)})
        print(json.dumps(rows[-7:], indent=None), flush=True)
    with open(out / "amp_quality.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        print(f"{r['amp']:>5s} {r['metric']:<26s} {r['ways']!s:>3s} {r['mean']:.3f} [{r['ci_low']!s}-{r['ci_high']!s}]")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
