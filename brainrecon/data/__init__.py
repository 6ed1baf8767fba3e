"""Release formats, the data folder layout, image trees, datasets and the download library: where files are read and
written.

`write_subject` (brainrecon/data/own_data.py) turns a lab's own fMRI arrays and images into the release files;
it is loaded on first use, so that `import brainrecon.data.layout` stays light. The modules of this package import
each other by their full names (`import brainrecon.data.layout as layout`), never through this one."""

__all__ = ["write_subject"]


def __getattr__(name: str):
    if name == "write_subject":
        from brainrecon.data.own_data import write_subject
        return write_subject
    raise AttributeError(f"module 'brainrecon.data' has no attribute {name!r}")
