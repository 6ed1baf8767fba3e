"""One training step of each paper preset at its own batch sizes, measured: FLOPs, step time and peak memory.

Shared by `benchmarks.gpu_cost` (the planning table) and `benchmarks.gpu_check` (the same table on a GPU). The steps run
on a paper-shaped data folder written here with random values (1,200 training pairs, 50 test images x 35 repeats,
`n_voxels` voxels, 112 px; a small unpaired pool) and on networks of the published architectures with random weights
(VGG19 backbone, VGG16 perceptual network): what a step computes and holds does not depend on the values. Random
weights are a benchmark's stand-in only; the product never trains on them by itself.

The encoder step is train-encoder's own: brainrecon.train.encoder.step_loss (random shift, bf16 autocast where the
runtime chooses it, the loss with its regularisers) and Adam; the decoder step is brainrecon.train.decoder.DecoderStep
itself with its optimiser (Adam, amsgrad), run with `train.cache_mb=0` so that every frozen-network output is computed
in the step (the most a step computes; `gpu_cost` subtracts what the paper-scale caches save).
"""

from __future__ import annotations

import gc
import statistics
import time
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.weak import WeakIdKeyDictionary

from brainrecon.config import ROIS, load_config, to_dict
from brainrecon.data import layout, release
from brainrecon.data.datasets import load_paired
from brainrecon.data.transforms import as_float
from brainrecon.runtime import setup
from brainrecon.train import checkpoint
from brainrecon.train.decoder import DecoderStep
from brainrecon.train.distributed import wrap
from brainrecon.train.encoder import build_encoder, step_loss

GOD = {"n_train": 1200, "n_test": 50, "repeats": 35, "n_unpaired": 50_000}
"""The GOD data a paper preset trains on: 1,200 training pairs, 50 test images seen 35 times, the 50,000 ImageNet
validation images as the unpaired pool (METHOD.md)."""
VOXELS = 4500
"""Voxels assumed for a GOD subject's VC ROI (a few thousand per subject; the other benchmarks use 4,500 too)."""
SUBJECT = 3


def paper_config(stage: str, modality: str, extra: list[str] | None = None):
    """The paper preset with random weights of the published architectures (same shapes, same arithmetic)."""
    sets = ["model.backbone_weights=none"] if stage == "encoder" else ["loss.perceptual_net=vgg16-random",
                                                                       "train.cache_mb=0"]
    return load_config(stage, modality, "paper", sets + list(extra or []))


