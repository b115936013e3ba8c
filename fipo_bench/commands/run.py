"""`fipo-bench run`: train every algorithm x seed under identical conditions and compare them.

Module-level imports stay light (typer, rich, stdlib); torch and the trainer load inside `run`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from fipo_bench.commands.errors import fail

console = Console(stderr=True)


class RichReporter:
    """Progress bars for the warm-up, each run's steps and evaluations (fipo_bench.runner.Reporter)."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.warmup_task = None
        self.run_task = None
        self.eval_task = None
        self.results: list = []

    def warmup_progress(self, done: int, total: int, metrics: dict) -> None:
        if self.warmup_task is None:
            self.warmup_task = self.progress.add_task("SFT warm-up", total=total)
        loss = metrics.get("loss")
        suffix = f" loss {loss:.3f}" if isinstance(loss, float) else ""
        self.progress.update(self.warmup_task, completed=done, description=f"SFT warm-up{suffix}")

    def phase(self, text: str) -> None:
        self.progress.console.log(text)

    def start_run(self, name: str, total: int, done: int) -> None:
        if self.run_task is not None:
            self.progress.remove_task(self.run_task)
        self.run_name = name
        self.run_task = self.progress.add_task(name, total=total, completed=done)

    def advance_run(self, step: int, metrics: dict) -> None:
        desc = (f"{self.run_name}  acc {metrics['accuracy']:.2f}  len {metrics['response_length_mean']:.1f}"
                f"  {metrics['step_time_s']:.2f}s/step")
        self.progress.update(self.run_task, completed=step, description=desc)

    def start_eval(self, dataset: str, step: int) -> None:
        self.eval_task = self.progress.add_task(f"  eval {dataset} @ step {step}", total=None)

    def end_eval(self) -> None:
        if self.eval_task is not None:
            self.progress.remove_task(self.eval_task)
            self.eval_task = None

    def message(self, text: str) -> None:
        self.progress.console.log(text)


def summary_table(results) -> Table:
    table = Table(title="fipo-bench run: summary")
    columns = ("run", "status", "steps", "eval", "acc start", "acc end", "len start", "len end", "time")
    for col in columns:
        text = col in ("run", "status", "eval")
        table.add_column(col, justify="left" if text else "right", no_wrap=text)
    for r in results:
        by_dataset: dict[str, list[dict]] = {}
        for row in r.evals:
            by_dataset.setdefault(row["dataset"], []).append(row)
        if not by_dataset:
            by_dataset = {"-": []}
        for dataset, rows in by_dataset.items():
            rows = sorted(rows, key=lambda row: row["step"])
            first, last = (rows[0], rows[-1]) if rows else ({}, {})

            def fmt(row, key, spec):
                value = row.get(key)
                return format(value, spec) if isinstance(value, (int, float)) else "-"

            colour = {"completed": "green", "failed": "red"}.get(r.status, "yellow")
            status = f"[{colour}]{r.status}[/{colour}]"
            table.add_row(f"{r.algo}-seed{r.seed}", status, str(r.step), dataset,
                          fmt(first, "eval_accuracy", ".3f"), fmt(last, "eval_accuracy", ".3f"),
                          fmt(first, "eval_response_length", ".1f"), fmt(last, "eval_response_length", ".1f"),
                          f"{r.wall_time_s:.0f}s" if r.wall_time_s else "-")
    return table


def run(
    algos: str = typer.Option(None, "--algos", help="Comma-separated names (default grpo,dapo,fipo)."),
    preset: str = typer.Option("tiny", "--preset", help="Named config (fipo_bench.presets)."),
    seeds: str = typer.Option(None, "--seeds", help="Comma-separated seeds, e.g. 0,1,2."),
    backend: str = typer.Option(None, "--backend", help="local | openrlhf"),
    model: str = typer.Option(None, "--model", help="HF model dir, hub id or GGUF file (default: "
                              "built-in tiny model). "
                              "Needs --dataset; evaluated on aime24 unless --set eval_datasets=..."),
    dataset: str = typer.Option(None, "--dataset", help="Training dataset (with --model): a name or a file."),
    data_dir: str = typer.Option(None, "--data-dir", help="Offline copies of named datasets (default "
                                 "$FIPO_BENCH_DATA, else the Hub)."),
    steps: int = typer.Option(None, "--steps", help="Training steps (overrides the preset)."),
    run_name: str = typer.Option(None, "--run-name", help="Results subdirectory (default: from the config)."),
    output_dir: str = typer.Option(None, "--output-dir", help="Parent of run directories (default results)."),
    device: str = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N"),
    config_file: Path = typer.Option(None, "--config", help="JSON file of RunConfig fields."),
    sets: list[str] = typer.Option([], "--set", help="field=value, tiny_recipe.key=value, algo.field=value."),
    ray_address: str = typer.Option(None, "--ray-address", help="Ray cluster address (backend openrlhf)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Resolve and print the config, train nothing."),
) -> None:
    """Train algorithms under identical conditions (same base model, data order, seeds, budget)."""
    from fipo_bench.config import ConfigError, build_config

    options = {"algos": algos, "seeds": seeds, "backend": backend, "model": model, "dataset": dataset,
               "data_dir": data_dir, "num_steps": steps, "run_name": run_name, "output_dir": output_dir,
               "device": device}
    try:
        cfg = build_config(preset, config_file=config_file, options=options, sets=sets)
    except (ConfigError, ValueError) as e:
        fail(e)
    if not cfg.run_name:
        cfg = cfg.replace(run_name=cfg.default_run_name())

    if cfg.backend == "openrlhf":
        from fipo_bench.backends.openrlhf import launch

        try:
            out = launch(cfg, dry_run=dry_run, ray_address=ray_address)
        except ConfigError as e:
            console.print(f"[red]error:[/red] {e}")
            raise typer.Exit(2) from None
        console.print(f"run directory: {out}")
        if dry_run:
            return
        from fipo_bench.io import read_json

        if read_json(out / "run.json")["status"] != "completed":
            console.print(f"[red]failed runs[/red]: see {out}/*/status.json")
            raise typer.Exit(1)
        from fipo_bench.report import write_report

        console.print(f"report: {write_report(out)}")
        return
    if dry_run:
        console.print_json(cfg.to_json())
        runs = [f"{a}-seed{s}" for s in cfg.seeds for a in cfg.algos]
        console.print(f"would write {Path(cfg.output_dir) / cfg.run_name}/ with runs: {', '.join(runs)}")
        return

    from fipo_bench.runner import run_matrix

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        reporter = RichReporter(progress)
        try:
            root = run_matrix(cfg, reporter=reporter, command=["fipo-bench", *sys.argv[1:]])
        except ConfigError as e:
            fail(e)
    console.print(summary_table(reporter.results))
    console.print(f"results: {root}")
    try:
        from fipo_bench.report import write_report
    except ImportError:
        console.print("note: fipo_bench.report.write_report is not available yet; no report written")
    else:
        out = write_report(root)
        console.print(f"report: {out}")
    if any(r.status == "failed" for r in reporter.results):
        raise typer.Exit(1)
