"""A new subject from a multi-subject run (`train.init_from`): the shared parts loaded, the subject's own layers
initialised from the group, then everything fine-tuned by the usual trainer with the usual loss.

- Encoder: the image pathway (backbone and heads) is the group's. Each new voxel's readout (space map, channel mixes,
  branch mix, bias) starts as a copy of the group voxel whose predicted responses to the new subject's training images
  correlate best with the new voxel's measured ones, scaled and shifted by least squares onto them.
  This needs only the new subject's own images, so it works whether or not the group saw them (NSD). The recorded
  `median_match_r` comes with `median_match_r_null`: the same best-of-all-group-voxels matching against the new
  subject's fMRI with its rows shuffled (no stimulus relation), the level a match reaches by chance.
- Decoder: the trunk (blocks and top) is the group's. The new subject's voxel -> seed-features input layer is a ridge
  regression (lambda by cross-validation) from its training fMRI onto target seed features for its training images,
  the mean over the group's subjects of what their input layers give: the features the shared trunk already turns
  into images. Two rules make those targets, and metrics.json says which ran:
  "group fMRI": the group subjects' measured fMRI for the same images (GOD: they saw the new subject's images; their
  sbj_<N>.npz lie in the data folder); "group encoder": the group's encoder's predicted fMRI for the new subject's own
  images (NSD: the group never saw them; the group decoder's run records its encoder run).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from brainrecon.correlation import pearson
from brainrecon.data import layout, release
from brainrecon.data.datasets import PairedData
from brainrecon.data.group import images_sha256
from brainrecon.errors import UserError
from brainrecon.models.decoder import Decoder
from brainrecon.models.encoder import Encoder
from brainrecon.train import checkpoint
from brainrecon.train.encoder_step import predict
from brainrecon.train.ridge import cross_validate, fit_ridge

ENCODER_KEYS = ("arch", "width", "input_size", "head_channels", "depth_input", "backbone_weights")


def check_compatible(cfg, group_cfg, keys: tuple[str, ...], run: Path, stage: str) -> None:
    """The new run must build the group's shared parts: the same modality and the model settings in `keys`."""
    diffs = [f"model.{k} {getattr(group_cfg.model, k)} vs {getattr(cfg.model, k)}" for k in keys
             if getattr(group_cfg.model, k) != getattr(cfg.model, k)]
    if group_cfg.modality != cfg.modality:
        diffs.insert(0, f"modality {group_cfg.modality} vs {cfg.modality}")
    if group_cfg.data.resolution != cfg.data.resolution:
        diffs.append(f"data.resolution {group_cfg.data.resolution} vs {cfg.data.resolution}")
    if diffs:
        raise UserError(f"{run}: --init-from needs the {stage} settings it was trained with ({'; '.join(diffs)}); "
                        f"pass --config {run} (its config.yaml) with your changes")


def shares_stimuli(state: dict) -> bool:
    """Whether a group run's subjects all saw one stimulus set (GOD), which a new subject must then share too."""
    return "NSD" not in (state.get("stimuli") or {}).get("rule", "")


def check_stimuli(run: Path, state: dict, files: list[Path]) -> None:
    """A new subject of a group that saw one stimulus set (GOD) must have seen it too, by content (a sha256 of the
    pixels; a run written before it recorded the hash: by the file's name and size). NSD groups need no check."""
    stim = files[0]
    recorded = state.get("stimuli") or {}
    if recorded:
        if not shares_stimuli(state):
            return
        first = next(iter(recorded["subjects"].values()))
        if first.get("sha256") and first["sha256"] != images_sha256(stim):
            raise UserError(f"{stim}: not the stimulus set the --init-from run {run} was trained on (its images "
                            f"differ in content from {first['file']}); adapt only a subject who saw the same images")
        return
    old = state.get("stimulus_file") or {}
    if old and (old.get("name") != stim.name or old.get("bytes") != stim.stat().st_size):
        raise UserError(f"{stim}: not the stimulus set the --init-from run {run} was trained on ({old.get('name')}, "
                        f"{old.get('bytes')} bytes); adapt only a subject who saw the same images")


