"""fetch-data's screen: which sources --only names, the plan (each file's size, the total, the destination) before
anything is fetched, the terms prompts, the progress bars and the "Next:" line. The downloading itself is
brainrecon.data.download; each source declares its files and terms in its own module."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape

from brainrecon.data import download, layout
from brainrecon.data.archive import unpack
from brainrecon.data.download import Entry, Lock, Terms
from brainrecon.errors import UserError
from brainrecon.locks import hold_data
from brainrecon.sources import god_fetch, release_files
from brainrecon.sources.nsd import fetch as nsd_fetch

GROUPS = (*release_files.GROUPS, god_fetch.GROUP, nsd_fetch.GROUP)


@dataclass
class Part:
    """The files taken from one source, under its terms."""
    terms: Terms
    entries: list[Entry]


def parse_subjects(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise UserError(f"--subjects {text!r} must be numbers separated by commas, e.g. 1,3") from None


def _check_subjects(subjects: list[int], valid: tuple, text: str, what: str) -> None:
    bad = [s for s in subjects if s not in valid]
    if bad:
        raise UserError(f"--subjects {text}: {what} has subjects {min(valid)}-{max(valid)}, not {bad[0]}")


def select(only: list[str], subjects_text: str | None, sessions: str | None) -> list[Part]:
    """--only (groups, `all`, file names), --subjects and --sessions -> the files of each source, every value checked
    (nothing is created here)."""
    known = release_files.names() | god_fetch.names()
    for o in only:
        if o != "all" and o not in GROUPS and o not in known:
            raise UserError(f"--only {o!r} is neither a group ({', '.join(GROUPS)}, all) nor a release file name")
    subjects = parse_subjects(subjects_text)
    god_named = [o for o in only if o in god_fetch.names()]
    release_only = [o for o in only if o != god_fetch.GROUP and o != nsd_fetch.GROUP and o not in god_named]
    per_subject = {"fmri", "all", god_fetch.GROUP, nsd_fetch.GROUP}
    if subjects_text is not None and not per_subject & set(only):
        raise UserError(f"--subjects applies to the fmri, god-h5 and nsd groups (and all); --only {' '.join(only)} "
                        "takes none of them")
    if sessions and nsd_fetch.GROUP not in only:
        raise UserError("--sessions applies to --only nsd")
    god_subjects = subjects if subjects is not None else list(release_files.SUBJECTS)
    if {"fmri", "all", god_fetch.GROUP} & set(only):
        _check_subjects(god_subjects, release_files.SUBJECTS, subjects_text, "GOD")  # NSD's 1-8: --only nsd
    parts = []
    if release_only:
        parts.append(Part(release_files.TERMS, release_files.select(release_only, god_subjects)))
    if god_fetch.GROUP in only or god_named:
        wanted = god_subjects if god_fetch.GROUP in only else []
        wanted += [int(n[7:-3]) for n in god_named]
        parts.append(Part(god_fetch.TERMS, god_fetch.entries(sorted(set(wanted)))))
    if nsd_fetch.GROUP in only:
        if subjects is None:
            raise UserError("--only nsd needs --subjects (e.g. --subjects 1): one NSD subject is ~40 GB of betas")
        _check_subjects(subjects, nsd_fetch.SUBJECTS, subjects_text, "NSD")
        parts.append(Part(nsd_fetch.TERMS, nsd_fetch.entries(subjects, sessions)))
    return [p for p in parts if p.entries]


def human(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def size_text(s: download.Size) -> str:
    if s.bytes is None:
        return "?"
    return ("~" if s.how == "approx" else "") + human(s.bytes)


def existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def show_plan(entries: list[Entry], root: Path, lock: Lock, base_url: str | None, console, dry_run: bool) -> None:
    """Each file to fetch with its size (asked of the server where not declared), the total and the destination."""
    todo = [e for e in entries if not (root / e.key).exists()]
    sizes = download.sizes(todo, root, lock, base_url)
    made = "" if root.is_dir() else " (a new folder, made when the download starts)"
    console.print(f"{'dry run: ' if dry_run else ''}{len(todo)} file(s) to download into {escape(str(root))}{made}"
                  f"; {len(entries) - len(todo)} already there", highlight=False, soft_wrap=True)
    width = max((len(e.key) for e in todo), default=0)
    for e, s in zip(todo, sizes):
        where = f"  <- {e.source_url(base_url)}" if dry_run else ""
        console.print(f"  {e.key:<{width}}  {size_text(s):>10}{where}", markup=False, highlight=False, soft_wrap=True)
    if dry_run:
        for e in entries:
            if e not in todo:
                console.print(f"  {e.key}  present (verified against the lock when fetched)", markup=False,
                              highlight=False, soft_wrap=True)
    if not todo:
        return
    total = sum(s.bytes or 0 for s in sizes)
    unknown = sum(s.bytes is None for s in sizes)
    approx = any(s.how == "approx" for s in sizes)
    notes = [f"{unknown} file(s) of unknown size: the server did not say; the total is a lower bound"] if unknown \
        else []
    notes += ["~: an estimate"] if approx else []
    line = f"total: {'at least ' if unknown else 'about ' if approx else ''}{human(total)}" + \
        (f" ({'; '.join(notes)})" if notes else "")
    free = shutil.disk_usage(existing_parent(root)).free
    console.print(f"{line}; free space at the destination: {human(free)}", highlight=False, soft_wrap=True)


def show_list(entries: list[Entry], root: Path, lock: Lock, base_url: str | None, verify: bool, console) -> None:
    from rich.table import Table
    table = Table(title=f"files in {root}", title_justify="left")
    for c in ("file", "group", "size", "present", "state"):
        table.add_column(c, no_wrap=True)
    sizes = download.sizes(entries, root, lock, base_url, ask=not verify)
    states = [download.state(e, root, lock, rehash=verify) for e in entries]
    for e, s, st in zip(entries, sizes, states):
        table.add_row(e.key, e.group, size_text(s), "yes" if (root / e.key).exists() else "no", st)
    console.print(table)
    if verify and "mismatch" in states:
        raise UserError("some files do not match their recorded sha256 (see the table); delete them and run "
                        "fetch-data again")


def accept_terms(terms: Terms, lock: Lock, yes: bool, console) -> bool:
    """Show a source's terms and ask (unless --yes or accepted before). Returns True when newly accepted; refusing
    stops the command before anything is created."""
    if lock.accepted(terms):
        return False
    console.print("[bold]Terms of the data sources[/] (shown once, before the first download):")
    for source, text in terms.items.items():
        console.print(f"  - {escape(source)}: {escape(text)}")
    if not yes:
        answer = ask("Accept these terms? [y/N] ")
        if answer is None:
            raise UserError("the data terms above must be accepted: re-run with --yes to accept them")
        if answer.strip().lower() not in ("y", "yes"):
            raise UserError("terms not accepted; nothing was downloaded")
    return True


def ask(question: str) -> str | None:
    """The user's answer, or None when nobody can answer (stdin is not a terminal)."""
    if not sys.stdin.isatty():
        return None
    try:
        return input(question)
    except EOFError:
        return ""


