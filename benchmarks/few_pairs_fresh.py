"""A larger, fresh test set for the few-pairs study's simulated subject, and every kept decoder reconstructed on it
(`python -m benchmarks.few_pairs fresh OUT REGIME [N]`; docs/results.md, "The ninth pass").

The 50-image test set bounds every interval of the study; the same trained decoders can be measured again on N new
scenes of the same subject. The subject's voxel model is rebuilt from the simulation seed exactly as `simulate`
built it (normalised over the same paired stimuli) and checked against the stored training fMRI before anything is
written; the new scenes come from the simulator's renderer with a generator seed of their own, each shown
`n_repeats` times with fresh single-trial noise, averaged, as the release's test set is.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from brainrecon.data import layout, release
from brainrecon.simulation import soc
from brainrecon.simulation.group import subject_voxels
from brainrecon.simulation.simulate import SimulationConfig, build_model, noisy_trials, render_scenes

FRESH_SEED = 104729          # the fresh scenes' generator seed, added to the simulation seed (a prime: no overlap
                             # with the paired (seed) and unpaired (seed + 7919) streams)
SKIPPED = ("both_cycles__transductive",)    # its DE cycle read the 50-image test scans: not its arm on a fresh set


def fresh_name(n_images: int) -> str:
    return f"fresh{n_images}"


def fresh_data(data: Path, cfg: SimulationConfig, subject: int, n_images: int, out: Path | None = None) -> Path:
    """Write `out` (default data_fresh<N> beside `data`): `data`'s training stimuli and fMRI for `subject`, with a
    test set of `n_images` new scenes and their repeat-averaged responses. Reused when done. `data` is a group's
    folder (`simulate --subjects`, whose voxel count is drawn per subject) made with `cfg`."""
    out = Path(out) if out else data.parent / f"data_{fresh_name(n_images)}"
    target = layout.subject_file(out, subject)
    if target.exists():
        return out
    sub = replace(cfg, subject=subject, n_voxels=subject_voxels(cfg, subject))
    paired = render_scenes(cfg.n_train + cfg.n_test, cfg.resolution, torch.Generator().manual_seed(cfg.seed))
    model, clean = build_model(sub, paired)
    with np.load(layout.subject_file(data, subject)) as z:
        stored = {k: z[k] for k in z.files}
    rng = np.random.default_rng(cfg.seed * 1000 + subject)                  # simulate_subject's stream, replayed
    again = noisy_trials(clean[rng.permutation(cfg.n_train)], model.reliability, rng)
    if again.shape != stored["arr_0"].shape or not np.allclose(again, stored["arr_0"], atol=1e-3):
        raise SystemExit(f"{layout.subject_file(data, subject)}: the voxel model rebuilt from {cfg} does not give its "
                         "training fMRI; give the settings that simulated it")
    scenes = render_scenes(n_images, cfg.resolution, torch.Generator().manual_seed(cfg.seed + FRESH_SEED))
    fresh = soc.responses(model, soc.components(model, soc.FieldMaps()(scenes))).numpy()
    rng = np.random.default_rng([cfg.seed, subject, FRESH_SEED])
    labels = np.tile(np.arange(n_images), cfg.n_repeats)[rng.permutation(n_images * cfg.n_repeats)]
    trials = noisy_trials(fresh[labels], model.reliability, rng)
    grouped = trials[np.argsort(labels, kind="stable")].reshape(n_images, cfg.n_repeats, -1)
    ceiling, snr = release.noise_ceiling_from_repeats(grouped)
    out.mkdir(parents=True, exist_ok=True)
    train = paired[:cfg.n_train]
    release.write_stimuli(layout.stimuli_file(out, cfg.resolution), train[..., :3], scenes[..., :3])
    release.write_stimuli(layout.rgbd_file(out, cfg.resolution), train, scenes)
    manifest = json.loads((data / "simulated.json").read_text())
    manifest["fresh_test"] = {"images": n_images, "repeats": cfg.n_repeats, "scene_seed": cfg.seed + FRESH_SEED,
                              "subject": subject, "from": str(data)}
    (out / "simulated.json").write_text(json.dumps(manifest, indent=2))
    arrays = {**{k: stored[k] for k in ("arr_0", "arr_3")}, "arr_1": trials, "arr_2": grouped.mean(1),
              "arr_4": labels.astype(np.int64), "arr_5": ceiling.astype(np.float32),
              "arr_6": np.maximum(snr, 1e-3).astype(np.float32)}
    release.write_subject(target, arrays, {k: v for k, v in stored.items() if not k.startswith("arr_")})
    return out


def reconstruct_kept(root: Path, data: Path, n_images: int) -> list[Path]:
    """Every kept decoder run under `root` (<point>_seed<k>/<arm>/) reconstructed on `data` into
    reconstruct_fresh<N>/ (reused when done). Returns the files."""
    from brainrecon.reconstruct import NPZ, reconstruct
    done = []
    for run in sorted(p.parent for p in root.glob("*_seed*/*/metrics.json")):         # finished runs only
        if run.name in SKIPPED:
            continue
        out = run / f"reconstruct_{fresh_name(n_images)}"
        if not (out / NPZ).exists():
            reconstruct(run, "test", out=out, data_dir=data)
        done.append(out / NPZ)
    return done
