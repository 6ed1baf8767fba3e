"""An exported model folder read back as a run: `brainrecon export` writes it (train/export.py) in the Hugging Face
Hub's layout, and everything that loads a run's best network loads it too.

    model.safetensors   the weights (safetensors: tensors only, no pickle); a weight that several modules share
                        (the trunk of a multi-subject run) is stored once, its other names listed under `tied`
    config.json         what the network is (kind, modality, ROI, voxels, resolution, subjects), its preprocessing,
                        and the run's resolved config without machine paths
    metrics.json        the run's metrics.json, without machine paths
    README.md           the model card

`load_state` returns the dict `checkpoint.load_best` returns for a run folder, so `load_encoder` / `load_decoder`
build the network the same way from either. `resolve_run` turns a Hub id `hf://owner/name[@revision]` into the local
folder huggingface_hub downloads into its cache; publishing stays the user's `huggingface-cli upload`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from brainrecon.errors import UserError
from brainrecon.version import __version__

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
METRICS = "metrics.json"
CARD = "README.md"
FILES = (WEIGHTS, CONFIG, METRICS, CARD)
FORMAT = "brainrecon-export"
FORMAT_VERSION = 1
HUB = "hf://"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def is_exported(path: str | Path) -> bool:
    """A folder `brainrecon export` wrote: its config.json names the format (or cannot be read beside the weights,
    which `load_state` then reports)."""
    config = Path(path) / CONFIG
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return (Path(path) / WEIGHTS).is_file()


def read_config(folder: Path) -> dict:
    """config.json of an exported folder, checked to be one this brainrecon reads."""
    path = Path(folder) / CONFIG
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable config.json ({type(e).__name__}); export the run again or download "
                        "the model again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{path}: not a `brainrecon export` config.json; give a folder that `brainrecon export` wrote")
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path}: export format {meta.get('format_version')!r}, this brainrecon ({__version__}) reads "
                        f"format {FORMAT_VERSION}; install the brainrecon version the model card names")
    missing = [k for k in ("kind", "model_kind", "n_voxels", "run_config", "tied") if k not in meta]
    if missing:
        raise UserError(f"{path}: {', '.join(missing)} missing; export the run again")
    return meta


def load_weights(folder: Path, meta: dict) -> dict:
    """The state dict of model.safetensors, every tied name restored."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise UserError(f"{path}: missing; export the run again (`brainrecon export RUN {folder}`) or download the "
                        "whole model folder")
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable safetensors file ({str(e)[:80]}); export or download it "
                        "again") from None
    for alias, source in meta["tied"].items():
        if source not in tensors:
            raise UserError(f"{path}: {alias} is tied to {source}, which the file lacks; export the run again")
        tensors[alias] = tensors[source]
    return tensors


def load_state(folder: str | Path, kind: str) -> dict:
    """An exported folder as the state `checkpoint.load_best` returns for a run folder of that kind."""
    folder = Path(folder)
    meta = read_config(folder)
    if meta["kind"] != kind:
        raise UserError(f"{folder}: an exported {meta['kind']}, not a {kind}; pass an exported {kind} (`brainrecon "
                        f"export` of a train-{kind} run)")
    return {"kind": kind, "model_kind": meta["model_kind"], "model": load_weights(folder, meta),
            "config": meta["run_config"], "n_voxels": int(meta["n_voxels"]), "subjects": meta.get("subjects") or {},
            "epoch": int(meta.get("best_epoch", 1)) - 1, "encoder_run": "", "data_dir": None, "exported": True}


def run_name(folder: Path) -> str:
    """The name a run's outputs carry: the run folder's, or for an exported one the run it was exported from (an
    hf:// download sits in a cache folder named by its commit)."""
    if is_exported(folder):
        return str(read_config(folder).get("name") or Path(folder).name)
    return Path(folder).name


def is_hub_id(spec: str | Path) -> bool:
    """`spec` names a model on the Hub (`hf://owner/name[@revision]`), not a folder."""
    return str(spec).startswith(HUB)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The exceptions of a failed transfer, from whichever HTTP library this huggingface_hub uses (httpx from 1.0,
    requests before; OSError covers the sockets and the cache)."""
    import importlib
    found: list[type[BaseException]] = [OSError]
    for module, name in (("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [""])[0][:100]


def resolve_run(spec: str | Path) -> Path:
    """A run or exported folder as given; a Hub id `hf://owner/name[@revision]` -> its local copy, downloaded by
    huggingface_hub.snapshot_download into the Hub cache (only the files of an export). No network and no copy in
    the cache, no such repository or not a brainrecon export: one line each, never another model."""
    text = str(spec)
    if not is_hub_id(text):
        return Path(spec)
    repo, _, revision = text[len(HUB):].partition("@")
    if not HUB_ID.fullmatch(repo) or (revision == "" and "@" in text):
        raise UserError(f"{text}: not a Hub id; write hf://owner/name (or hf://owner/name@revision)")
    try:
        import huggingface_hub
        from huggingface_hub import errors
        from huggingface_hub.utils import HFValidationError
    except ImportError:
        raise UserError(f"{text}: loading from the Hub needs huggingface_hub; pip install huggingface_hub") from None
    try:
        local = huggingface_hub.snapshot_download(repo, revision=revision or None, allow_patterns=list(FILES),
                                                  library_name="brainrecon", library_version=__version__)
    except HFValidationError as e:
        raise UserError(f"{text}: not a Hub id ({_first_line(e)}); write hf://owner/name (or "
                        "hf://owner/name@revision)") from None
    except errors.GatedRepoError:
        raise UserError(f"{text}: a gated model; accept its terms on huggingface.co/{repo} and log in with "
                        "`huggingface-cli login`") from None
    except errors.RepositoryNotFoundError:
        raise UserError(f"{text}: no such model on the Hugging Face Hub (a private one needs `huggingface-cli "
                        "login`)") from None
    except errors.RevisionNotFoundError:
        raise UserError(f"{text}: the model has no revision {revision!r}; drop @{revision} or name a branch, tag "
                        "or commit it has") from None
    except errors.LocalEntryNotFoundError:
        raise UserError(f"{text}: the Hugging Face Hub cannot be reached (no network?) and no copy is in the local "
                        "Hub cache; connect and try again, or pass a downloaded model folder") from None
    except (errors.HfHubHTTPError, *_transport_errors()) as e:
        raise UserError(f"{text}: download failed ({type(e).__name__}: {_first_line(e)}); try again "
                        "or pass a downloaded model folder") from None
    if not is_exported(local):
        raise UserError(f"{text}: not a brainrecon model (no config.json written by `brainrecon export`)")
    return Path(local)
