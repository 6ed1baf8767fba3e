"""Real public data -> the release formats: one converter per source (GOD: god.py with bdata.py; NSD: nsd/).

Every converter reads and checks all of its inputs before it writes, writes atomically, and records what it did in
`convert.json` beside its outputs. The formats themselves are described once, in brainrecon.data.release.
"""
