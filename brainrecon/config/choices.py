"""The names a user picks from, declared once: stages, modalities, ROIs and metrics.

Configs, the command line, the data readers and the converters all check a user's choice against these tuples.
"""

from __future__ import annotations

from brainrecon.metric_specs import METRIC_NAMES

STAGES = ("encoder", "decoder")
MODALITIES = ("rgb", "depth", "rgbd")
ROIS = ("V1", "V2", "V3", "V4", "FFA", "PPA", "LOC", "LVC", "HVC", "VC")
ALL_METRICS = METRIC_NAMES
"""Every metric `evaluate --metric` accepts, as brainrecon/metric_specs.py declares them."""
