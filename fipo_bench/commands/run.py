"""`fipo-bench run`: train every algorithm x seed under identical conditions and compare them.

The backend (fipo_bench.backends) checks and trains; this module draws its progress and summary.
Module-level imports stay light (typer, rich, stdlib); a backend, torch and the trainer load inside `run`.
"""

from __future__ import annotations

import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from fipo_bench.backends import Execution, MatrixInterrupted, Reporter, get_backend
from fipo_bench.commands.errors import fail

console = Console(stderr=True)
STATUS_STYLES = {"completed": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class RunRow:
    status: str = "queued"
    step: int = 0
    activity: str = ""
    accuracy: float | None = None
    length: float | None = None
    started_at: float | None = None
    started_step: int = 0
    first_step_at: float | None = None
    first_step: int = 0
    last_at: float | None = None


class MatrixView:
    """The live view's state: one row per run (step/total, accuracy, mean length, s/step, ETA) and the
    matrix's overall ETA. s/step is wall time per step (evaluations and checkpoints included) since the
    run's first step, or since it (re)started until two steps are done, so that loading the model does not
    count as training; a queued run is expected to take the mean s/step of the runs measured so far."""

    def __init__(self, runs: list[str], total_steps: int, parallel: int,
                 clock: Callable[[], float] = time.monotonic):
        self.rows = {run: RunRow() for run in runs}
        self.total, self.parallel, self.clock = total_steps, parallel, clock

    # -- events --------------------------------------------------------------------------------------

    def started(self, run: str, step: int) -> None:
        row = self.rows[run]
        row.status, row.step, row.started_step, row.activity = "running", step, step, ""
        row.started_at = row.last_at = self.clock()
        row.first_step_at = None

    def stepped(self, run: str, step: int, metrics: dict) -> None:
        row = self.rows[run]
        row.step, row.last_at, row.activity = step, self.clock(), ""
        if row.first_step_at is None:
            row.first_step_at, row.first_step = row.last_at, step
        row.accuracy = metrics.get("accuracy")
        row.length = metrics.get("response_length_mean")

    def evaluating(self, run: str, dataset: str, step: int) -> None:
        self.rows[run].activity = f"eval {dataset} @ {step}"

    def finished(self, run: str, status: str, step: int) -> None:
        row = self.rows[run]
        row.status, row.step, row.activity = status, step, ""

    # -- numbers -------------------------------------------------------------------------------------

    def seconds_per_step(self, row: RunRow) -> float | None:
        if row.started_at is None or row.step <= row.started_step:
            return None
        if row.step - row.first_step >= 2:
            return (row.last_at - row.first_step_at) / (row.step - row.first_step)
        return (row.last_at - row.started_at) / (row.step - row.started_step)

    def _unfinished(self) -> list[RunRow]:
        return [r for r in self.rows.values() if r.status in ("queued", "running")]

    def eta(self, row: RunRow) -> float | None:
        rate = self.seconds_per_step(row)
        return None if rate is None or row.status != "running" else (self.total - row.step) * rate

    def overall_eta(self) -> float | None:
        """Remaining steps of every unfinished run at its (or the mean) s/step, over the runs at once."""
        rates = [r for r in map(self.seconds_per_step, self.rows.values()) if r is not None]
        unfinished = self._unfinished()
        if not unfinished:
            return 0.0
        if not rates:
            return None
        mean = statistics.fmean(rates)
        work = sum((self.total - r.step) * (self.seconds_per_step(r) or mean) for r in unfinished)
        return work / min(self.parallel, len(unfinished))

    def title(self) -> str:
        n = len(self.rows)
        done = sum(r.status not in ("queued", "running") for r in self.rows.values())
        running = [i for i, r in enumerate(self.rows.values(), start=1) if r.status == "running"]
        if self.parallel == 1:
            position = f"run {running[0] if running else min(done + 1, n)} of {n}"
        else:
            position = f"{done} of {n} runs done, {len(running)} running"
        return f"fipo-bench run: {position}, overall ETA {duration(self.overall_eta())}"

    # -- rendering -----------------------------------------------------------------------------------

    def table(self) -> Table:
        table = Table()
        for column in ("run", "status", "step", "acc", "len", "s/step", "ETA"):
            table.add_column(column, justify="left" if column in ("run", "status") else "right", no_wrap=True)
        for name, row in self.rows.items():
            status = Text(row.activity or row.status, style=STATUS_STYLES.get(row.status, ""))
            table.add_row(name, status, f"{row.step}/{self.total}",
                          "-" if row.accuracy is None else f"{row.accuracy:.2f}",
                          "-" if row.length is None else f"{row.length:.1f}",
                          "-" if (rate := self.seconds_per_step(row)) is None else f"{rate:.2f}",
                          duration(self.eta(row)))
        return table

    def __rich__(self) -> Group:
        return Group(Text(self.title()), self.table())


class RichReporter(Reporter):
    """The warm-up's progress bar, then one live table of the whole matrix (the matrix's Reporter)."""

    def __init__(self, console: Console):
        self.console = console
        self.warmup: Progress | None = None
        self.warmup_task = None
        self.view: MatrixView | None = None
        self.live: Live | None = None

    def phase(self, text: str) -> None:
        self.console.log(text, markup=False)

    def warmup_progress(self, done: int, total: int, metrics: dict) -> None:
        if self.warmup is None:
            self.warmup = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                   TimeElapsedColumn(), console=self.console)
            self.warmup.start()
            self.warmup_task = self.warmup.add_task("SFT warm-up", total=total)
        loss = metrics.get("loss")
        suffix = f" loss {loss:.3f}" if isinstance(loss, float) else ""
        self.warmup.update(self.warmup_task, completed=done, description=f"SFT warm-up{suffix}")

    def matrix_started(self, runs: list[str], total_steps: int, parallel: int) -> None:
        self._stop_warmup()
        self.view = MatrixView(runs, total_steps, parallel)
        self.live = Live(self.view, console=self.console, refresh_per_second=2, transient=True)
        self.live.start()

    def run_started(self, run: str, step: int) -> None:
        self.view.started(run, step)

    def run_step(self, run: str, step: int, metrics: dict) -> None:
        self.view.stepped(run, step, metrics)

    def run_eval(self, run: str, dataset: str, step: int) -> None:
        self.view.evaluating(run, dataset, step)

    def run_finished(self, run: str, status: str, step: int) -> None:
        self.view.finished(run, status, step)

    def message(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def _stop_warmup(self) -> None:
        if self.warmup is not None:
            self.warmup.stop()
            self.warmup = None

    def close(self) -> None:
        self._stop_warmup()
        if self.live is not None:
            self.live.stop()
            self.live = None


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

            table.add_row(r.name, Text(r.status, style=STATUS_STYLES.get(r.status, "yellow")), str(r.step),
                          dataset, fmt(first, "eval_accuracy", ".3f"), fmt(last, "eval_accuracy", ".3f"),
                          fmt(first, "eval_response_length", ".1f"), fmt(last, "eval_response_length", ".1f"),
                          f"{r.wall_time_s:.0f}s" if r.wall_time_s else "-")
    return table


def run(
    algos: str = typer.Option(None, "--algos", help="Comma-separated names (default grpo,dapo,fipo)."),
    preset: str = typer.Option(None, "--preset", help="Named config (fipo_bench.presets); default: tiny, "
                               "or small-model with --model."),
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
    max_parallel: int = typer.Option(
        None, "--max-parallel", help="Runs at once (local backend; default: as many as the cores or GPUs "
        "allow, on Ray); 1 = one after the other in this process."),
    cpus_per_run: int = typer.Option(
        1, "--cpus-per-run", help="CPU cores (torch threads) per run; results depend on it, not on "
        "--max-parallel."),
    gpus_per_run: float = typer.Option(
        None, "--gpus-per-run", help="GPUs per run under Ray (default 1 with a CUDA device, else 0)."),
    ray_address: str = typer.Option(
        None, "--ray-address", help="Join this Ray cluster (default: a local Ray started and stopped by the "
        "command)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Run every check, print the plan, train nothing."),
) -> None:
    """Train algorithms under identical conditions (same base model, data order, seeds, budget)."""
    from fipo_bench.config import ConfigError, build_config
    from fipo_bench.results import RunLockedError

    options = {"algos": algos, "seeds": seeds, "backend": backend, "model": model, "dataset": dataset,
               "data_dir": data_dir, "num_steps": steps, "run_name": run_name, "output_dir": output_dir,
               "device": device}
    try:
        cfg = build_config(preset, config_file=config_file, options=options, sets=sets)
    except (ConfigError, ValueError) as e:
        fail(e)
    if not cfg.run_name:
        cfg = cfg.replace(run_name=cfg.default_run_name())
    how = "--preset" if preset else "the default with --model" if cfg.model else "the default"
    console.print(f"preset: {cfg.preset} ({how}; the presets: fipo_bench/presets.py)", markup=False,
                  highlight=False, soft_wrap=True)
    if cfg.dataset and cfg.dataset.startswith("rg:"):
        console.print(f"procedural task: trains on the train split of {cfg.dataset}; evaluates on "
                      f"{', '.join(cfg.eval_datasets)} (an rg: dataset's eval split, which shares no "
                      "question with any train split)", markup=False, highlight=False, soft_wrap=True)

    selected = get_backend(cfg.backend)
    execution = Execution(max_parallel=max_parallel, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run,
                          ray_address=ray_address)
    if dry_run:
        try:
            plan = selected.plan(cfg, execution)
        except ConfigError as e:
            fail(e)
        print(plan.describe())
        return

    command = ["fipo-bench", *sys.argv[1:]]
    reporter = RichReporter(console)
    try:
        outcome = selected.run(cfg, execution, reporter=reporter, command=command)
    except (ConfigError, RunLockedError) as e:
        fail(e)
    except MatrixInterrupted as e:
        reporter.close()
        console.print(f"interrupted: {e.root}", markup=False, soft_wrap=True)
        for line in e.stops:
            console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
        console.print(f"resume: run the same command again: {shlex.join(command)}", markup=False,
                      highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    except KeyboardInterrupt:  # before the first run started (warm-up, data)
        reporter.close()
        console.print("interrupted before training started; run the same command again", markup=False,
                      soft_wrap=True)
        raise typer.Exit(130) from None
    finally:
        reporter.close()
    console.print(summary_table(outcome.runs))
    console.print(f"results: {outcome.root}", markup=False, highlight=False, soft_wrap=True)
    from fipo_bench.report import write_report

    out = write_report(outcome.root)
    console.print(f"report: {out / 'report.html'}", markup=False, highlight=False, soft_wrap=True)
    if outcome.failed:
        raise typer.Exit(1)
