"""What `fetch-data --only god-h5` takes for `convert-god`: the Kamitani lab's preprocessed GOD fMRI in bdpy BData
HDF5 (figshare article 7387130), one `Subject<N>.h5` per subject 1-5, into the data folder.

The stimulus photos are not public (the lab sends them on request), so they are not declared here. figshare
publishes no sha256 and the sizes are not declared: they are asked of the server before a download.
"""

from __future__ import annotations

from pathlib import Path

from brainrecon.data.download import Entry, Source, Terms, fetched_subject

GROUP = "god-h5"
SUBJECTS = (1, 2, 3, 4, 5)
FIGSHARE_FILE = {1: 24080120, 2: 24080123, 3: 24080126, 4: 24080129, 5: 24080132}
URL = "https://ndownloader.figshare.com/files/{}"

TERMS = Terms("god_sources_terms_accepted", {
    "GOD preprocessed fMRI, BData HDF5 (figshare article 7387130, Kamitani lab)":
        "the lab's public release of the GOD data (OpenNeuro ds001246, CC0; see the figshare page for its licence); "
        "cite Horikawa & Kamitani, Nat. Commun. 2017.",
})


def entry(subject: int) -> Entry:
    return Entry(f"Subject{subject}.h5", GROUP, URL.format(FIGSHARE_FILE[subject]), subject=subject)


def entries(subjects: list[int] | None = None) -> list[Entry]:
    return [entry(s) for s in (subjects or SUBJECTS)]


def names() -> set[str]:
    return {e.name for e in entries()}


def take(only: list[str], subjects: list[int] | None, sessions: str | None = None) -> list[Entry]:
    """The group's subjects (--subjects, else all five) when the group is named, and each file named by itself."""
    wanted = list(subjects if subjects is not None else SUBJECTS) if GROUP in only else []
    wanted += [e.subject for e in entries() if e.name in only]
    return [entry(s) for s in sorted(set(wanted))]


def next_step(root: Path, fetched: list[Entry]) -> str | None:
    subject = fetched_subject(fetched, GROUP)
    return None if subject is None else \
        f"brainrecon convert-god --subject {subject} --images PHOTOS --data-dir {root}"


SOURCE = Source(
    terms=TERMS, groups=(GROUP,), files=entries, take=take, next_step=next_step, dataset="GOD", subjects=SUBJECTS,
    subject_groups=(GROUP,))