def group_state(run: Path, kind: str) -> dict:
    """The best state of the --init-from run; an exported folder is refused: it lacks the record of the group's
    stimuli (and a decoder's encoder run) that adapting checks and uses."""
    state = checkpoint.load_best(run, kind)
    if state.get("exported"):
        raise UserError(f"--init-from {run}: an exported model (`brainrecon export`), which lacks the group's "
                        f"training records; give the train-{kind} run folder it was exported from (with best.pt)")
    return state


@torch.no_grad()
def adapt_encoder(raw: Encoder, run: Path, cfg, data: PairedData) -> dict:
    """Load the group's image pathway into `raw` and initialise its readout from the best-matching group voxels."""
    state = group_state(run, "encoder")
    group = checkpoint.load_group_encoder(run, "cpu", state)
    check_compatible(cfg, group.config, ENCODER_KEYS, run, "encoder")
    check_stimuli(run, state, data.files)
    raw.backbone.load_state_dict(group.members[str(group.subjects[0])].backbone.state_dict())
    raw.heads.load_state_dict(group.members[str(group.subjects[0])].heads.state_dict())
    images, target = data.train_images.cpu(), data.train_fmri.cpu().float()
    shuffled = target[torch.randperm(len(target), generator=torch.Generator().manual_seed(cfg.train.seed))]
    null_r = torch.full((target.shape[1],), -2.0)
    best_r = torch.full((target.shape[1],), -2.0)
    best_src = torch.zeros(target.shape[1], 2, dtype=torch.long)                       # (member index, voxel)
    preds = {}
    for m, s in enumerate(group.subjects):
        member = group.members[str(s)]
        preds[m] = pred = predict(member, images)                                       # (N, V_s)
        r = pearson(pred.T, target.T, cross=True)                                       # (V_s, V)
        null_r = torch.maximum(null_r, pearson(pred.T, shuffled.T, cross=True).max(0).values)
        value, voxel = r.max(0)
        better = value > best_r
        best_r[better] = value[better]
        best_src[better] = torch.stack([torch.full_like(voxel[better], m), voxel[better]], 1)
    for m, s in enumerate(group.subjects):
        new = torch.nonzero(best_src[:, 0] == m).flatten()
        if len(new) == 0:
            continue
        src = best_src[new, 1]
        x, y = preds[m][:, src], target[:, new]                                          # (N, k) each
        xc = x - x.mean(0)
        slope = (xc * (y - y.mean(0))).sum(0) / (xc * xc).sum(0).clamp_min(1e-12)
        offset = y.mean(0) - slope * x.mean(0)
        _copy_readout(raw, group.members[str(s)], new, src, slope, offset)
    return {"run": str(Path(run).resolve()), "subjects": group.subjects,
            "readout": "each voxel from the group voxel whose predictions correlate best with it, least-squares scaled",
            "median_match_r": float(best_r.median()), "median_match_r_null": float(null_r.median()),
            "null": "the same matching against the new subject's fMRI with its rows shuffled"}


def _copy_readout(raw: Encoder, source: Encoder, new: torch.Tensor, src: torch.Tensor, slope: torch.Tensor,
                  offset: torch.Tensor) -> None:
    """Voxels `new` of `raw` get the readout of `source`'s voxels `src`, so that their output is slope * the source
    voxel's + offset: the channel mixes scaled by slope (the output is linear in them), the bias slope * b + offset."""
    for side, space in raw.space_maps.items():
        space.weight[new] = source.space_maps[side].weight[src]
    scaled_bias = 0.0
    for k, (mix, smix) in enumerate(zip(raw.chan_mixes, source.chan_mixes)):
        mix.chan_mix[new] = smix.chan_mix[src] * slope.unsqueeze(1)
        mix.bias[new] = 0.0
        scaled_bias = scaled_bias + smix.bias[src] * source.branch_mix[src, k].abs()
    raw.branch_mix[new] = source.branch_mix[src]
    # the source's output carries sum_k |branch_k| * bias_k: slope * that + offset goes into the bias of each voxel's
    # strongest branch (dividing by a weak branch's weight would blow it up)
    weight, strongest = raw.branch_mix[new].abs().max(1)
    for k, mix in enumerate(raw.chan_mixes):
        on = strongest == k
        mix.bias[new[on]] = ((slope * scaled_bias + offset) / weight.clamp_min(1e-6))[on]