class RichBar:
    """pooch's progress-bar protocol (update / reset / close / total) on a rich Progress task."""

    def __init__(self, progress, description: str):
        self.progress, self.task, self.n, self.total = progress, progress.add_task(description, total=None), 0, None

    def update(self, k: int):
        self.n += k
        self.progress.update(self.task, completed=self.n, total=self.total)

    def reset(self):
        self.n = 0

    def close(self):
        self.progress.update(self.task, completed=self.n, total=self.n)


def next_step(root: Path, entries: list[Entry]) -> str | None:
    """The command that uses what was fetched, for a subject that was fetched (3, the papers' subject, if it was)."""
    def pick(group):
        subjects = sorted({e.subject for e in entries if e.group == group and e.subject is not None})
        return (3 if 3 in subjects else subjects[0]) if subjects else None
    if (s := pick(nsd_fetch.GROUP)) is not None:
        return f"brainrecon convert-nsd --subject {s} --data-dir {root}"
    if (s := pick(god_fetch.GROUP)) is not None:
        return f"brainrecon convert-god --subject {s} --images PHOTOS --data-dir {root}"
    if (s := pick("fmri")) is not None:
        rgbd = layout.rgbd_file(root).exists() and layout.release_vgg_file(root, "vgg19", "rgbd").exists()
        return f"brainrecon train-encoder --data-dir {root} --modality {'rgbd' if rgbd else 'rgb'} --subject {s}"
    return None


def run(root: Path, only: list[str], subjects: str | None, base_url: str | None, registry: Path | None, list_: bool,
        verify: bool, dry_run: bool, yes: bool, console, sessions: str | None = None) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
    root = Path(root)
    parts = select(only, subjects, sessions)
    entries = download.apply_registry([e for p in parts for e in p.entries], registry)
    lock = Lock(root)                       # reads the lock if there is one; creates nothing
    if list_ or verify:
        show_list(entries, root, lock, base_url, verify, console)
        return
    show_plan(entries, root, lock, base_url, console, dry_run)
    if dry_run:
        return
    todo = {e.key for e in entries if not (root / e.key).exists()}
    accepted = [p.terms for p in parts if any(e.key in todo for e in p.entries)
                and accept_terms(p.terms, lock, yes, console)]
    # every option checked and the terms accepted: only now is the data folder made (no new folder on a refusal)
    root.mkdir(parents=True, exist_ok=True)
    # one writer per data folder: a second fetch-data (or convert-god) stops at once, naming this one
    with hold_data(root):
        lock = Lock(root)  # read under the lock: what another fetch recorded before us is kept
        for terms in accepted:
            lock.accept(terms)
        retries = int(os.environ.get("BRAINRECON_FETCH_RETRIES", 3))
        done = []
        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                      console=console, transient=True) as progress:
            for e in entries:
                bar = None if (root / e.key).exists() else RichBar(progress, e.name)
                done.append((e, download.fetch_one(e, root, base_url, lock, bar, retries)))
                unpack(e, root)
    for e, what in done:
        console.print(f"{what:10s} {escape(e.key)}", highlight=False)
    step = next_step(root, entries)
    console.print(f"data folder {escape(str(root))} now holds {sum(1 for _ in root.iterdir())} entries."
                  + (f" Next: `{escape(step)}`" if step else ""), highlight=False, soft_wrap=True)
