"""fetch-data's plan, shown before anything is fetched: each file's size (asked of the server where no one declared
it), the total beside the free space at the destination, and the servers that could not be reached."""

from __future__ import annotations

from pathlib import Path

from brainrecon.data import remote
from brainrecon.data.download import Entry, Lock
from brainrecon.data.remote import Size
from brainrecon.errors import UserError


def join_and(words: list[str]) -> str:
    return ", ".join(words[:-1]) + f" and {words[-1]}" if len(words) > 1 else "".join(words)


def human(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def size_text(s: Size) -> str:
    if s.bytes is None:
        return "?"
    return ("~" if s.how == "approx" else "") + human(s.bytes)


def print_line(console, text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def show_plan(entries: list[Entry], root: Path, lock: Lock, base_url: str | None, console, dry_run: bool
              ) -> list[Size]:
    """Each file to fetch with its size (asked of the server where not declared), the total beside the free space
    at the destination, and the servers that could not be reached. Returns the sizes of the files to fetch."""
    todo = [e for e in entries if not (root / e.key).exists()]
    sizes = remote.sizes(todo, root, lock, base_url)
    made = "" if root.is_dir() else " (a new folder, made when the download starts)"
    print_line(console, f"{'dry run: ' if dry_run else ''}{len(todo)} file(s) to download into {root}{made}; "
                        f"{len(entries) - len(todo)} already there")
    width = max((len(e.key) for e in todo), default=0)
    for e, s in zip(todo, sizes):
        where = f"  <- {e.source_url(base_url)}" if dry_run else ""
        print_line(console, f"  {e.key:<{width}}  {size_text(s):>10}{where}")
    if dry_run:
        for e in entries:
            if e not in todo:
                print_line(console, f"  {e.key}  present (verified against the lock when fetched)")
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
    print_line(console, f"total: {amount}" + (f" ({'; '.join(notes)})" if notes else "") +
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
    print_line(console, f"warning: not enough free space: this needs {bound}{human(need)}{unpacked} and "
                        f"{remote.existing_parent(root)} has {human(free)} free, {human(need - free)} short; free "
                        "space there or choose another --data-dir")


def _say_unreached(todo: list[Entry], sizes: list[Size], console) -> None:
    """Each server that could not be reached, and the files it was asked about (all of them: just the count)."""
    asked = [s for s in sizes if s.how in ("server", "approx", "unknown")]
    hosts: dict[str, list[str]] = {}
    for e, s in zip(todo, sizes):
        if s.unreached:
            hosts.setdefault(s.unreached, []).append(e.key)
    for host, keys in hosts.items():
        which = f"the {len(keys)} file(s) asked about" if len(keys) == len(asked) else ", ".join(keys)
        print_line(console, f"could not reach {host}: no size from it for {which}")


def refuse_unreached(sizes: list[Size], base_url: str | None) -> None:
    """A dry run that could size nothing because no server answered is a failure, not a plan."""
    asked = [s for s in sizes if s.how in ("server", "approx", "unknown")]
    if asked and all(s.unreached for s in asked):
        hosts = sorted({s.unreached for s in asked})
        raise UserError(f"could not reach {join_and(hosts)}, so no size above comes from a server; check the network"
                        f"{' and --base-url ' + base_url if base_url else ''}, then run the dry run again")
