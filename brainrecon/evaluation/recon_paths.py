"""Which reconstructions.npz a RECONS argument of `evaluate` or `classify` names: a file as given; in a run folder,
`reconstruct_test/` (a single-subject run) or `reconstruct_test_subject<N>/` (subject N of a group run, chosen with
`--subject N`). Torch-free, so that the CLI answers a wrong choice at once."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import yaml

from brainrecon.errors import UserError

NPZ = "reconstructions.npz"
"""The file `brainrecon reconstruct` writes (brainrecon.reconstruct.NPZ; that module loads torch)."""
_MEMBER = re.compile(r"reconstruct_test_subject(\d+)$")


def member_folders(run: Path) -> dict[int, Path]:
    """{subject: folder} of the group subjects reconstructed in `run` (reconstruct_test_subject<N>/ with its npz)."""
    found = {}
    for folder in Path(run).glob("reconstruct_test_subject*"):
        match = _MEMBER.match(folder.name)
        if match and (folder / NPZ).is_file():
            found[int(match.group(1))] = folder
    return dict(sorted(found.items()))


def _recorded_subject(npz: Path) -> int | None:
    try:
        with np.load(npz, allow_pickle=False) as z:
            return int(z["subject"]) if "subject" in z.files else None
    except Exception:  # noqa: BLE001 - an unreadable file: the loader says why
        return None


def _group_of(run: Path) -> list[int]:
    """The subjects of a group run, from its config.yaml (empty for a single-subject run or no config)."""
    try:
        cfg = yaml.safe_load((Path(run) / "config.yaml").read_text()) or {}
        return [int(s) for s in (cfg.get("data") or {}).get("subjects") or []]
    except (OSError, yaml.YAMLError, ValueError, TypeError, AttributeError):
        return []


def _names(members: dict[int, Path]) -> str:
    return ", ".join(f"{f.name}/" for f in members.values())


def reconstruction_file(path: Path, subject: int | None = None) -> Path:
    """The reconstructions file `path` names: a file as given; a folder holding reconstructions.npz; a run folder's
    reconstruct_test/, or for subject N of a group run its reconstruct_test_subject<N>/ (`subject`, or the only one
    reconstructed). A choice that cannot be made is one line naming the folders present and the fix; a folder with
    nothing recognisable is returned as given, for the loader to say what is missing."""
    path = Path(path)
    if not path.is_dir() or (path / NPZ).is_file():
        file = path / NPZ if path.is_dir() else path
        recorded = _recorded_subject(file) if subject is not None and file.suffix == ".npz" else None
        if recorded not in (subject, None):
            raise UserError(f"{path}: reconstructions of subject {recorded}, not --subject {subject}")
        return file
    single, members = path / "reconstruct_test" / NPZ, member_folders(path)
    if subject is not None:
        if subject in members:
            return members[subject] / NPZ
        if single.is_file() and _recorded_subject(single) in (subject, None):
            return single
        held = f"reconstruct_test/ holds subject {_recorded_subject(single)}'s" if single.is_file() else ""
        present = "; ".join(p for p in (held, f"present: {_names(members)}" if members else "") if p)
        raise UserError(f"{path}: no reconstructions of subject {subject}{f' ({present})' if present else ''}; run "
                        f"`brainrecon reconstruct {path} --subject {subject}` first")
    if single.is_file():
        return single
    if len(members) == 1:
        return next(iter(members.values())) / NPZ
    if members:
        raise UserError(f"{path}: reconstructions of several subjects of a group run ({_names(members)}); choose one "
                        f"with --subject N (N one of {', '.join(map(str, members))})")
    group = _group_of(path)
    if group:
        raise UserError(f"{path}: a run of subjects {', '.join(map(str, group))}, none reconstructed yet; run "
                        f"`brainrecon reconstruct {path} --subject N` first (N one of them)")
    return path
