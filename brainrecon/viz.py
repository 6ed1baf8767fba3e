"""Pictures: image/depth grids, depth colour maps, and the plots of each stage."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from brainrecon.atomic import write_atomic  # noqa: E402


def _save_fig(fig, path: Path) -> None:
    write_atomic(path, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def save_png(array: np.ndarray, path: Path) -> None:
    write_atomic(path, lambda p: Image.fromarray(array).save(p, format="PNG"))


def colorize_depth(depth: np.ndarray) -> np.ndarray:
    """uint8 (..., H, W) or (..., H, W, 1) depth -> uint8 RGB with a perceptual colour map (turbo)."""
    d = depth[..., 0] if depth.shape[-1] == 1 else depth
    return (matplotlib.colormaps["turbo"](d.astype(np.float32) / 255.0)[..., :3] * 255).astype(np.uint8)


def panels(image: np.ndarray) -> list[np.ndarray]:
    """One uint8 (H, W, C) image -> its viewable RGB panels: rgb; grey depth; colour depth."""
    out = []
    if image.shape[-1] in (3, 4):
        out.append(image[..., :3])
    if image.shape[-1] in (1, 4):
        d = image[..., -1:]
        out += [np.repeat(d, 3, axis=-1), colorize_depth(d)]
    return out


def side_by_side(truth: np.ndarray, recon: np.ndarray, gap: int = 2) -> np.ndarray:
    """[truth panels | reconstruction panels] for one image, white gaps between."""
    row = []
    for t, r in zip(panels(truth), panels(recon)):
        row += [t, r, np.full((t.shape[0], gap, 3), 255, np.uint8)]
    return np.concatenate(row[:-1], axis=1)


def gallery(truth: np.ndarray, recon: np.ndarray, columns: int = 5, gap: int = 4) -> np.ndarray:
    """A grid of side-by-side pairs a person can take in at a glance: (N, H, W, C) x 2 -> uint8 RGB."""
    return tile([side_by_side(t, r) for t, r in zip(truth, recon)], columns, gap)


def grid(images: np.ndarray, columns: int = 8, gap: int = 4) -> np.ndarray:
    """Decoded images without a ground truth (reconstruct --fmri): each image's panels side by side, in a grid."""
    def one(image):
        row = []
        for p in panels(image):
            row += [p, np.full((p.shape[0], 2, 3), 255, np.uint8)]
        return np.concatenate(row[:-1], axis=1)
    return tile([one(i) for i in images], columns if images.shape[-1] == 3 else max(1, columns // 3), gap)


def tile(tiles: list[np.ndarray], columns: int, gap: int = 4) -> np.ndarray:
    """Equal-sized uint8 RGB tiles in rows of `columns`, on white."""
    h, w = tiles[0].shape[:2]
    rows = (len(tiles) + columns - 1) // columns
    canvas = np.full((rows * (h + gap) + gap, columns * (w + gap) + gap, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        y, x = gap + (i // columns) * (h + gap), gap + (i % columns) * (w + gap)
        canvas[y:y + h, x:x + w] = tile
    return canvas


def plot_voxel_correlation(r: np.ndarray, ceiling: np.ndarray, path: Path) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.scatter(ceiling, r, s=3, alpha=0.4)
    a.plot([0, 1], [0, 1], "k--", lw=1)
    a.set(xlabel="voxel noise ceiling", ylabel="test-average Pearson r", title="encoder: voxel r vs ceiling")
    b.hist(r, bins=60, color="tab:blue", alpha=0.8)
    b.axvline(np.median(r), color="k", ls="--", label=f"median {np.median(r):.3f}")
    b.set(xlabel="Pearson r", ylabel="voxels", title="voxel r on the test average")
    b.legend()
    _save_fig(fig, path)


def plot_cv_curve(lambdas, scores, chosen: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.semilogx(lambdas, scores, "o-")
    ax.axvline(chosen, color="k", ls="--", label=f"chosen {chosen:g}")
    ax.set(xlabel="ridge lambda", ylabel="CV mean pixel correlation", title="ridge cross-validation")
    ax.legend()
    _save_fig(fig, path)


def plot_identification(records: list[dict], path: Path) -> None:
    """Accuracy vs ways, one panel per channel (rgb, depth): colour = metric, line style = run; CI bands, chance."""
    rows = [r for r in records if r["mode"] == "percent"]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["run"], r["channel"], r["metric"], r["distractors"]), []).append(r)
    order = {"rgb": 0, "depth": 1}
    channels = sorted({r["channel"] for r in rows}, key=lambda c: (order.get(c, 2), c))
    runs = sorted({r["run"] for r in rows})
    metrics = sorted({r["metric"] for r in rows})
    styles, markers = ("-", "--", ":", "-."), ("o", "s", "^", "D")
    fig, axes = plt.subplots(1, max(1, len(channels)), figsize=(5.2 * max(1, len(channels)), 4.5), sharey=True,
                             squeeze=False)
    ways_all = sorted({r["ways"] for r in rows})
    for ax, channel in zip(axes[0], channels or [""]):
        for (run, ch, metric, _), rs in sorted(groups.items()):
            if ch != channel:
                continue
            rs = sorted(rs, key=lambda r: r["ways"])
            w = [r["ways"] for r in rs]
            colour = plt.cm.tab10(metrics.index(metric) % 10)
            k = runs.index(run) % len(styles)
            ax.plot(w, [r["mean"] for r in rs], linestyle=styles[k], marker=markers[k], color=colour,
                    label=f"{run} · {metric}")
            ax.fill_between(w, [r["ci_low"] for r in rs], [r["ci_high"] for r in rs], color=colour, alpha=0.08)
        if ways_all:
            ax.plot(ways_all, [1 / n for n in ways_all], "k--", lw=1, label="chance")
            ax.set_xticks(ways_all)
        ax.set(xlabel="n-way", ylim=(0, 1.02), title=f"{channel} channel" if channel else "n-way identification")
        ax.legend(fontsize=7, loc="lower left")
    axes[0][0].set_ylabel("identification accuracy (95% CI)")
    _save_fig(fig, path)


def comparison_grid(truth: np.ndarray, recons: dict[str, np.ndarray], path: Path, n: int = 10) -> None:
    """The same test images, one per row: ground truth, then each named reconstruction (e.g. deep, ridge, D(E(x))),
    RGB panels first and then colour depth panels, with column titles."""
    columns = [("ground truth", truth), *recons.items()]
    kinds = [k for k, ok in (("rgb", truth.shape[-1] in (3, 4)), ("depth", truth.shape[-1] in (1, 4))) if ok]
    n = min(n, len(truth))
    fig, axes = plt.subplots(n, len(columns) * len(kinds), figsize=(1.1 * len(columns) * len(kinds), 1.1 * n),
                             squeeze=False)
    for k, kind in enumerate(kinds):
        for c, (name, images) in enumerate(columns):
            col = k * len(columns) + c
            axes[0, col].set_title(f"{name}\n{kind}", fontsize=6)
            for i in range(n):
                image = images[i][..., :3] if kind == "rgb" else colorize_depth(images[i][..., -1:])
                axes[i, col].imshow(image)
                axes[i, col].axis("off")
    fig.subplots_adjust(wspace=0.04, hspace=0.04)
    _save_fig(fig, path)
