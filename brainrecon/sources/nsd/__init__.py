"""The Natural Scenes Dataset (Allen et al. 2022) -> the release formats.

files.py: where each NSD file lives in the public bucket, and the facts about them (volume sizes, sessions);
read.py: the readers, each refusing a bad file in one line that names it; convert.py: `brainrecon convert-nsd`.
None of this has met a real NSD file: it is written from the documented layout and tested on generated NSD trees.
"""
