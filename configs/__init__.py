"""The YAML presets, installed as the package `brainrecon.configs` (see pyproject.toml); no code lives here.

encoder/ and decoder/ each hold `<modality>.yaml` (what the published runs set per modality), the CPU preset `demo.yaml`
and `fast.yaml`, which only refines `demo` (`--config demo,fast`). `brainrecon.config` reads them through
importlib.resources.
"""
