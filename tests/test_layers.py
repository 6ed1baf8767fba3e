"""The import rule: every import in brainrecon/ (module level and inside functions) points to its own layer or below,
and no modules import each other in a circle. The layer order is written here and in CONTRIBUTING.md ("Layer order").

Read from the source with `ast` (nothing is imported), so a violation anywhere is reported, all at once, naming the
file, the line and the two layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "brainrecon"
BENCHMARKS = PACKAGE.parent / "benchmarks"

# Top to bottom. A module may import from its own layer or below. A name is a module or a package (and everything in
# it); the longest name that matches a module places it. `brainrecon` names only the package's front door
# (brainrecon/__init__.py: __version__ and the lazy load_decoder / load_encoder / load_config).
LAYERS = [
    ("L9", ["brainrecon.__main__", "brainrecon.cli"]),
    ("L8", ["brainrecon.demo"]),
    ("L7", ["brainrecon.evaluation"]),
    ("L6", ["brainrecon", "brainrecon.api"]),
    ("L5", ["brainrecon.reconstruct"]),
    ("L4", ["brainrecon.train", "brainrecon.depth"]),
    ("L3", ["brainrecon.models", "brainrecon.losses", "brainrecon.simulation", "brainrecon.sources", "brainrecon.viz"]),
    ("L2", ["brainrecon.data"]),
    ("L1", ["brainrecon.config",
            "brainrecon.metric_specs", "brainrecon.correlation", "brainrecon.weights",
            "brainrecon.runtime", "brainrecon.locks", "brainrecon.atomic", "brainrecon.errors", "brainrecon.version"]),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p): p for p in sorted(package.rglob("*.py"))}


def layer_of(name: str) -> int | None:
    """Index in LAYERS (0 = top), by the longest matching name; None if the layer order does not place it."""
    best, index = "", None
    for i, (_, names) in enumerate(LAYERS):
        for n in names:
            inside = name.startswith(n + ".") and n != "brainrecon"   # the front door places only itself
            if (name == n or inside) and len(n) > len(best):
                best, index = n, i
    return index


def resolve(target: str, known: dict[str, Path]) -> str:
    """The module an import names: the deepest existing module along the dotted name."""
    while target not in known and "." in target:
        target = target.rsplit(".", 1)[0]
    return target


def imports(name: str, path: Path, known: dict[str, Path], roots: tuple[str, ...] = ("brainrecon",)
            ) -> list[tuple[str, int, bool]]:
    """(imported brainrecon module, line, at module level) for every import statement in the file."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    local = set()                                   # import nodes inside a function body
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            local.update(id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:                          # relative: from the module's own package upwards
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            # `from pkg import sub` imports the module pkg.sub when there is one, else a name of pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            if any(target == r or target.startswith(r + ".") for r in roots):
                found.append((resolve(target, known), node.lineno, id(node) not in local))
    return found


def graph() -> tuple[dict[str, Path], dict[str, list[tuple[str, int, bool]]]]:
    known = modules()
    return known, {name: imports(name, path, known) for name, path in known.items()}


def layer_violations(known, edges) -> list[str]:
    out = []
    for name in sorted(known):
        here = layer_of(name)
        if here is None:
            out.append(f"{known[name].relative_to(PACKAGE.parent)}: {name} has no place in the layer order")
            continue
        for target, line, top in sorted(set(edges[name]), key=lambda e: (e[1], e[0])):
            there = layer_of(target)
            if there is not None and there < here:
                where = "module level" if top else "inside a function"
                out.append(f"{known[name].relative_to(PACKAGE.parent)}:{line}: {name} ({LAYERS[here][0]}) imports "
                           f"{target} ({LAYERS[there][0]}), a layer above it ({where})")
    return out


def cycles(edges, module_level_only: bool) -> list[list[str]]:
    """The import circles: each set of two or more modules that reach each other (a strongly connected component)."""
    succ = {n: sorted({t for t, _, top in es if t != n and t in edges and (top or not module_level_only)})
            for n, es in edges.items()}
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):                                   # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))
    for v in sorted(succ):
        if v not in index:
            visit(v)
    return found


def test_the_layer_order_names_real_modules():
    known = modules()
    stale = [n for _, names in LAYERS for n in names if n not in known]
    assert not stale, f"LAYERS names modules that do not exist: {stale}"


def test_no_import_runs_against_the_layer_order():
    known, edges = graph()
    problems = layer_violations(known, edges)
    assert not problems, f"{len(problems)} import(s) against the layer order:\n" + "\n".join(problems)


def test_no_import_circles():
    """No circle among module-level imports, nor one that function-level imports close (hiding a circle inside a
    function still ties the two modules together)."""
    _, edges = graph()
    circles = cycles(edges, module_level_only=False)
    assert not circles, f"{len(circles)} import circle(s):\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_benchmarks_sit_above_the_package_without_circles():
    """benchmarks/ may import brainrecon (and each other, without a circle); brainrecon never imports benchmarks."""
    known = {**modules(), **modules(BENCHMARKS)}
    roots = ("brainrecon", "benchmarks")
    edges = {name: imports(name, path, known, roots) for name, path in known.items()}
    circles = cycles(edges, module_level_only=False)
    assert not circles, f"{len(circles)} import circle(s):\n" + "\n".join(" <-> ".join(c) for c in circles)
    upward = [f"{known[n].relative_to(PACKAGE.parent)}:{line} imports {t}" for n in known if n.startswith("brainrecon")
              for t, line, _ in edges[n] if t.startswith("benchmarks")]
    assert not upward, "brainrecon imports benchmarks:\n" + "\n".join(upward)


def test_the_checker_sees_what_it_must(tmp_path):
    """The walker finds function-level and relative imports and a circle; the order flags an upward import."""
    source = ("import os\nfrom brainrecon.train import checkpoint\nfrom . import atomic\n"
              "def f():\n    from brainrecon.cli import app\n")
    path = tmp_path / "x.py"
    path.write_text(source)
    known = {**modules(), "brainrecon.x": path}
    found = imports("brainrecon.x", path, known)
    assert ("brainrecon.train.checkpoint", 2, True) in found and ("brainrecon.atomic", 3, True) in found
    assert ("brainrecon.cli", 5, False) in found
    edges = {"brainrecon.reconstruct": [("brainrecon.api", 7, False)], "brainrecon.api": [("brainrecon.reconstruct",
                                                                                           3, True)]}
    assert cycles(edges, module_level_only=False) == [["brainrecon.api", "brainrecon.reconstruct"]]
    assert cycles(edges, module_level_only=True) == []
    problems = layer_violations({"brainrecon.reconstruct": PACKAGE / "reconstruct.py"}, edges)
    assert len(problems) == 1 and "a layer above it (inside a function)" in problems[0]
