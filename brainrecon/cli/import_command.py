"""import-arrays: a lab's own fMRI (.npy), masks (.npy or NIfTI) and images (a folder or .npy) into the release files,
through brainrecon.data.own_files.import_arrays (the same checks and files as brainrecon.data.write_subject)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from brainrecon.cli.common import DataDir, integer, leaves_no_new_folder, out_console, resolve_data_dir, user_errors
from brainrecon.config.choices import ROIS
from brainrecon.errors import UserError

Images = "a folder of image files (sorted by name, numbers as numbers: 2 before 10) or an .npy (N, H, W[, 3])"


@user_errors
def import_arrays_cmd(
    train_fmri: Path = typer.Option(..., "--train-fmri", metavar="FILE.npy", help="Training fMRI (trials, voxels), "
                                    "floats; z-scored betas per session recommended."),
    train_images: Path = typer.Option(..., "--train-images", metavar="DIR|FILE.npy", help=f"Training images: {Images}; "
                                      "one per trial, or the unique images with --train-image-index."),
    test_fmri: Path = typer.Option(..., "--test-fmri", metavar="FILE.npy", help="Test fMRI (test images, repeats, "
                                   "voxels), or (trials, voxels) with --test-image-index."),
    test_images: Path = typer.Option(..., "--test-images", metavar="DIR|FILE.npy", help=f"Test images: {Images}."),
    train_image_index: Optional[Path] = typer.Option(None, "--train-image-index", metavar="FILE.npy", help="(trials,) "
                                                     "integers: each training trial's image (0-based)."),
    test_image_index: Optional[Path] = typer.Option(None, "--test-image-index", metavar="FILE.npy", help="(trials,) "
                                                    "integers: each test trial's image (0-based); every image the "
                                                    "same number of times."),
    roi_mask: Optional[List[str]] = typer.Option(None, "--roi-mask", metavar="NAME=FILE", help=f"An ROI mask "
                                                 f"(repeatable); NAME one of {', '.join(ROIS)}; FILE an .npy bool "
                                                 "(voxels,), or .nii/.nii.gz with --voxel-volume. VC not given: every "
                                                 "voxel."),
    voxel_volume: Optional[Path] = typer.Option(None, "--voxel-volume", metavar="FILE.nii.gz", help="For NIfTI masks: "
                                                "the volume whose voxels > 0, in C order over (X, Y, Z), are the "
                                                "fMRI's columns."),
    noise_ceiling: Optional[Path] = typer.Option(None, "--noise-ceiling", metavar="FILE.npy", help="(voxels,) in "
                                                 "[0, 1] (default: computed from the test repeats)."),
    train_depth: Optional[Path] = typer.Option(None, "--train-depth", metavar="DIR|FILE.npy", help="Depth maps of the "
                                               "training images (near = high), one per image: adds the RGBD file."),
    test_depth: Optional[Path] = typer.Option(None, "--test-depth", metavar="DIR|FILE.npy", help="Depth maps of the "
                                              "test images."),
    subject: int = typer.Option(1, "--subject", metavar="N", parser=integer(1), help="Subject number: names the "
                                "output sbj_<N>.npz (train with --subject N)."),
    resolution: int = typer.Option(112, "--resolution", metavar="PIXELS", parser=integer(16), help="Stimulus side in "
                                   "pixels, a multiple of 8 (the trainers' data.resolution: 112 paper, 64 --config "
                                   "demo)."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="Output folder (default: the data dir); "
                                       "train with --data-dir there."),
    overwrite: bool = typer.Option(False, "--overwrite", metavar="", help="Replace sbj_<N>.npz and stimulus files "
                                   "with other images already in --out."),
    data_dir: Optional[Path] = DataDir,
):
    """Write your own fMRI and images as a subject in the release formats (sbj_<N>.npz, images_<res>.npz), checked."""
    masks = parse_roi_masks(roi_mask or [])
    if resolution % 8:
        raise UserError(f"--resolution {resolution} must be a multiple of 8 (e.g. 112, or 64 for --config demo)")
    target = out or resolve_data_dir(data_dir, must_exist=False)
    from brainrecon.data.own_files import ImportOptions, import_arrays
    opts = ImportOptions(train_fmri=train_fmri, train_images=train_images, test_fmri=test_fmri,
                         test_images=test_images, out=target, subject=subject, train_image_index=train_image_index,
                         test_image_index=test_image_index, roi_masks=masks, voxel_volume=voxel_volume,
                         noise_ceiling=noise_ceiling, train_depth=train_depth, test_depth=test_depth,
                         resolution=resolution, overwrite=overwrite)
    with leaves_no_new_folder(target):
        record = import_arrays(opts)
    c = record["counts"]
    out_console.print(f"{record['outputs']['fmri']}: {c['train_trials']} training trials ({c['train_images']} images), "
                      f"{c['test_images']} test images x {c['repeats_per_test_image']} repeats, {c['voxels']} voxels "
                      f"(VC {c['voxels_per_roi']['VC']}); {', '.join(record['outputs']['stimuli'])} at {resolution} "
                      f"px -> {target} (provenance: {record['outputs']['provenance']}); next: brainrecon train-encoder "
                      f"--modality {'rgbd' if train_depth else 'rgb'} --subject {subject} --data-dir {target}"
                      + (f" --set data.resolution={resolution}" if resolution != 112 else ""),
                      highlight=False, soft_wrap=True)


def parse_roi_masks(items: list[str]) -> dict[str, Path]:
    """`--roi-mask NAME=FILE` (repeatable) -> {NAME: FILE}, each name once and one of the trainers' ROIs."""
    masks: dict[str, Path] = {}
    for item in items:
        name, sep, file = item.partition("=")
        name = name.strip()
        if not sep or not name or not file.strip():
            raise UserError(f"--roi-mask {item!r}: expected NAME=FILE, e.g. --roi-mask V1=v1_mask.npy")
        if name not in ROIS:
            raise UserError(f"--roi-mask {item!r}: unknown ROI {name!r}; choose one of {', '.join(ROIS)}")
        if name in masks:
            raise UserError(f"--roi-mask {item!r}: {name} is given twice; give each ROI once")
        masks[name] = Path(file.strip())
    return masks
