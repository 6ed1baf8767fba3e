"""brainrecon: self-supervised RGBD image reconstruction from fMRI.

The Python API (brainrecon/api.py), loaded on first use so that `import brainrecon` stays light:

    from brainrecon import load_decoder, load_encoder, load_config
    images = load_decoder("runs/decoder").decode(voxels)       # (N, V) -> (N, H, W, C) in [0, 1]
    voxels = load_encoder("runs/encoder").predict(images)      # (N, H, W, C) -> (N, V)

A run folder, a `brainrecon export` folder or a Hub id (`hf://owner/name`) loads alike. `version_string()` names the
code: the release, and the git commit when run from a checkout (brainrecon/version.py).
"""

from brainrecon.version import __version__, version_string

__all__ = ["load_decoder", "load_encoder", "load_config", "__version__", "version_string"]


def __getattr__(name: str):
    if name in ("load_decoder", "load_encoder"):
        from brainrecon import api
        return getattr(api, name)
    if name == "load_config":
        from brainrecon.config import load_config
        return load_config
    raise AttributeError(f"module 'brainrecon' has no attribute {name!r}")
