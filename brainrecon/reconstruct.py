"""reconstruct: decode test-average (or training) fMRI with a trained decoder into arrays and pictures.

The decoder is a train-decoder run folder, a `brainrecon export` folder or a Hub id `hf://owner/name`
(train/exported.py); an exported model is never written into, so its outputs need an `out` folder.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import yaml

from brainrecon.atomic import write_atomic
from brainrecon.config import to_dict
from brainrecon.data import layout
from brainrecon.data.datasets import load_paired
from brainrecon.data.group import member_dir
from brainrecon.data.transforms import as_float, to_uint8
from brainrecon.errors import UserError
from brainrecon.runtime import pick_device
from brainrecon.train import checkpoint
from brainrecon.train.checkpoint import load_decoder, load_encoder
from brainrecon.train.exported import is_exported, is_hub_id, resolve_run, run_name
from brainrecon.viz import gallery, save_png, side_by_side

NPZ = "reconstructions.npz"


def run_data_dir(run_dir: Path, flag: str | Path | None, state: dict | None = None) -> Path:
    """--data-dir if given, else the folder the run was trained on, else the shared rule (env, OS cache); an
    exported model records no folder. `state`: the run's best state, if already read."""
    if flag:
        return Path(flag)
    recorded = (state or checkpoint.load_best(Path(run_dir), "decoder")).get("data_dir")
    return Path(recorded) if recorded and Path(recorded).exists() else layout.data_dir(None)


CEILING = "D(E(x))"


def encoded_ceiling(state: dict, model, images: torch.Tensor, dev, subject: int | None = None) -> np.ndarray | None:
    """D(E(x)): the decoder applied to its encoder's prediction for each image -- what it makes of noise-free,
    perfectly encoded activity (uint8, like the reconstructions); `state`: the decoder run's best state; `subject`:
    the member of a multi-subject run. None for a run without an encoder (ridge, a supervised-only decoder trained
    without one, an exported model) or when the encoder run is gone."""
    encoder_run = state.get("encoder_run") or ""
    if not encoder_run or not (Path(encoder_run) / checkpoint.BEST).exists():
        return None
    encoder = load_encoder(Path(encoder_run), dev, subject)
    with torch.no_grad():
        out = [model(encoder(as_float(images[i:i + 64].to(dev)))).float().cpu() for i in range(0, len(images), 64)]
    return to_uint8(torch.cat(out))


def distinct_runs(recons: list[dict]) -> list[dict]:
    """The reconstruction sets with a name of their own each: a name that several sets share (two `decoder_rgbd` run
    folders from different output folders) gets, in brackets, the part of its folder's path that tells it from the
    others, so evaluate scores and compares them as different runs instead of merging them."""
    import os
    if not all("path" in rec for rec in recons):
        return recons
    names = [str(rec["run"]) for rec in recons]
    folders = [str(Path(rec["path"]).parent.resolve()) for rec in recons]
    out = []
    for rec, name, folder in zip(recons, names, folders):
        shared = [f for f, n in zip(folders, names) if n == name]
        if len(shared) > 1:
            rec = {**rec, "run": f"{name} ({os.path.relpath(folder, os.path.commonpath(shared))})"}
        out.append(rec)
    return out


def with_ceilings(recons: list[dict]) -> list[dict]:
    """Each reconstruction set, followed by its D(E(x)) set as a run of its own (`<run> D(E(x))`) when it has one:
    evaluate scores it as a separate row, so the loss to the encoder and the loss to the noise can be told apart."""
    out = []
    for rec in recons:
        out.append(rec)
        if "ceiling_reconstructions" in rec:
            out.append({**rec, "reconstructions": rec["ceiling_reconstructions"], "run": f"{rec['run']} {CEILING}"})
    return out


def exported_needs_out(run: str | Path, out: Path | None) -> None:
    """An exported model (a folder to upload, or a Hub cache copy) is never written into: its outputs need --out,
    checked before anything is read (or, for `hf://owner/name`, downloaded)."""
    if out is None and (is_hub_id(run) or is_exported(Path(run))):
        raise UserError(f"{run}: an exported model, which is never written into; give --out DIR for the outputs")


