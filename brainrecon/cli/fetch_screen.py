"""fetch-data's screen: which sources --only names, the plan (each file's size, the total, the destination and its
free space, the servers that could not be reached) before anything is fetched, the terms prompts, the progress bars
and the "Next:" line. The downloading itself is brainrecon.data.download; each source declares its groups, files,
terms and next command in its own module (brainrecon.sources.fetch_sources lists them), and this screen names none."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape

from brainrecon.data import download, remote
from brainrecon.data.archive import unpack
from brainrecon.data.download import Entry, Lock, Source
from brainrecon.data.remote import Size
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
    def terms(self) -> download.Terms:
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


def _and(words: list[str]) -> str:
    return ", ".join(words[:-1]) + f" and {words[-1]}" if len(words) > 1 else "".join(words)


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
        raise UserError(f"--subjects applies to the {_and([g for s in SOURCES for g in s.subject_groups])} groups"
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
        parts.append(Part(s, s.take(names, subjects, sessions if s.sessions else None)))
    return [p for p in parts if p.entries]


def human(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def size_text(s: Size) -> str:
    if s.bytes is None:
        return "?"
    return ("~" if s.how == "approx" else "") + human(s.bytes)


def _print(console, text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def show_plan(entries: list[Entry], root: Path, lock: Lock, base_url: str | None, console, dry_run: bool
              ) -> list[Size]:
    """Each file to fetch with its size (asked of the server where not declared), the total beside the free space
    at the destination, and the servers that could not be reached. Returns the sizes of the files to fetch."""
    todo = [e for e in entries if not (root / e.key).exists()]
    sizes = remote.sizes(todo, root, lock, base_url)
    made = "" if root.is_dir() else " (a new folder, made when the download starts)"
    _print(console, f"{'dry run: ' if dry_run else ''}{len(todo)} file(s) to download into {root}{made}; "
                    f"{len(entries) - len(todo)} already there")
    width = max((len(e.key) for e in todo), default=0)
    for e, s in zip(todo, sizes):
        _print(console, f"  {e.key:<{width}}  {size_text(s):>10}" + (f"  <- {e.source_url(base_url)}" if dry_run
                                                                      else ""))
    if dry_run:
        for e in entries:
            if e not in todo:
                _print(console, f"  {e.key}  present (verified against the lock when fetched)")
    if not todo:
        return sizes
    total = sum(s.bytes or 0 for s in sizes)
    silent = sum(s.bytes is None and not s.unreached for s in sizes)
    cut_off = sum(s.bytes is None and bool(s.unreached) for s in sizes)
    approx = any(s.how == "approx" for s in sizes)
    notes = [f"{silent} file(s) of unknown size: the server did not say"] if silent else []
    notes += [f"{cut_off} file(s) of unknown size: their server could not be reached"] if cut_off else []
    bound = "at least " if silent or cut_off else "about " if approx else ""
    amount = "unknown" if silent + cut_off == len(todo) else f"{bound}{human(total)}"
    notes += ["the total is a lower bound"] if bound == "at least " and amount != "unknown" else []
    notes += ["~: an estimate"] if approx else []
    free = remote.free_space(root)
    _print(console, f"total: {amount}" + (f" ({'; '.join(notes)})" if notes else "") +
                    f"; free space at the destination: {human(free)}")
    _warn_space(todo, sizes, total, bound, root, free, console)
    _say_unreached(todo, sizes, console)
    return sizes


def _warn_space(todo: list[Entry], sizes: list[Size], total: int, bound: str, root: Path, free: int, console) -> None:
    """A warning, with the shortfall, when what is known of the plan does not fit the free space (an archive is kept
    and unpacked beside itself: about as much again)."""
    archives = sum(s.bytes or 0 for e, s in zip(todo, sizes) if e.unpack_to)
    need = total + archives
    if need <= free:
        return
    unpacked = " (the downloads, and about as much again to unpack their archives)" if archives else ""
    _print(console, f"warning: not enough free space: this needs {bound}{human(need)}{unpacked} and "
                    f"{remote.existing_parent(root)} has {human(free)} free, {human(need - free)} short; free space "
                    "there or choose another --data-dir")


def _say_unreached(todo: list[Entry], sizes: list[Size], console) -> None:
    """Each server that could not be reached, and the files it was asked about (all of them: just the count)."""
    asked = [s for s in sizes if s.how in ("server", "approx", "unknown")]
    hosts: dict[str, list[str]] = {}
    for e, s in zip(todo, sizes):
        if s.unreached:
            hosts.setdefault(s.unreached, []).append(e.key)
    for host, keys in hosts.items():
        which = f"the {len(keys)} file(s) asked about" if len(keys) == len(asked) else ", ".join(keys)
        _print(console, f"could not reach {host}: no size from it for {which}")


def refuse_unreached(sizes: list[Size], base_url: str | None) -> None:
    """A dry run that could size nothing because no server answered is a failure, not a plan."""
    asked = [s for s in sizes if s.how in ("server", "approx", "unknown")]
    if asked and all(s.unreached for s in asked):
        hosts = sorted({s.unreached for s in asked})
        raise UserError(f"could not reach {_and(hosts)}, so no size above comes from a server; check the network"
                        f"{' and --base-url ' + base_url if base_url else ''}, then run the dry run again")


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
        table.add_column(c, overflow="fold") if c == "file" else table.add_column(c, no_wrap=True,
                                                                                  min_width=widths[c])
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
    with download.leaves_no_trace(root, entries):
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
