"""What `fetch-data --only nsd` takes: every file `convert-nsd` reads for the chosen subjects (and sessions), from
NSD's public bucket, in the bucket's layout under the data folder's nsd/.

Their hashes are not published either: trusted on first use and locked like the release files. Their sizes are
estimates from the volume sizes (files.approx_size), refined by the server's answer before a download.
"""

from __future__ import annotations

from pathlib import Path

from brainrecon.data.download import Entry, Source, Terms, fetched_subject
from brainrecon.sources.nsd import files

GROUP = "nsd"
FOLDER = "nsd"
SUBJECTS = tuple(files.SESSIONS)

TERMS = Terms("nsd_terms_accepted", {
    "Natural Scenes Dataset (Allen et al. 2022, naturalscenesdataset.org)":
        f"access requires agreeing to the NSD Terms and Conditions ({files.TERMS_URL}) and submitting the NSD Data "
        f"Access form ({files.ACCESS_FORM_URL}) first; the data may not be redistributed; cite Allen et al., "
        "Nat. Neurosci. 25:116, 2022. brainrecon cannot check that you did: accepting here says you have.",
    "COCO images in the NSD stimulus brick": "the COCO terms of use (cocodataset.org/#termsofuse); the images "
        "keep their Flickr licences.",
})


def entries(subjects: list[int], sessions: str | None) -> list[Entry]:
    """The files of each subject (--sessions: part of a subject), the shared ones once."""
    out: dict[str, Entry] = {}
    for subject in subjects:
        for path in files.subject_files(subject, files.parse_sessions(sessions, subject)):
            shared = path in (files.EXPDESIGN, files.STIMULI)
            out.setdefault(path, Entry(path, GROUP, f"{files.BUCKET_URL}/{path}", size=files.approx_size(path, subject),
                                       approx=True, folder=FOLDER, subject=None if shared else subject))
    return list(out.values())


def take(only: list[str], subjects: list[int] | None, sessions: str | None) -> list[Entry]:
    return entries(list(subjects or ()), sessions)


def next_step(root: Path, fetched: list[Entry]) -> str | None:
    subject = fetched_subject(fetched, GROUP)
    return None if subject is None else f"brainrecon convert-nsd --subject {subject} --data-dir {root}"


SOURCE = Source(
    terms=TERMS, groups=(GROUP,), files=lambda: [], take=take, next_step=next_step, dataset="NSD", subjects=SUBJECTS,
    subject_groups=(GROUP,), needs_subjects="--only nsd needs --subjects (e.g. --subjects 1): one NSD subject is "
    "~40 GB of betas", sessions=True)
