"""The tables `evaluate`, `classify` and the demo print: drawn on the terminal, or with `--format md|latex` printed as
Markdown or LaTeX and written beside the CSV (the cells come from brainrecon.evaluation.paper_tables)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table as RichTable

from brainrecon.cli.common import out_console
from brainrecon.evaluation.paper_tables import Table, depth_table, identification_table, render, write_beside

FormatOpt = typer.Option("csv", "--format", metavar="FORMAT", help="csv (the tables in their CSV files, drawn here), "
                         "md or latex: the tables printed as Markdown or LaTeX (booktabs) instead of drawn, and "
                         "written beside the CSV (.md / .tex), for a paper.")


def draw(table: Table) -> None:
    """A table on the terminal, its title above it."""
    t = RichTable(title=table.title, title_justify="left")
    for c in table.columns:
        t.add_column(c, justify="right" if c in table.right else "left", no_wrap=True)
    for row in table.rows:
        t.add_row(*row)
    out_console.print(t)


def show(tables: list[Table], fmt: str, csv_path: Path | None) -> Path | None:
    """csv: draw the tables; md / latex: print their text (plain, for copying) and write it beside `csv_path`;
    returns the file written."""
    if fmt == "csv":
        for table in tables:
            draw(table)
        return None
    out_console.print(render(tables, fmt), highlight=False, markup=False, soft_wrap=True, end="")
    return write_beside(tables, fmt, csv_path) if csv_path is not None else None


def print_tables(records: list, depth: list, fmt: str = "csv", csv_path: Path | None = None) -> Path | None:
    """evaluate's identification table (and depth errors), and a line naming each run's subject and modality."""
    runs = sorted({(r["run"], r["subject"], r["modality"]) for r in records})
    written = show([t for t in (identification_table(records), depth_table(depth)) if t is not None], fmt, csv_path)
    out_console.print("runs: " + "; ".join(f"{run} (subject {s}, {m})" for run, s, m in runs))
    return written


def print_suite(rows: list) -> None:
    """The NSD papers' table: a line per run; two-way identification in %, EffNet-B and SwAV distances (lower is
    better); unavailable metrics say why below the table."""
    if not rows:
        return
    from brainrecon.evaluation.nsd_suite import COLUMNS, LOWER_IS_BETTER, table
    t = RichTable(title="NSD metric suite (exhaustive two-way identification in %; EffNet-B and SwAV: correlation "
                        "distance)", title_justify="left")
    t.add_column("run", no_wrap=True)
    for c in COLUMNS:
        t.add_column(f"{c} {'↓' if c in LOWER_IS_BETTER else '↑'}", justify="right", no_wrap=True)
    for line in table(rows):
        t.add_row(line["run"], *(line.get(c, "") for c in COLUMNS))
    out_console.print(t)
    reasons = {r["metric"]: r["unavailable"] for r in rows if r["unavailable"]}
    for metric, reason in reasons.items():
        out_console.print(f"  {metric}: unavailable: {reason}", highlight=False)


def print_comparisons(rows: list) -> None:
    """The paired comparisons at the largest n (all of them are in comparisons.csv)."""
    if not rows:
        return
    from brainrecon.evaluation.compare import N_BOOT, N_PERM
    top = max(r["ways"] for r in rows)
    t = RichTable(title=f"paired comparisons, {top}-way: per-image difference a - b on the same images and "
                        f"distractors; paired bootstrap 95% CI ({N_BOOT} resamples), two-sided sign-flip p ({N_PERM} "
                        f"flips), seed {rows[0]['seed']}", title_justify="left")
    for c in ("a - b", "chan", "metric", "mode", "diff", "95% CI", "p", "a better", "b better"):
        t.add_column(c, no_wrap=True, justify="left" if c in ("a - b", "chan", "metric", "mode") else "right")
    for r in rows:
        if r["ways"] == top:
            t.add_row(f"{r['run_a']} - {r['run_b']}", r["channel"], r["metric"], r["mode"], f"{r['diff']:+.3f}",
                      f"{r['ci_low']:+.2f} to {r['ci_high']:+.2f}", f"{r['p_value']:.3g}", str(r["a_better"]),
                      str(r["b_better"]))
    out_console.print(t)

