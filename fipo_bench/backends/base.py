"""The contract every backend implements (`Backend`), and the values that cross it.

The implementations import this module and never `fipo_bench.backends` itself, whose `get_backend`
imports them: the lookup depends on the backends, the backends on the contract, never the reverse.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from fipo_bench import results
from fipo_bench.config import RunConfig


class Reporter:
    """Progress hooks; every one does nothing unless overridden. Per-run hooks name the run, so that a
    worker process's events can be forwarded to the driver's reporter unchanged."""

    def phase(self, text: str) -> None: ...
    def warmup_progress(self, done: int, total: int, metrics: dict) -> None: ...
    def matrix_started(self, runs: list[str], total_steps: int, parallel: int) -> None: ...
    def run_started(self, run: str, step: int) -> None: ...
    def run_step(self, run: str, step: int, metrics: dict) -> None: ...
    def run_eval(self, run: str, dataset: str, step: int) -> None: ...
    def run_finished(self, run: str, status: str, step: int) -> None: ...
    def message(self, text: str) -> None: ...


@dataclass(frozen=True)
class Execution:
    """Where and how many runs go at once; a backend reads the fields that apply to it (OpenRLHF:
    `ray_address` only). Only `cpus_per_run` (torch's thread count) can change a number."""

    max_parallel: int | None = None
    """Runs at once; None = as many as the resources allow; 1 = one after the other in this process."""
    cpus_per_run: int = 1
    """CPU cores (torch threads) of each run; the same in every dispatch, so results do not depend on
    max_parallel."""
    gpus_per_run: float | None = None
    """GPUs of each run under Ray; None = 1 when the device is CUDA, else 0."""
    ray_address: str | None = None
    """Join this Ray cluster; None = a local Ray started and stopped by the command."""


@dataclass
class RunResult:
    """How one algorithm x seed ended in this invocation (its files hold the rest)."""

    algo: str
    seed: int
    status: str  # one of results.RUN_STATUSES
    step: int
    error: str | None = None
    evals: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0

    @property
    def name(self) -> str:
        return results.run_dir_name(self.algo, self.seed)


@dataclass
class MatrixResult:
    """results/<run>/ and one result per algorithm x seed, in the config's order."""

    root: Path
    runs: list[RunResult]

    @property
    def failed(self) -> bool:
        return any(r.status == "failed" for r in self.runs)


class MatrixInterrupted(Exception):
    """Ctrl-C: every unfinished run is marked "interrupted"; `stops` says where each one stopped."""

    def __init__(self, root: Path, stops: list[str]):
        super().__init__(f"interrupted: {root}")
        self.root, self.stops = root, stops


class Plan(ABC):
    """What a backend will do with a config, after every check that can fail before step 1."""

    root: Path
    """results/<run>/, the directory the runs will write."""

    @abstractmethod
    def describe(self) -> str:
        """What `fipo-bench run --dry-run` prints: every run, where it goes and how it is started."""


class Backend(ABC):
    """Trains every algorithm x seed of a RunConfig and writes the results layout (fipo_bench.results)."""

    name: str

    @abstractmethod
    def plan(self, config: RunConfig, execution: Execution) -> Plan:
        """Every check a run makes before its first step; raises ConfigError naming the field or file.
        Trains nothing and writes nothing."""

    @abstractmethod
    def run(self, config: RunConfig, execution: Execution, *, reporter: Reporter | None = None,
            command: list[str] | None = None) -> MatrixResult:
        """Train (or resume) every algorithm x seed; `command` is recorded in run.json (default sys.argv).
        Raises ConfigError or results.RunLockedError before anything trains, MatrixInterrupted on Ctrl-C."""
