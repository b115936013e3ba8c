"""`fipo-bench report RESULTS_DIR`: write the comparison report and print its tables."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from fipo_bench.commands.errors import fail


def report(
    results_dir: Path = typer.Argument(..., help="A results/<run> directory (holds <algo>-seed<k>/ runs)."),
    baseline: str = typer.Option("dapo", help="Algorithm the others are compared against (by seed)."),
    out: Path | None = typer.Option(None, help="Output directory (default: RESULTS_DIR/report)."),
    min_effect: float = typer.Option(
        5.0, "--min-effect", help="Smallest avg@k difference worth detecting, in percentage points: the "
        "report says how many seeds detect it."),
) -> None:
    """Write report.md, report.html, summary.csv and PNG plots comparing algorithms across seeds."""
    from fipo_bench.report import all_tables, build_report, write_report_files

    console = Console()
    try:
        rep = build_report(results_dir, baseline, min_effect / 100.0)
        out_dir = write_report_files(rep, out if out is not None else results_dir / "report")
    except (ValueError, OSError) as e:
        fail(e)
    for table in all_tables(rep):
        rich_table = RichTable(title=table.title, caption=table.caption, caption_justify="left")
        for i, column in enumerate(table.columns):
            rich_table.add_column(column, justify="left" if i == 0 else "right")
        for row in table.rows:
            rich_table.add_row(*row)
        console.print(rich_table)
    for note in rep.notes:
        console.print(Text.assemble(("note:", "yellow"), " ", note))
    console.print(f"report written to {out_dir / 'report.html'}", highlight=False)
