"""The names a user picks from, declared once: stages, modalities, ROIs, metrics and networks.

Configs, the command line, the data readers and the converters all check a user's choice against these tuples.
"""

from __future__ import annotations

from brainrecon.config.networks import BACKBONE_NAMES, BACKBONE_WEIGHTS, FEATURE_NAMES, PERCEPTUAL_CHOICES
from brainrecon.metric_specs import METRIC_NAMES

STAGES = ("encoder", "decoder")
MODALITIES = ("rgb", "depth", "rgbd")
ROIS = ("V1", "V2", "V3", "V4", "FFA", "PPA", "LOC", "LVC", "HVC", "VC")
ALL_METRICS = METRIC_NAMES
"""Every metric `evaluate --metric` accepts, as brainrecon/metric_specs.py declares them."""
BACKBONES = BACKBONE_NAMES
"""`model.arch` (and `BACKBONE_WEIGHTS`, the values of `model.backbone_weights`)."""
PERCEPTUAL_NETS = PERCEPTUAL_CHOICES
"""`loss.perceptual_net`: auto, a network, or none."""
FEATURE_NETS = FEATURE_NAMES
"""`classify --features`. The networks are declared in brainrecon/config/networks.py, with what each is; their
constructors are registered in brainrecon/models/registry.py."""
__all__ = ["STAGES", "MODALITIES", "ROIS", "ALL_METRICS", "BACKBONES", "BACKBONE_WEIGHTS", "PERCEPTUAL_NETS",
           "FEATURE_NETS"]