def write_data(root: Path, n_voxels: int = VOXELS, resolution: int = 112, n_train: int = GOD["n_train"],
               n_test: int = GOD["n_test"], repeats: int = GOD["repeats"], n_unpaired: int = 96,
               seed: int = 0) -> Path:
    """A release-format data folder with random values: stimuli, rgbd stimuli, sbj_3.npz and an unpaired tree with
    its MiDaS-small depth PNGs."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    img = lambda n, c: rng.integers(0, 256, (n, resolution, resolution, c), dtype=np.uint8)  # noqa: E731
    release.write_stimuli(layout.stimuli_file(root, resolution), img(n_train, 3), img(n_test, 3))
    release.write_stimuli(layout.rgbd_file(root, resolution), img(n_train, 4), img(n_test, 4))
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    arrays = {"arr_0": f32(n_train, n_voxels), "arr_1": f32(n_test * repeats, n_voxels), "arr_2": f32(n_test, n_voxels),
              "arr_3": np.arange(n_train), "arr_4": np.repeat(np.arange(n_test), repeats),
              "arr_5": rng.uniform(0.1, 0.9, n_voxels).astype(np.float32),
              "arr_6": rng.uniform(0.1, 2.0, n_voxels).astype(np.float32)}
    release.write_subject(layout.subject_file(root, SUBJECT), arrays, {r: np.ones(n_voxels, bool) for r in ROIS})
    depth = layout.unpaired_depth_dir(root, "small")
    depth.mkdir(parents=True, exist_ok=True)
    for i in range(n_unpaired):
        folder = layout.unpaired_image_dir(root) / f"n{i % 4:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img(1, 3)[0]).save(folder / f"img_{i:05d}.png")
        Image.fromarray(img(1, 1)[0, ..., 0]).save(depth / f"{i}.png")
    return root


def write_encoder_run(folder: Path, modality: str, n_voxels: int = VOXELS, extra: list[str] | None = None) -> Path:
    """A train-encoder run folder holding a randomly initialised encoder as best.pt (for the decoder's frozen one)."""
    cfg = paper_config("encoder", modality, extra)
    torch.manual_seed(0)
    model = build_encoder(cfg, n_voxels, None)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint.save(folder / checkpoint.BEST, model=model.state_dict(), epoch=0, config=to_dict(cfg),
                    n_voxels=n_voxels, kind="encoder")
    return folder


class EncoderStep:
    """train-encoder's step (brainrecon/train/encoder.py) on the paired batch `step`."""

    def __init__(self, cfg, runtime, data_root: Path):
        self.cfg, self.runtime = cfg, runtime
        self.data = load_paired(data_root, cfg.data, cfg.modality, seed=cfg.train.seed, device=runtime.device)
        torch.manual_seed(cfg.train.seed)
        self.raw = build_encoder(cfg, self.data.n_voxels, data_root)
        self.model = wrap(self.raw, runtime, "encoder")
        self.optimizer = torch.optim.Adam(self.raw.trainable_parameters(), lr=cfg.train.lr)
        self.gen = torch.Generator().manual_seed(0)
        self.modules = [self.raw]
        self.batches = {"paired": cfg.train.batch_size}

    def loss(self, s: int) -> torch.Tensor:
        b = self.cfg.train.batch_size
        idx = torch.arange(s * b, (s + 1) * b, device=self.runtime.device) % len(self.data.train_images)
        return step_loss(self.model, self.raw, self.data.train_images[idx], self.data.train_fmri[idx], self.cfg,
                         self.runtime, self.gen)[0]

    def train(self):
        self.model.train()

    def per_image_flops(self) -> dict:
        """FLOPs per image of the encoder's forward in eval mode (validation and test predictions)."""
        images = as_float(self.data.train_images[:8])
        self.raw.eval()
        with torch.no_grad():
            flops = count_flops(lambda: self.raw(images))
        self.raw.train()
        return {"eval_flops": flops / len(images)}

    def validation_flops(self) -> int:
        """FLOPs of one epoch's validation: the encoder's forward on the validation split."""
        return int(self.per_image_flops()["eval_flops"] * len(self.data.val_images))


class DecoderTrainStep:
    """train-decoder's step: DecoderStep.loss (D, ED, DE and the regularisers) and Adam (amsgrad)."""

    def __init__(self, cfg, runtime, data_root: Path, encoder_run: Path):
        self.cfg, self.runtime = cfg, runtime
        self.step = DecoderStep(cfg, runtime, data_root, encoder_run)
        self.step.fill_caches()
        self.optimizer = torch.optim.Adam(self.step.raw.parameters(), lr=cfg.train.lr, amsgrad=True)
        self.gen = torch.Generator().manual_seed(0)
        self.modules = [m for m in (self.step.raw, self.step.image_loss, self.step.encoder) if m is not None]
        t = cfg.train
        self.batches = {"paired": t.batch_size, "unpaired images": t.unpaired_image_batch if self.step.w_ed else 0,
                        "unpaired fMRI": t.unpaired_fmri_batch if self.step.w_de else 0}

    def loss(self, s: int) -> torch.Tensor:
        b = self.cfg.train.batch_size
        idx = torch.arange(s * b, (s + 1) * b, device=self.runtime.device) % len(self.step.data.train_images)
        return self.step.loss(idx, self.gen)[0]

    def train(self):
        self.step.model.train()

    def validation_flops(self) -> int:
        """FLOPs of one epoch's validation: the decoder and the image loss on the validation split."""
        step = self.step
        with torch.no_grad():
            return count_flops(lambda: step.image_loss(step.raw(step.data.val_fmri).float(),
                                                       as_float(step.data.val_images)))

    def per_image_flops(self) -> dict:
        """FLOPs per image of what the frozen-output caches hold: the encoder's voxels of an unpaired image and the
        perceptual features of a fixed image; and the bytes each cached item takes."""
        step, out = self.step, {}
        images = step.data.train_images[:8]
        if step.perceptual is not None:
            feats = lambda: step.frozen(step.image_loss.target_features)(as_float(images))  # noqa: E731
            out["feature_flops"] = count_flops(feats) / len(images)
            out["feature_bytes"] = sum(v[0].numel() * v.element_size() for v in feats().values())
        if step.encoder is not None and step.pool is not None:
            pool = step.pool[:8]
            vox = lambda: step.frozen(step.encoder)(as_float(pool)).float()  # noqa: E731
            out["encoder_flops"] = count_flops(vox) / len(pool)
            out["voxel_bytes"] = step.data.n_voxels * 4
        return out


def one_step(step, s: int) -> None:
    loss = step.loss(s)
    step.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    step.optimizer.step()


def count_flops(fn) -> int:
    """FLOPs of `fn` as torch's FlopCounterMode counts them (matmuls and convolutions, forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StorageTracker(TorchDispatchMode):
    """Bytes of the tensor storages on one device type that are alive, and their peak, as every aten op's outputs
    create them and Python frees them (a weak reference per storage; views share their base's storage). Storages that
    exist before tracking count only if passed to `hold` (the step's networks and optimiser state); the rest (the data
    and caches on the device) are left out."""

    def __init__(self, device_type: str):
        super().__init__()
        self.device_type, self.now, self.peak = device_type, 0, 0
        self.seen = WeakIdKeyDictionary()

    def _add(self, storage, counted: bool) -> None:
        if storage in self.seen:
            return
        size = storage.nbytes() if counted else 0
        self.seen[storage] = size
        if size:
            self.now += size
            self.peak = max(self.peak, self.now)
            weakref.finalize(storage, self._free, size)

    def _free(self, size: int) -> None:
        self.now -= size

    def exclude_existing(self) -> None:
        with warnings.catch_warnings():  # some of gc's objects warn when their type is asked
            warnings.simplefilter("ignore")
            objects = [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]
        for obj in objects:
            if obj.device.type == self.device_type and obj.layout == torch.strided:
                self._add(obj.untyped_storage(), counted=False)

    def hold(self, tensors) -> None:
        for t in tensors:
            if isinstance(t, torch.Tensor) and t.device.type == self.device_type:
                if t.untyped_storage() in self.seen and self.seen[t.untyped_storage()] == 0:
                    del self.seen[t.untyped_storage()]
                self._add(t.untyped_storage(), counted=True)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type == self.device_type and t.layout == torch.strided:
                self._add(t.untyped_storage(), counted=True)
        return out


def held_tensors(step):
    """What a training step holds between steps: its networks' parameters, buffers and gradients, the optimiser
    state."""
    for module in step.modules:
        yield from module.parameters()
        yield from module.buffers()
        yield from (p.grad for p in module.parameters() if p.grad is not None)
    for state in step.optimizer.state.values():
        yield from (v for v in state.values() if isinstance(v, torch.Tensor))


def tracked_peak(step, s: int) -> tuple[int, str]:
    """Peak bytes of one step: its networks (parameters, buffers, gradients), the optimiser state, and every tensor the
    step creates (activations, temporaries); not the data and caches held on the device (gpu_cost adds those at the
    paper's scale), not workspace a kernel library allocates outside torch's tensors."""
    tracker = StorageTracker(step.runtime.device.type)
    gc.collect()
    tracker.exclude_existing()
    tracker.hold(held_tensors(step))
    with tracker:
        one_step(step, s)
    return tracker.peak, "peak of live tensor storages (dispatch-mode accounting)"


def measure(step, reps: int = 3) -> dict:
    """Step time (median of `reps` after one warm-up step, which also creates the optimiser state), FLOPs of one step,
    peak memory of one step (`tracked_peak`; on CUDA also torch.cuda.max_memory_allocated, which includes the data
    and caches held on the device)."""
    device = step.runtime.device
    step.train()
    one_step(step, 0)
    sync(device)
    times = []
    for r in range(reps):
        start = time.perf_counter()
        one_step(step, 1 + r)
        sync(device)
        times.append(time.perf_counter() - start)
    flops = count_flops(lambda: one_step(step, 1))
    out = {"step_ms": statistics.median(times) * 1000, "flops_step": flops}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        one_step(step, 2)
        sync(device)
        out["cuda_max_allocated"] = int(torch.cuda.max_memory_allocated(device))
    out["peak_bytes"], out["peak_method"] = tracked_peak(step, 3)
    return out


def build(stage: str, modality: str, data_root: Path, runs: Path, device: str = "auto", extra: list[str] | None = None,
          encoder_extra: list[str] | None = None):
    """The step of one paper preset (stage encoder | decoder) on a data folder from `write_data`."""
    runtime = setup(device, "auto", 0)
    if stage == "encoder":
        return EncoderStep(paper_config("encoder", modality, extra), runtime, data_root)
    n_voxels = release.load_subject(data_root, SUBJECT).n_voxels
    enc = write_encoder_run(Path(runs) / f"encoder_{modality}", modality, n_voxels, encoder_extra)
    return DecoderTrainStep(paper_config("decoder", modality, extra), runtime, data_root, enc)
