"""The Python API: trained runs as objects a script can call.

    from brainrecon import load_decoder, load_encoder
    decoder = load_decoder("runs/decoder")            # a train-decoder --out folder (deep or ridge), an export
                                                       # folder, or a Hub id "hf://owner/name"
    images = decoder.decode(voxels)                    # (N, V) fMRI -> (N, H, W, C) floats in [0, 1]
    encoder = load_encoder("runs/encoder")
    predicted = encoder.predict(images)                # (N, H, W, C) images -> (N, V) voxels

Arrays in and out are numpy; the networks run on the device asked for (`auto`: CUDA, else MPS, else CPU), in
batches. `decode` takes the run's ROI voxels (V columns, preprocessed as the training data: the release's sbj_<N>.npz
or convert-god / convert-nsd output); `roi_voxels` reduces an array over the subject file's whole voxel axis with the
run's ROI mask. Channels: rgb 3, depth 1, rgbd 4 (RGB then depth). `decode_fmri` (reconstruct --fmri) decodes an fMRI
file into pictures.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from brainrecon.atomic import write_atomic
from brainrecon.data import layout
from brainrecon.data.transforms import to_float
from brainrecon.errors import UserError
from brainrecon.runtime import pick_device
from brainrecon.train import checkpoint
from brainrecon.train.exported import resolve_run, run_name


@dataclass
class TrainedRun:
    """A trained run folder's best network on a device, with the run's resolved config."""
    run: Path
    model: torch.nn.Module
    config: object
    device: torch.device

    @property
    def modality(self) -> str:
        return self.config.modality


class TrainedDecoder(TrainedRun):
    """A train-decoder run: `decode(voxels)` -> images. `config` is the run's resolved DecoderConfig."""

    @property
    def n_voxels(self) -> int:
        return int(self.model.n_voxels)

    def decode(self, voxels, batch: int = 64) -> np.ndarray:
        """(N, V) fMRI (the run's ROI, normalised as its training data) -> (N, H, W, C) float32 images in [0, 1]."""
        x = check_voxels(voxels, self.n_voxels, self.run)
        with torch.no_grad():
            out = [self.model(x[i:i + batch].to(self.device)).float().clamp(0, 1).cpu()
                   for i in range(0, len(x), batch)]
        return torch.cat(out).permute(0, 2, 3, 1).numpy()


class TrainedEncoder(TrainedRun):
    """A train-encoder run: `predict(images)` -> voxels. `config` is the run's resolved EncoderConfig."""

    @property
    def n_voxels(self) -> int:
        return int(self.model.arch.n_voxels)

    def predict(self, images, batch: int = 64) -> np.ndarray:
        """(N, H, W, C) images (uint8, or floats in [0, 1]) -> (N, V) predicted voxels (float32). Any side: the
        encoder resizes to its input size."""
        x = as_images(images, {"rgb": 3, "depth": 1, "rgbd": 4}[self.modality], self.run)
        with torch.no_grad():
            out = [self.model(x[i:i + batch].to(self.device)).float().cpu() for i in range(0, len(x), batch)]
        return torch.cat(out).numpy()


def check_voxels(voxels, n_voxels: int, run: Path) -> torch.Tensor:
    a = np.asarray(voxels)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[1] != n_voxels:
        raise UserError(f"fMRI of shape {a.shape}: the decoder of {run} takes (N, {n_voxels}) arrays (its ROI's "
                        f"voxels, one row per sample)")
    if not np.issubdtype(a.dtype, np.number) or not np.isfinite(a).all():
        raise UserError(f"fMRI of dtype {a.dtype}: expected finite numbers")
    return torch.as_tensor(a, dtype=torch.float32)


def as_images(images, channels: int, run: Path) -> torch.Tensor:
    a = np.asarray(images)
    if a.ndim == 3 and channels == 1:
        a = a[..., None]
    if a.ndim != 4 or a.shape[-1] != channels:
        raise UserError(f"images of shape {a.shape}: the encoder of {run} takes (N, H, W, {channels}) arrays")
    if a.dtype != np.uint8 and (not np.issubdtype(a.dtype, np.floating) or a.min() < 0 or a.max() > 1):
        raise UserError(f"images of dtype {a.dtype}: expected uint8, or floats in [0, 1]")
    return to_float(a)


def load_decoder(run: str | Path, device: str = "auto", subject: int | None = None) -> TrainedDecoder:
    """The best checkpoint of a train-decoder run (deep or ridge), ready to decode; of a run trained on several
    subjects, subject `subject`'s. `run`: the run folder, a `brainrecon export` folder or `hf://owner/name`."""
    dev = pick_device(device)
    folder = resolve_run(run)
    model, cfg = checkpoint.load_decoder(folder, dev, subject)
    return TrainedDecoder(folder, model, cfg, dev)


