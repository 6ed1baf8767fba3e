"""The sources fetch-data takes files from, in the order it takes them: each declares its groups, files, terms and
next command in its own module (a brainrecon.data.download.Source); the screen iterates over this table."""

from __future__ import annotations

from brainrecon.sources import god_fetch, release_files
from brainrecon.sources.nsd import fetch as nsd_fetch

SOURCES = (release_files.SOURCE, god_fetch.SOURCE, nsd_fetch.SOURCE)
