"""What `fetch-data` takes from the authors' public release (WeizmannVision/SelfSuperReconst v1) and from MiDaS.

Groups: stimuli (images_112.npz), rgbd (the RGBD stimuli), fmri (sbj_<N>.npz, GOD subjects 1-5), imagenet (the
~50,000 unpaired ImageNet validation images, unpacked into imagenet/), depth (their MiDaS depth maps, unpacked into
imagenet_depth/), vgg (the depth / RGBD VGG checkpoints, into imagenet_rgbd/) and midas (MiDaS v2.1 large / small).
Neither publisher gives sha256s; the release gives no sizes either, so those are asked of the server before a
download. MiDaS's sizes are estimates from its published checkpoints' tensor shapes (105,565,929 and 21,394,729
float32 values, 4 bytes each; the file adds a little for its keys), refined by the server's answer.
"""

from __future__ import annotations

from pathlib import Path

from brainrecon.data import layout
from brainrecon.data.download import Entry, Source, Terms, fetched_subject
from brainrecon.errors import UserError

RELEASE_URL = "https://github.com/WeizmannVision/SelfSuperReconst/releases/download/v1"
MIDAS_URL = "https://github.com/intel-isl/MiDaS/releases/download/v2_1"
SUBJECTS = (1, 2, 3, 4, 5)
GROUPS = ("stimuli", "rgbd", "fmri", "imagenet", "depth", "vgg", "midas")

FILES = {
    "stimuli": ["images_112.npz"],
    "rgbd": ["rgbd_112_from_224_large_png_uint8.npz"],
    "fmri": [f"sbj_{n}.npz" for n in SUBJECTS],
    "imagenet": ["imagenet_val.tar.gz"],
    "depth": ["val_depth_on_orig_small_png_uint8.tar.gz", "val_depth_on_orig_large_png_uint8.tar.gz"],
    "vgg": ["vgg16_depth_only_norm_within_img_best.pth.tar", "vgg16_depth_only_large_norm_within_img_best.pth.tar",
            "vgg16_rgbd_large_norm_within_img_best.pth.tar", "vgg19_depth_only_large_norm_within_img_best.pth.tar",
            "vgg19_rgbd_large_norm_within_img_best.pth.tar"],
    "midas": ["model-f6b98070.pt", "model-small-70d6b9c8.pt"],
}
FOLDER = {"vgg": "imagenet_rgbd"}
UNPACK_TO = {"imagenet": "imagenet", "depth": "imagenet_depth"}
APPROX_BYTES = {"model-f6b98070.pt": 105_565_929 * 4, "model-small-70d6b9c8.pt": 21_394_729 * 4}

TERMS = Terms("terms_accepted", {
    "GOD fMRI (Horikawa & Kamitani 2017, OpenNeuro ds001246)":
        "released under CC0 on OpenNeuro; cite Horikawa & Kamitani, Nat. Commun. 2017.",
    "ImageNet images (stimuli, imagenet_val, depth maps)":
        "ImageNet terms of access: non-commercial research and educational use only (image-net.org/download).",
    "Release files (WeizmannVision/SelfSuperReconst v1: npz, VGG checkpoints)":
        "distributed by the authors under an academic, non-commercial licence; cite Gaziv & Irani 2021 and "
        "Gaziv, Beliy, Granot et al. 2022.",
    "MiDaS v2.1 checkpoints (intel-isl/MiDaS)": "MIT licence; cite Ranftl et al. 2020, IEEE TPAMI.",
})


def entries() -> list[Entry]:
    """Every file, in the order fetch-data takes them."""
    out = []
    for group, names in FILES.items():
        for name in names:
            url = f"{MIDAS_URL if group == 'midas' else RELEASE_URL}/{name}"
            out.append(Entry(name, group, url, size=APPROX_BYTES.get(name), approx=name in APPROX_BYTES,
                             folder=FOLDER.get(group, ""), unpack_to=UNPACK_TO.get(group),
                             subject=int(name[4:-4]) if group == "fmri" else None))
    return out


def names() -> set[str]:
    return {e.name for e in entries()}


def select(only: list[str], subjects: list[int]) -> list[Entry]:
    """The files named by --only (groups, `all`, or file names); the fmri group only for `subjects` (a file named
    by itself is always taken)."""
    unknown = [o for o in only if o != "all" and o not in GROUPS and o not in names()]
    if unknown:
        raise UserError(f"--only {unknown[0]!r} is not a group or file of the release")
    return [e for e in entries()
            if e.name in only or (("all" in only or e.group in only) and (e.subject is None or e.subject in subjects))]


def take(only: list[str], subjects: list[int] | None, sessions: str | None = None) -> list[Entry]:
    return select(only, list(subjects if subjects is not None else SUBJECTS))


def next_step(root: Path, fetched: list[Entry]) -> str | None:
    """Training on a fetched subject's fMRI: rgbd when the RGBD stimuli and the RGBD VGG are there too."""
    subject = fetched_subject(fetched, "fmri")
    if subject is None:
        return None
    rgbd = layout.rgbd_file(root).exists() and layout.release_vgg_file(root, "vgg19", "rgbd").exists()
    return f"brainrecon train-encoder --data-dir {root} --modality {'rgbd' if rgbd else 'rgb'} --subject {subject}"


SOURCE = Source(
    terms=TERMS, groups=GROUPS, files=entries, take=take, next_step=next_step, dataset="GOD", subjects=SUBJECTS,
    subject_groups=("fmri",), in_all=True)