def load_encoder(run: str | Path, device: str = "auto", subject: int | None = None) -> TrainedEncoder:
    """The best checkpoint of a train-encoder run, ready to predict voxels; of a run trained on several subjects,
    subject `subject`'s. `run`: the run folder, a `brainrecon export` folder or `hf://owner/name`."""
    dev = pick_device(device)
    folder = resolve_run(run)
    model = checkpoint.load_encoder(folder, dev, subject)
    return TrainedEncoder(folder, model, model.config, dev)


def read_fmri(path: Path, key: str | None = None) -> np.ndarray:
    """An fMRI array from a .npy file or a .npz file (`key`, or its only array); one line naming the fix otherwise."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--fmri {path}: no such file")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - not an npy/npz file
        raise UserError(f"--fmri {path}: not a readable .npy or .npz file ({e})") from None
    if isinstance(data, np.ndarray):
        return data
    with data:
        names = list(data.files)
        if key is None and len(names) == 1:
            key = names[0]
        if key not in names:
            raise UserError(f"--fmri {path}: holds {', '.join(names) or 'no arrays'}; name the array with --key"
                            + (f" (not {key!r})" if key else ""))
        return data[key]


def roi_voxels(voxels: np.ndarray, decoder: TrainedDecoder, data_dir: Path | None = None) -> np.ndarray:
    """(N, V) as the decoder takes it: the run's ROI already (V columns), or the subject file's full voxel axis, which
    is reduced with the run's ROI mask (read from sbj_<N>.npz in the run's data folder)."""
    a = np.asarray(voxels)
    a = a[None] if a.ndim == 1 else a
    if a.ndim == 2 and a.shape[1] == decoder.n_voxels:
        return a
    from brainrecon.reconstruct import run_data_dir  # here, not at import: it loads matplotlib

    cfg = decoder.config
    root = run_data_dir(decoder.run, data_dir)
    if not layout.subject_file(root, cfg.data.subject).exists():   # a group member's own folder (convert-nsd's)
        found = sorted(root.glob(f"*/sbj_{cfg.data.subject}.npz"))
        root = found[0].parent if len(found) == 1 else root
    subject_file = layout.subject_file(root, cfg.data.subject)
    full = None
    if subject_file.exists():
        with np.load(subject_file) as npz:
            mask = npz[cfg.data.roi] if cfg.data.roi in npz.files else None
        if mask is not None and a.ndim == 2 and a.shape[1] == len(mask):
            return a[:, mask.astype(bool)]
        full = len(mask) if mask is not None else None
    also = f", or (N, {full}) over the whole voxel axis of {subject_file.name}" if full else ""
    raise UserError(f"fMRI of shape {a.shape}: the decoder of {decoder.run} takes (N, {decoder.n_voxels}) arrays "
                    f"(subject {cfg.data.subject}, ROI {cfg.data.roi}){also}")


DECODED = "decoded.npz"


def decode_fmri(run_dir: str | Path, fmri: Path, key: str | None = None, out: Path | None = None,
                data_dir: Path | None = None, device: str = "auto", subject: int | None = None) -> Path:
    """Decode any fMRI array (reconstruct --fmri): `decoded.npz` (reconstructions uint8 (N, H, W, C), the source
    file and key), one PNG per sample and grid.png into `out` (default: RUN/decoded_<file stem>; an exported model
    or `hf://owner/name` needs `out`). `subject`: which subject's decoder, for a run trained on several."""
    from brainrecon.reconstruct import exported_needs_out  # here, not at import: it loads matplotlib

    exported_needs_out(run_dir, out)
    run_dir = resolve_run(run_dir)
    decoder = load_decoder(run_dir, device, subject)
    voxels = roi_voxels(read_fmri(fmri, key), decoder, data_dir)
    images = decoder.decode(voxels)
    recon_u8 = np.round(images * 255).astype(np.uint8)
    out = Path(out) if out else run_dir / f"decoded_{Path(fmri).stem}"

    def writer(tmp: Path):
        buf = io.BytesIO()
        np.savez(buf, reconstructions=recon_u8, modality=decoder.modality, subject=decoder.config.data.subject,
                 source=str(Path(fmri).resolve()), key=key or "", run=run_name(run_dir))
        tmp.write_bytes(buf.getvalue())
    write_atomic(out / DECODED, writer)
    from brainrecon.viz import grid, save_png  # here, not at import: matplotlib is heavy

    for i, image in enumerate(recon_u8):
        save_png(grid(image[None], columns=1), out / f"{i:03d}.png")
    save_png(grid(recon_u8), out / "grid.png")
    return out / DECODED
