"""Reading any checkpoint file: `torch.load(..., weights_only=True)` and nothing else, with user errors that name the
file and the fix."""

from __future__ import annotations

from pathlib import Path

import torch

from brainrecon.errors import UserError


def read_weights(path: str | Path, missing_fix: str, bad_fix: str = "delete it and fetch it again") -> dict:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: not found; {missing_fix}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise UserError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e)[:80]}); {bad_fix}") from None
