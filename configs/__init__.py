"""The YAML presets, installed as the package `brainrecon.configs` (see pyproject.toml); no code lives here.

encoder/ and decoder/ each hold `<modality>.yaml` (what the published runs set per modality) and the CPU presets
`demo.yaml` and `quick.yaml`. `brainrecon.config` reads them through importlib.resources.
"""
