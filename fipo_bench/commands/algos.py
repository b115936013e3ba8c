"""`fipo-bench algos [NAME]`: the registered algorithms with their papers, each hyperparameter with its
default and meaning."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fipo_bench.commands.errors import fail


def algos(
    name: Annotated[str | None, typer.Argument(help="Show only this algorithm (e.g. fipo).")] = None,
) -> None:
    """List registered algorithms and their hyperparameters (defaults = published recipes)."""
    from fipo_bench.registry import algorithm_class, list_algorithms  # imports torch

    try:
        names = [algorithm_class(name).name] if name is not None else list_algorithms()
    except KeyError as error:
        fail(error.args[0])
    console = Console()
    if name is None:
        console.print(overview_table({n: algorithm_class(n) for n in names}))
    for algorithm_name in names:
        console.print(hyperparameter_table(algorithm_name, algorithm_class(algorithm_name)))


def overview_table(classes: dict[str, type]) -> Table:
    """One row per algorithm: its name, what it is (the class summary), whether it trains a value model
    (a critic), and its paper."""
    table = Table(title="[bold]registered algorithms[/bold]", title_justify="left")
    table.add_column("algorithm", style="cyan", no_wrap=True)
    table.add_column("what")
    table.add_column("critic", no_wrap=True)
    table.add_column("paper", style="dim")
    for name, cls in classes.items():
        critic = "yes" if getattr(cls, "needs_critic", False) else "-"
        table.add_row(name, _summary(cls), critic, getattr(cls, "paper", "") or "-")
    return table


def _summary(cls: type) -> str:
    return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""


def hyperparameter_table(name: str, cls: type) -> Table:
    """Every init field of the dataclass `cls`: name, default, meaning and source (see
    algorithms.base.hyperparameter)."""
    import dataclasses

    paper = getattr(cls, "paper", "")
    title = f"[bold]{name}[/bold]  {_summary(cls)}" + (f"  [dim]({paper})[/dim]" if paper else "")
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("hyperparameter", style="cyan", no_wrap=True)
    table.add_column("default", style="green", no_wrap=True)
    table.add_column("meaning")
    table.add_column("source", style="dim")
    for field in dataclasses.fields(cls):
        if field.init:
            default = field.default_factory() if field.default is dataclasses.MISSING else field.default
            meaning, source = field.metadata.get("meaning", ""), field.metadata.get("source", "")
            table.add_row(field.name, _format_default(default), meaning, source)
    return table


def _format_default(value: Any) -> str:
    if value is None:
        return "None (off)"
    return json.dumps(value) if isinstance(value, (bool, str)) else repr(value)