def reconstruct(run: str | Path, split: str = "test", out: Path | None = None, data_dir: Path | None = None,
                device: str = "auto", subject: int | None = None) -> Path:
    """Write reconstructions.npz, one side-by-side PNG per image and gallery.png into `out` (default: the run's
    reconstruct_<split>; for subject N of a run trained on several subjects, reconstruct_<split>_subject<N>; an
    exported model or `hf://owner/name` needs `out`)."""
    if split not in ("test", "train"):
        raise UserError(f"--split {split!r}; choose test or train")
    exported_needs_out(run, out)
    run_dir = resolve_run(run)
    dev = pick_device(device)
    model, cfg = load_decoder(run_dir, dev, subject)
    state = checkpoint.load_best(run_dir, "decoder")
    member = cfg.data.subject if checkpoint.group_subjects(state) else None
    root = run_data_dir(run_dir, data_dir, state)
    data = load_paired(member_dir(root, member) if member else root, cfg.data, cfg.modality, seed=cfg.train.seed)
    if data.n_voxels != model.n_voxels:
        raise UserError(f"{run_dir}: the decoder takes {model.n_voxels} voxels but the data has {data.n_voxels}; "
                        "check --data-dir")
    if split == "test":
        voxels, images, indices = data.test_fmri, data.test_images, np.arange(len(data.test_images))
    else:  # 50 training pairs spread over the set, as the original wrote
        indices = np.linspace(0, len(data.train_images) - 1, 50).astype(int)
        voxels, images = data.train_fmri[indices], data.train_images[indices]
    with torch.no_grad():
        recon = torch.cat([model(voxels[i:i + 64].to(dev)).float().cpu() for i in range(0, len(voxels), 64)])
    recon_u8 = to_uint8(recon)
    truth_u8 = images.permute(0, 2, 3, 1).cpu().numpy()
    ceiling = encoded_ceiling(state, model, images, dev, member)
    out = Path(out) if out else run_dir / (f"reconstruct_{split}" + (f"_subject{member}" if member else ""))
    out.mkdir(parents=True, exist_ok=True)
    run_config = yaml.safe_dump(to_dict(cfg), sort_keys=False)

    def writer(tmp: Path):
        buf = io.BytesIO()
        extra = {"ceiling_reconstructions": ceiling} if ceiling is not None else {}
        np.savez(buf, reconstructions=recon_u8, ground_truth=truth_u8, indices=indices, modality=cfg.modality,
                 subject=cfg.data.subject, run_config=run_config,
                 run=run_name(run_dir) + (f" subject {member}" if member else ""), split=split,
                 run_dir=str(run_dir.resolve()), unpaired_pool=recorded_pool(run_dir), **extra)
        tmp.write_bytes(buf.getvalue())
    write_atomic(out / NPZ, writer)
    for i, (t, r) in enumerate(zip(truth_u8, recon_u8)):
        save_png(side_by_side(t, r), out / f"{i:03d}.png")
    save_png(gallery(truth_u8, recon_u8, columns=5 if truth_u8.shape[-1] != 4 else 3), out / "gallery.png")
    return out / NPZ


def recorded_pool(run_dir: Path) -> str:
    """The run's unpaired-pool record (metrics.json `unpaired_pool`, JSON text; 'null' when the run used none or
    predates the record), so that `classify` can say whether the run trained on its test classes."""
    import json
    try:
        return json.dumps(json.loads((Path(run_dir) / "metrics.json").read_text()).get("unpaired_pool", "unrecorded"))
    except (OSError, ValueError):
        return json.dumps("unrecorded")


def load_reconstructions(path: Path) -> dict:
    """A reconstructions.npz (or a folder holding one, directly or in reconstruct_test/) as a dict of arrays."""
    path = Path(path)
    for candidate in (path, path / NPZ, path / "reconstruct_test" / NPZ):
        if candidate.is_file():
            path = candidate
            break
    else:
        raise UserError(f"{path}: no {NPZ} here; run `brainrecon reconstruct RUN` first")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001
        raise UserError(f"{path}: not a readable {NPZ} ({e}); run `brainrecon reconstruct` again") from None
    for key in ("reconstructions", "ground_truth", "modality"):
        if key not in data:
            raise UserError(f"{path}: key {key!r} missing; run `brainrecon reconstruct` again")
    if data["reconstructions"].shape != data["ground_truth"].shape or data["reconstructions"].dtype != np.uint8:
        raise UserError(f"{path}: reconstructions {data['reconstructions'].shape} {data['reconstructions'].dtype} "
                        f"must be uint8 and match ground_truth {data['ground_truth'].shape}")
    ceiling = data.get("ceiling_reconstructions")
    if ceiling is not None and (ceiling.shape != data["ground_truth"].shape or ceiling.dtype != np.uint8):
        raise UserError(f"{path}: ceiling_reconstructions {ceiling.shape} {ceiling.dtype} must be uint8 and match "
                        f"ground_truth; run `brainrecon reconstruct` again")
    data["path"] = path
    data.setdefault("run", np.array(path.parent.name))
    return data
