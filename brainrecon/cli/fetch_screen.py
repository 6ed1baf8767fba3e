"""fetch-data's screen: which sources --only names, the plan before anything is fetched (brainrecon.cli.fetch_plan),
--list and --verify, the terms prompts, the progress bars and the "Next:" line. The downloading itself is
brainrecon.data.download; each source declares its groups, files, terms and next command in its own module
(brainrecon.sources.fetch_sources lists them), and this screen names none."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape

from brainrecon.cli.common import leaves_no_new_folder
from brainrecon.cli.fetch_plan import join_and, refuse_unreached, show_plan, size_text
from brainrecon.data import download, remote
from brainrecon.data.archive import unpack
from brainrecon.data.download import Entry, Lock, Source, Terms
from brainrecon.errors import UserError
from brainrecon.locks import hold_data
from brainrecon.sources.fetch_sources import SOURCES

GROUPS = tuple(g for s in SOURCES for g in s.groups)


@dataclass
class Part:
    """The files taken from one source, under its terms."""
    source: Source
    entries: list[Entry]

    @property
    def terms(self) -> Terms:
        return self.source.terms


def parse_subjects(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise UserError(f"--subjects {text!r} must be numbers separated by commas, e.g. 1,3") from None


def _answers(source: Source, only: list[str]) -> list[str]:
    """The --only names a source answers to: its groups, `all` if it is in all, its files by name."""
    names = {e.name for e in source.files()}
    return [o for o in only if o in source.groups or o in names or (o == "all" and source.in_all)]


def select(only: list[str], subjects_text: str | None, sessions: str | None) -> list[Part]:
    """--only (groups, `all`, file names), --subjects and --sessions -> the files of each source, every value checked
    (nothing is created here)."""
    answers = {s: _answers(s, only) for s in SOURCES}
    for o in only:
        if o != "all" and not any(o in names for names in answers.values()):
            raise UserError(f"--only {o!r} is neither a group ({', '.join(GROUPS)}, all) nor the name of a file of "
                            "one of them")
    subjects = parse_subjects(subjects_text)
    per_subject = {s: bool(set(names) & {*s.subject_groups, *(("all",) if s.in_all else ())})
                   for s, names in answers.items()}
    if subjects_text is not None and not any(per_subject.values()):
        also = " (and all)" if any(s.in_all and s.subject_groups for s in SOURCES) else ""
        raise UserError(f"--subjects applies to the {join_and([g for s in SOURCES for g in s.subject_groups])} groups"
                        f"{also}; --only {' '.join(only)} takes none of them")
    if sessions and not any(s.sessions and answers[s] for s in SOURCES):
        takers = [f"--only {g}" for s in SOURCES if s.sessions for g in s.groups]
        raise UserError(f"--sessions applies to {' or '.join(takers)}")
    parts = []
    for s, names in answers.items():
        if not names:
            continue
        if per_subject[s] and subjects is None and s.needs_subjects:
            raise UserError(s.needs_subjects)
        bad = [n for n in (subjects or []) if n not in s.subjects] if per_subject[s] else []
        if bad:
            raise UserError(f"--subjects {subjects_text}: {s.dataset} has subjects {min(s.subjects)}-"
                            f"{max(s.subjects)}, not {bad[0]}")
        parts.append(Part(s, s.take(names, subjects if per_subject[s] else None, sessions if s.sessions else None)))
    return [p for p in parts if p.entries]


def check_data_folder(entries: list[Entry], root: Path, lock: Lock, only: list[str]) -> None:
    """--verify on a folder that is not a data folder of the files chosen (a typo, the wrong --only) says so."""
    if not root.is_dir():
        raise UserError(f"--verify: {root} does not exist, so there is nothing to verify; check --data-dir (or "
                        "BRAINRECON_DATA)")
    if not any((root / e.key).exists() for e in entries):
        others = [k for k in lock.data["files"] if (root / k).exists()]
        hint = f"; its {download.LOCK} records {len(others)} other file(s) (e.g. {others[0]}): choose them with " \
            "--only" if others else "; check --data-dir (or BRAINRECON_DATA) and --only"
        raise UserError(f"--verify: {root} holds none of the {len(entries)} file(s) of --only {' '.join(only)}, so "
                        f"it is not a data folder of them{hint}")


LIST_COLUMNS = ("file", "group", "size", "present", "state")
LIST_DROP = ("present", "group")   # left out, in this order, when the console is too narrow (state says `missing`)
FILE_MIN = 24                       # the file column's width below which a column is left out


def list_table(rows: list[tuple[str, ...]], title: str, width: int):
    """The --list table at `width` columns: the file names wrap; every other cell is shown whole, and columns are
    left out (present, then group) rather than cut."""
    from rich.table import Table
    widths = {c: max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(LIST_COLUMNS)}
    keep = list(LIST_COLUMNS)
    for column in LIST_DROP:
        fixed = sum(widths[c] for c in keep if c != "file") + 3 * len(keep) + 1    # borders and padding
        if fixed + min(widths["file"], FILE_MIN) <= width:
            break
        keep.remove(column)
    dropped = [c for c in LIST_COLUMNS if c not in keep]
    table = Table(title=title, title_justify="left", caption_justify="left",
                  caption=f"left out at {width} columns: {', '.join(dropped)}" if dropped else None)
    for c in keep:
        if c == "file":
            table.add_column(c, overflow="fold")
        else:
            table.add_column(c, no_wrap=True, min_width=widths[c])
    for r in rows:
        table.add_row(*(v for c, v in zip(LIST_COLUMNS, r) if c in keep))
    return table


def show_list(entries: list[Entry], root: Path, lock: Lock, base_url: str | None, verify: bool, console) -> None:
    sizes = remote.sizes(entries, root, lock, base_url, ask=not verify)
    states = [download.state(e, root, lock, rehash=verify) for e in entries]
    rows = [(e.key, e.group, size_text(s), "yes" if (root / e.key).exists() else "no", st)
            for e, s, st in zip(entries, sizes, states)]
    console.print(list_table(rows, f"files in {escape(str(root))}", console.width))
    hosts: dict[str, int] = {}
    for s in sizes:
        if s.unreached:
            hosts[s.unreached] = hosts.get(s.unreached, 0) + 1
    for host, n in hosts.items():
        console.print(f"could not reach {host}: no size from it for {n} file(s) (? unknown, ~ an estimate)",
                      markup=False, highlight=False)
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
    """The command that uses what was fetched (the last source's that has one), for a subject that was fetched (3,
    the papers' subject, if it was)."""
    for source in reversed(SOURCES):
        if (step := source.next_step(root, entries)) is not None:
            return step
    return None


def run(root: Path, only: list[str], subjects: str | None, base_url: str | None, registry: Path | None, list_: bool,
        verify: bool, dry_run: bool, yes: bool, console, sessions: str | None = None) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
    root = Path(root)
    parts = select(only, subjects, sessions)
    entries = download.apply_registry([e for p in parts for e in p.entries], registry)
    lock = Lock(root)                       # reads the lock if there is one; creates nothing
    if verify:
        check_data_folder(entries, root, lock, only)
    if list_ or verify:
        show_list(entries, root, lock, base_url, verify, console)
        return
    sizes = show_plan(entries, root, lock, base_url, console, dry_run)
    if dry_run:
        refuse_unreached(sizes, base_url)
        return
    todo = {e.key for e in entries if not (root / e.key).exists()}
    accepted = [p.terms for p in parts if any(e.key in todo for e in p.entries)
                and accept_terms(p.terms, lock, yes, console)]
    # every option checked and the terms accepted: only now is the data folder made (no new folder on a refusal),
    # and a download that fails removes it again (in a folder that was there, only the empty sub-folders it made)
    with leaves_no_new_folder(root):                # the lock refused: no empty folder left
        made_here = download.make_folder(root)
        # one writer per data folder: a second fetch-data (or convert-god) stops at once, naming this one
        with hold_data(root), download.leaves_no_trace(root, entries, made_here):
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
