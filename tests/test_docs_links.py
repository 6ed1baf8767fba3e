"""The documents a reader opens first hold together: every link and image into the repository in README.md,
CONTRIBUTING.md and docs/*.md (relative, or absolute to the repository on GitHub) names a file that exists (and a
heading that exists, for a `#anchor`); README.md, the package's long description on PyPI, links only absolutely; and
CITATION.cff names this version."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_TARGET = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.I)
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?", re.M)          # [label]: target
REPOSITORY = ("https://github.com/brainrecon/brainrecon/blob/main/", "https://github.com/brainrecon/brainrecon/raw/main/",
              "https://raw.githubusercontent.com/brainrecon/brainrecon/main/")
"""Absolute addresses of the checkout's own files (pyproject's [project.urls]), checked against the checkout."""


def _unfenced(text: str) -> str:
    return re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.S | re.M)


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code (a `[x](y)` there is not a link)."""
    return re.sub(r"`[^`\n]*`", "", _unfenced(text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (not - or _), spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", _unfenced(path.read_text()), flags=re.M)
    seen: dict[str, int] = {}
    out = set()
    for h in headings:
        slug = _slug(h)
        out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return out


def _targets(path: Path) -> list[str]:
    prose = _prose(path.read_text())
    return [*LINK.findall(prose), *HTML_TARGET.findall(prose), *REFERENCE.findall(prose)]


def _broken(doc: Path, root: Path = ROOT) -> list[str]:
    """The links and images of a document that point into the repository but at no file or heading there."""
    broken = []
    for target in _targets(doc):
        file_part, _, anchor = target.partition("#")
        absolute = next((p for p in REPOSITORY if target.startswith(p)), None)
        if absolute:
            resolved = (root / file_part[len(absolute):]).resolve()
        elif re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):   # http:, https:, mailto: ... elsewhere
            continue
        else:
            resolved = (doc.parent / file_part).resolve() if file_part else doc
        if not resolved.exists():
            broken.append(f"{target} (no file {resolved})")
        elif not resolved.is_relative_to(root):
            broken.append(f"{target} (outside the repository)")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target} (no heading #{anchor} in {resolved.relative_to(root)})")
    return broken


def test_the_documents_are_found():
    assert len(DOCUMENTS) >= 5 and all(p.is_file() for p in DOCUMENTS)
    assert any(_targets(p) for p in DOCUMENTS)


@pytest.mark.parametrize("doc", DOCUMENTS, ids=[str(p.relative_to(ROOT)) for p in DOCUMENTS])
def test_every_relative_link_and_image_resolves(doc):
    broken = _broken(doc)
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_check_catches_a_broken_link(tmp_path):
    """The checker itself: a missing file, a wrong anchor and a figure one folder off are caught; code is skipped."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "fig.png").write_bytes(b"")
    doc = tmp_path / "docs" / "x.md"
    doc.write_text("# A title\n![f](fig.png) [ok](../fig.png) [a](#a-title) [b](#nope) `[c](nowhere.md)`\n"
                   "```\n[d](nowhere.md)\n```\n")
    targets = _targets(doc)
    assert targets == ["fig.png", "../fig.png", "#a-title", "#nope"]
    assert not (doc.parent / "fig.png").exists() and (doc.parent / "../fig.png").resolve().exists()
    assert "a-title" in _anchors(doc) and "nope" not in _anchors(doc)


def test_the_check_maps_absolute_repository_links_to_the_checkout(tmp_path):
    """An absolute link to the repository on GitHub (blob, raw) is checked as the checkout's file, as is a reference
    definition; a link elsewhere is not followed."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Here\n")
    (tmp_path / "fig.png").write_bytes(b"")
    doc = tmp_path / "README.md"
    blob, raw = REPOSITORY[0], REPOSITORY[2]
    doc.write_text(f"[a][x] ![f]({raw}fig.png) [b]({blob}docs/a.md#here) [c](https://example.org/nope.md)\n\n"
                   f"[x]: {blob}docs/a.md#there\n[y]: {blob}docs/nope.md\n")
    assert _broken(doc, tmp_path) == [f"{blob}docs/a.md#there (no heading #there in docs/a.md)",
                                      f"{blob}docs/nope.md (no file {tmp_path / 'docs' / 'nope.md'})"]


def test_the_readme_links_absolutely_as_the_long_description():
    """README.md is pyproject's `readme`, PyPI's page for the package, where a relative link or image breaks: every
    link and image (as a Markdown renderer resolves them, reference definitions included) is absolute, images come
    from raw.githubusercontent.com, and no reference is left unresolved (it would show as bracketed text)."""
    from markdown_it import MarkdownIt
    tomllib = pytest.importorskip("tomllib")
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["readme"] == "README.md"
    env: dict = {}
    tokens = MarkdownIt("commonmark").enable("table").parse((ROOT / "README.md").read_text(), env)
    links, images, texts = [], [], []
    for child in (c for t in tokens if t.type == "inline" for c in t.children or ()):
        if child.type == "link_open":
            links.append(child.attrs["href"])
        elif child.type == "image":
            images.append(child.attrs["src"])
        elif child.type == "text":
            texts.append(child.content)
    assert links and images and env.get("references")
    assert not [u for u in links + images if not u.startswith(("https://", "http://", "mailto:"))]
    assert all(u.startswith(REPOSITORY[2]) for u in images), images
    assert not [t for t in texts if re.search(r"\[[A-Za-z][^\]]*\]", t)]
    used = {u.split("#")[0] for u in links + images}
    assert not [r["href"] for r in env["references"].values() if r["href"].split("#")[0] not in used]


def test_citation_names_this_version_and_the_papers():
    import brainrecon
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software" and cff["license"] == "MIT"
    assert str(cff["version"]) == brainrecon.__version__
    assert cff["authors"] and cff["message"]
    titles = [r["title"] for r in cff["references"]]
    assert any("Self-Supervised Depth Reconstruction" in t for t in titles)
    assert any("Large-Scale Semantic Classification" in t for t in titles)
    for data in ("Horikawa & Kamitani 2017", "Allen et al. 2022", "Ranftl et al.", "ImageNet"):
        assert data in cff["message"] and data.split(" ")[0] in (ROOT / "README.md").read_text()
