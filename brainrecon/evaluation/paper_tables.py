"""The result tables of `evaluate` and `classify` as cells, once: the CLI draws them on the terminal, and `--format md`
or `--format latex` writes them as Markdown or LaTeX (booktabs) for a paper, beside the CSV that holds every number.

Torch-free: the text of a table needs only the records the evaluation returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from brainrecon.atomic import write_text_atomic

FORMATS = ("csv", "md", "latex")
"""`--format`: csv (the tables' CSV files only, the default), md or latex (also this text, beside the CSV)."""
SUFFIX = {"md": ".md", "latex": ".tex"}


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    right: frozenset[str] = frozenset()
    """Columns of numbers, aligned right."""


def identification_table(records: list) -> Table:
    """evaluate's n-way identification: one row per run x channel x metric x ways x mode."""
    distractors = sorted({r["distractors"] for r in records})
    return Table(
        title=f"n-way identification; distractors: {', '.join(distractors)}; mean and 95% bootstrap CI over images",
        columns=("run", "chan", "metric", "ways", "mode", "mean", "95% CI", "chance"),
        rows=tuple((r["run"], r["channel"], r["metric"], str(r["ways"]), r["mode"], f"{r['mean']:.3f}",
                    f"{r['ci_low']:.2f}-{r['ci_high']:.2f}", f"{r['chance']:.2f}") for r in records),
        right=frozenset({"ways", "mean", "95% CI", "chance"}))


def depth_table(depth: list) -> Table | None:
    """evaluate's depth errors (None when no run decoded depth)."""
    if not depth:
        return None
    return Table(title="depth errors after per-image median scaling (relative inverse depth)",
                 columns=("run", "metric", "mean", "95% CI"),
                 rows=tuple((r["run"], r["metric"], f"{r['mean']:.4f}", f"{r['ci_low']:.4f}-{r['ci_high']:.4f}")
                            for r in depth),
                 right=frozenset({"mean", "95% CI"}))


def classification_table(rows: list, features: str, trials: int) -> Table:
    """classify's table: one row per run x n x top-k."""
    from brainrecon.evaluation.classify_runs import seen_in_training
    return Table(
        title=f"semantic classification ({features}); mean over images of each image's accuracy over {trials} "
              "trials, 95% bootstrap CI",
        columns=("run", "n", "top", "mean", "95% CI", "chance", "images", "px", "test classes in training"),
        rows=tuple((r["run"], str(r["ways"]), str(r["top"]), f"{r['mean']:.3f}",
                    f"{r['ci_low']:.3f}-{r['ci_high']:.3f}", f"{r['chance']:.3f}", str(r["images"]), str(r["size"]),
                    seen_in_training(r)) for r in rows),
        right=frozenset({"n", "top", "mean", "95% CI", "chance", "images", "px", "test classes in training"}))


def markdown(tables: list[Table]) -> str:
    """GitHub-flavoured Markdown: each table under its title in bold, numbers aligned right."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")
    parts = []
    for t in tables:
        lines = [f"**{t.title}**", "", "| " + " | ".join(cell(c) for c in t.columns) + " |",
                 "|" + "|".join("---:" if c in t.right else ":---" for c in t.columns) + "|"]
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in t.rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in text)


def latex(tables: list[Table]) -> str:
    """One `table` environment per table, booktabs rules (\\usepackage{booktabs}), the title as its caption."""
    parts = []
    for t in tables:
        spec = "".join("r" if c in t.right else "l" for c in t.columns)
        body = [" & ".join(latex_escape(v) for v in row) + r" \\" for row in t.rows]
        parts.append("\n".join([
            r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(t.title)}}}",
            rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
            " & ".join(latex_escape(c) for c in t.columns) + r" \\", r"\midrule", *body, r"\bottomrule",
            r"\end{tabular}", r"\end{table}"]))
    return "\n\n".join(parts) + "\n"


def render(tables: list[Table], fmt: str) -> str:
    """The tables as `fmt` text (md or latex)."""
    return {"md": markdown, "latex": latex}[fmt](tables)


def write_beside(tables: list[Table], fmt: str, csv_path: Path) -> Path:
    """Write the tables as `fmt` text beside the CSV (identification.csv -> identification.md / .tex)."""
    path = Path(csv_path).with_suffix(SUFFIX[fmt])
    write_text_atomic(path, render(tables, fmt))
    return path