@torch.no_grad()
def adapt_decoder(raw: Decoder, run: Path, cfg, data: PairedData, data_root: Path) -> dict:
    """Load the group's trunk into `raw` and fit its input layer by ridge onto the group's seed features."""
    state = group_state(run, "decoder")
    group = checkpoint.load_group_decoder(run, "cpu", state)
    check_compatible(cfg, group.config, ("channels",), run, "decoder")
    check_stimuli(run, state, data.files)
    first = group.members[str(group.subjects[0])]
    raw.blocks.load_state_dict(first.blocks.state_dict())
    raw.top.load_state_dict(first.top.state_dict())
    stimuli = data.train_stimuli
    target = torch.zeros(len(stimuli), raw.input_fc.out_features, dtype=torch.float64)
    rule = "group fMRI" if shares_stimuli(state) else "group encoder"
    if rule == "group fMRI":
        fmri = {s: _rows_of(data_root, s, group.config.data.roi, stimuli, run) for s in group.subjects}
    else:
        fmri = _predicted_fmri(state, run, group.subjects, data.train_images.cpu())
    for s in group.subjects:
        target += group.members[str(s)].input_fc(fmri[s]).double() / len(group.subjects)
    x = data.train_fmri.cpu().double()
    z = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    lambdas = sorted(cfg.ridge_lambdas)
    scores = cross_validate(z, target, lambdas, cfg.ridge_folds, cfg.train.seed)
    lam = lambdas[int(np.argmax(scores))]
    fitted = fit_ridge(x, target, lam)
    weight = (fitted["left"].double() @ fitted["right"].double()) / fitted["voxel_std"].double().unsqueeze(1)
    raw.input_fc.weight.copy_(weight.T.float())
    raw.input_fc.bias.copy_((fitted["intercept"].double() - fitted["voxel_mean"].double() @ weight).float())
    how = {"group fMRI": "the group subjects' measured fMRI for the same images",
           "group encoder": "the group encoder's predicted fMRI for the new subject's own images"}[rule]
    return {"run": str(Path(run).resolve()), "subjects": group.subjects, "rule": rule,
            "input_layer": f"ridge onto the group's seed features from {how}", "lambda": lam,
            "cv_feature_r": round(float(max(scores)), 4)}


def _predicted_fmri(state: dict, run: Path, subjects: list[int], images: torch.Tensor) -> dict[int, torch.Tensor]:
    """Each group subject's predicted fMRI for `images`, by the group encoder the group decoder was trained with."""
    encoder_run = state.get("encoder_run") or ""
    if not encoder_run or not (Path(encoder_run) / checkpoint.BEST).is_file():
        where = f" at {encoder_run}" if encoder_run else ""
        raise UserError(f"{run}: --init-from of a group that never saw the new subject's images fits the input layer "
                        f"through the group's encoder, but this run records none{where}"
                        "; adapt from a group decoder trained with its --encoder (self-supervised), kept in place")
    encoders = checkpoint.load_group_encoder(Path(encoder_run), "cpu")
    missing = [s for s in subjects if str(s) not in encoders.members]
    if missing:
        raise UserError(f"{encoder_run}: the group encoder lacks subjects {missing}; it is not the group decoder's")
    return {s: predict(encoders.members[str(s)], images) for s in subjects}


def _rows_of(data_root: Path, subject: int, roi: str, stimuli: np.ndarray, run: Path) -> torch.Tensor:
    """Group subject `subject`'s training fMRI for each of `stimuli` (the mean of its rows showing it)."""
    path = layout.subject_file(data_root, subject)
    if not path.exists():
        raise UserError(f"{path}: missing; --init-from {run} fits the new subject's input layer on the group subjects' "
                        f"fMRI for the same images, so their sbj_<N>.npz must be in the data folder too")
    sub = release.load_subject(data_root, subject, roi)
    fmri = torch.as_tensor(sub.train_fmri, dtype=torch.float32)
    out = torch.zeros(len(stimuli), fmri.shape[1])
    for i, stim in enumerate(stimuli):
        rows = np.flatnonzero(sub.train_labels == stim)
        if len(rows) == 0:
            raise UserError(f"{path}: subject {subject} never saw training stimulus {stim}; the group and the new "
                            "subject must share the stimulus set")
        out[i] = fmri[rows].mean(0)
    return out
