"""Unpacking a fetched tarball: refused whole when any member would land outside its folder, unpacked once."""

from __future__ import annotations

import tarfile
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from brainrecon.data.download import Entry
from brainrecon.errors import UserError


def safe_members(archive: Path, target: Path) -> list[tarfile.TarInfo]:
    """All members, after refusing the archive if any would land outside `target` (absolute, `..`, escaping link)."""
    target = target.resolve()
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    for m in members:
        p = PurePosixPath(m.name)
        dest = (target / m.name).resolve()
        bad = p.is_absolute() or ".." in p.parts or not str(dest).startswith(str(target))
        if m.issym() or m.islnk():
            link = PurePosixPath(m.linkname)
            link_dest = (target / (PurePosixPath(m.name).parent / link if m.issym() else link)).resolve()
            bad = bad or link.is_absolute() or not str(link_dest).startswith(str(target))
        if bad:
            raise UserError(f"{archive}: member {m.name!r} would be written outside {target}; the archive was refused "
                            "and nothing was extracted; delete it and fetch it again from a trusted source")
        if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
            raise UserError(f"{archive}: member {m.name!r} is a special file; the archive was refused")
    return members


def extract(archive: Path, target: Path) -> bool:
    """Unpack once (a marker records success); refuse unsafe archives entirely. Returns True if it extracted."""
    marker = target / f".extracted-{archive.name}"
    if marker.exists():
        return False
    target.mkdir(parents=True, exist_ok=True)
    members = safe_members(archive, target)
    with tarfile.open(archive) as tar:
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(target, members=members, **kwargs)
    marker.write_text(datetime.now(timezone.utc).isoformat())
    return True


def unpack(e: Entry, root: Path) -> bool:
    """Unpack an archive entry into its declared folder (once). Returns True if it extracted."""
    if e.unpack_to and (root / e.key).exists():
        return extract(root / e.key, root / e.unpack_to)
    return False
