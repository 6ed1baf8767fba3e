"""brainrecon: self-supervised RGBD image reconstruction from fMRI."""

__version__ = "0.1.0"
