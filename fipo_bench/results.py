"""The results layout (results/README.md), owned here: every backend writes through this module and the
report reads through it, so no other module knows a file name of a run directory.

    results/<run>/                 one matrix: run.json, .lock, <algo>-seed<k>/ per run, report/
    results/<run>/<algo>-seed<k>/  one run: config.json, status.json, metrics.jsonl, evals.jsonl, eval/,
                                   checkpoints/step-<N>/, .lock; value_pretrain.jsonl (algorithms
                                   with a critic and value pretraining)

Writes are atomic or append-only (fipo_bench.io). A process that writes a directory holds its `.lock`
(an advisory `flock`, released by the kernel when the process dies, so kill -9 leaves no stale lock); a
second process exits with a message naming the holder. Lines of metrics.jsonl / evals.jsonl that repeat a
step (two writers of one run would leave them; the lock keeps a second writer out) are repaired when
they agree apart from timings, and otherwise reported with the file and both line numbers.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fipo_bench.config import ConfigError, RunConfig
from fipo_bench.io import append_jsonl, iter_jsonl, json_safe, read_json, read_jsonl, write_json, write_jsonl

RUN_STATUSES = ("running", "completed", "failed", "interrupted")
COMPLETED = "completed"
RUN_DIR_PATTERN = re.compile(r"^(?P<algo>.+)-seed(?P<seed>\d+)$")
STEP_DIR_PATTERN = re.compile(r"^step-(?P<step>\d+)$")
LOCK_FILE = ".lock"
TRAINER_STATE = "trainer_state.pt"
"""Optimizer + schedule state inside a local checkpoint: a checkpoint is a resume point only with it."""
CRITIC_DIR, CRITIC_WEIGHTS, CRITIC_OPTIMIZER = "critic", "model.safetensors", "optimizer.pt"
"""checkpoints/step-N/critic/ of an algorithm with a critic: its weights and its optimizer state."""
TIMING_FIELDS = frozenset({"tokens_per_s", "gen_tokens_per_s", "gen_time_s", "step_time_s", "critic_time_s"})
"""metrics.jsonl fields that hold wall-clock measurements: the only ones two identical runs differ in."""
# config.json keys that may differ between an interrupted run and its resumption.
_NOT_COMPARED = ("base_checkpoint",)


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_dir_name(algo: str, seed: int) -> str:
    return f"{algo}-seed{seed}"


def matrix_dir(cfg: RunConfig) -> Path:
    """results/<run>/ of a config (absolute: Ray workers do not share the driver's working directory)."""
    return (Path(cfg.output_dir) / (cfg.run_name or cfg.default_run_name())).resolve()


# -- provenance -----------------------------------------------------------------------------------------


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    # reasoning-gym: its generators make the problems of rg: datasets.
    for name in ("fipo-bench", "torch", "transformers", "tokenizers", "math-verify", "numpy", "ray",
                 "reasoning-gym"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def run_config_record(cfg: RunConfig, alg, seed: int, base_checkpoint: str) -> dict[str, Any]:
    """config.json of one run: the algorithm with every hyperparameter, the seed, and the trainer settings."""
    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("algos", "seeds", "algo_overrides")}
    return json_safe({"algo": alg.name, "seed": seed, "hyperparameters": alg.hyperparameters(),
                      "base_checkpoint": str(base_checkpoint), **settings})


def start_matrix(root: Path, cfg: RunConfig, *, command: list[str], backend: str,
                 execution: dict | None = None) -> dict:
    """Write run.json as "running" (keeping started_at of an earlier attempt); returns its content."""
    path = root / "run.json"
    previous = read_json(path) if path.exists() else {}
    meta = {
        "command": shlex.join(command),
        "git_commit": git_commit(),
        "package_versions": package_versions(),
        "backend": backend, "preset": cfg.preset, "algos": list(cfg.algos), "seeds": list(cfg.seeds),
        "status": "running",
        "started_at": previous.get("started_at", now()),
        "resumed_at": [*previous.get("resumed_at", []), now()] if previous else [],
        "finished_at": None,
        "config": cfg.to_dict(),
    }
    if execution is not None:
        meta["execution"] = execution
    write_json(path, meta)
    return meta


def finish_matrix(root: Path, meta: dict, status: str) -> None:
    write_json(root / "run.json", {**meta, "status": status, "finished_at": now()})


# -- the lock -------------------------------------------------------------------------------------------


class RunLockedError(RuntimeError):
    """Another live process writes this results directory."""


@contextlib.contextmanager
def locked(directory: Path, *, wait_s: float = 0.0) -> Iterator[None]:
    """Hold `directory`/.lock exclusively (waiting up to `wait_s` seconds for another holder to exit).

    The file keeps the holder's pid and host, so the refusal names it. Nothing deletes the file: a stale
    file is harmless because the lock itself dies with its process.
    """
    try:
        import fcntl
    except ImportError:  # no advisory locks (Windows): single-process use still works
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RunLockedError(
                        f"{directory} is in use by another fipo-bench process ({_holder(path)}); wait for it "
                        f"to finish or stop it, then run the same command again") from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": now()}
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def lock_holder(directory: Path) -> dict | None:
    """{"pid", "host", "since"} of the last process that took `directory`'s lock (it may have exited)."""
    try:
        return json.loads((directory / LOCK_FILE).read_text())
    except (OSError, ValueError):
        return None


def _holder(path: Path) -> str:
    holder = lock_holder(path.parent)
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}"


# -- repeated steps ---------------------------------------------------------------------------------------


def _metrics_key(row: dict) -> Any:
    return row.get("step")


def _evals_key(row: dict) -> Any:
    return (row.get("step"), row.get("dataset"))


def deduplicated(path: Path, key: Callable[[dict], Any] = _metrics_key) -> tuple[list[dict], list[str]]:
    """The rows of a JSON-lines file with every repeated key kept once, and a note per repetition.

    A repetition that agrees with the first occurrence apart from TIMING_FIELDS is a harmless copy (two
    processes trained the same deterministic step); one that disagrees cannot be repaired automatically
    and raises ValueError naming the file and both lines.
    """
    first: dict[Any, tuple[int, dict]] = {}
    rows, notes = [], []
    for lineno, row in iter_jsonl(path):
        k = key(row)
        if k not in first:
            first[k] = (lineno, row)
            rows.append(row)
            continue
        line0, row0 = first[k]
        differ = sorted(f for f in set(row) | set(row0)
                        if f not in TIMING_FIELDS and row.get(f) != row0.get(f))
        if differ:
            raise ValueError(
                f"{path}:{lineno}: repeats line {line0} (key {k!r}) with different values in {differ}: two "
                f"processes wrote this run at once. Delete {path.parent} to train this run again (the other "
                f"runs are unaffected), or delete one of lines {line0} and {lineno} by hand")
        notes.append(f"{path}:{lineno}: repeats line {line0} (key {k!r}, same values); dropped")
    return rows, notes


# -- one run directory ------------------------------------------------------------------------------------


def latest_checkpoint(checkpoints_dir: Path) -> tuple[int, Path] | None:
    """(step, dir) of the newest complete local checkpoint (one with its trainer state), or None."""
    steps = checkpoint_steps(checkpoints_dir, resumable=True)
    return (steps[-1], checkpoints_dir / f"step-{steps[-1]}") if steps else None


def checkpoint_steps(checkpoints_dir: Path, *, resumable: bool = False) -> list[int]:
    """Sorted steps of checkpoints/step-<N>/ (only those holding TRAINER_STATE when `resumable`)."""
    if not checkpoints_dir.is_dir():
        return []
    steps = []
    for d in checkpoints_dir.iterdir():
        match = STEP_DIR_PATTERN.match(d.name)
        if match and d.is_dir() and (not resumable or (d / TRAINER_STATE).is_file()):
            steps.append(int(match["step"]))
    return sorted(steps)


class RunDir:
    """results/<run>/<algo>-seed<k>/: every file of one run goes through these methods."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def evals_path(self) -> Path:
        return self.path / "evals.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step-{step}"

    def eval_dir(self, dataset: str, step: int) -> Path:
        return self.path / "eval" / dataset / f"step-{step}"

    def lock(self, *, wait_s: float = 0.0):
        return locked(self.path, wait_s=wait_s)

    # -- config and status ------------------------------------------------------------------------------

    def check_config(self, record: dict) -> None:
        """Raise ConfigError when an existing config.json differs from `record` (another experiment)."""
        path = self.path / "config.json"
        if not path.exists():
            return
        old = read_json(path)
        diff = sorted(k for k in set(old) | set(record)
                      if k not in _NOT_COMPARED and old.get(k) != record.get(k))
        if diff:
            raise ConfigError(f"{path}: this run was started with a different config (fields {diff}); "
                              "use --run-name to start a new run, or delete the directory")

    def write_config(self, record: dict) -> None:
        write_json(self.path / "config.json", json_safe(record))

    def status(self) -> dict | None:
        path = self.path / "status.json"
        return read_json(path) if path.exists() else None

    def set_status(self, status: str, step: int, error: str | None = None, *,
                   traceback: str | None = None) -> None:
        assert status in RUN_STATUSES, status
        record: dict[str, Any] = {"status": status, "step": step, "error": error}
        if traceback:
            record["traceback"] = traceback
        write_json(self.path / "status.json", record)

    # -- metrics and evals -----------------------------------------------------------------------------

    def append_metrics(self, row: dict) -> None:
        append_jsonl(self.metrics_path, json_safe(row))

    def write_metrics(self, rows: list[dict]) -> None:
        """metrics.jsonl as a whole (a backend that reads every step back from its trainer's logs)."""
        write_jsonl(self.metrics_path, [json_safe(row) for row in rows])

    @property
    def value_pretrain_path(self) -> Path:
        return self.path / "value_pretrain.jsonl"

    def write_value_pretrain(self, rows: list[dict]) -> None:
        """value_pretrain.jsonl: one line per critic-only step before step 1 (written whole, so a run that
        restarts from step 0 replaces it)."""
        write_jsonl(self.value_pretrain_path, [json_safe(row) for row in rows])

    def last_logged_step(self) -> int:
        """The last step in metrics.jsonl (0 before the first)."""
        if not self.metrics_path.exists():
            return 0
        steps = [row["step"] for _, row in iter_jsonl(self.metrics_path) if isinstance(row.get("step"), int)]
        return max(steps, default=0)

    def evals(self) -> list[dict]:
        return read_jsonl(self.evals_path) if self.evals_path.exists() else []

    def repeated_lines(self) -> list[str]:
        """Notes on the repeated lines that `repair` would drop; raises ValueError (file:line) for
        repetitions that disagree. Writes nothing."""
        return [note for path, key in ((self.metrics_path, _metrics_key), (self.evals_path, _evals_key))
                if path.exists() for note in deduplicated(path, key)[1]]

    def repair(self) -> list[str]:
        """Rewrite metrics.jsonl / evals.jsonl without repeated identical lines; returns what was dropped.
        Raises ValueError (file:line) for repetitions that disagree."""
        notes = []
        for path, key in ((self.metrics_path, _metrics_key), (self.evals_path, _evals_key)):
            if path.exists():
                rows, dropped = deduplicated(path, key)
                if dropped:
                    write_jsonl(path, rows)
                    notes += dropped
        return notes

    def rewind(self, step: int) -> list[dict]:
        """Cut metrics.jsonl / evals.jsonl back to lines with step <= `step` (a killed writer's partial
        last line included) before a resume from that step; returns the evals lines kept."""
        kept_evals: list[dict] = []
        for path, key in ((self.metrics_path, _metrics_key), (self.evals_path, _evals_key)):
            if not path.exists():
                continue
            rows, _ = deduplicated(path, key)
            rows = [r for r in rows if isinstance(r.get("step"), int) and r["step"] <= step]
            write_jsonl(path, rows)
            if path == self.evals_path:
                kept_evals = rows
        return kept_evals

    def write_eval(self, step: int, dataset: str, rows: list[dict], summary: dict) -> dict:
        """eval/<dataset>/step-<N>/ files, then their evals.jsonl line; returns that line."""
        line = write_eval(self.path, step, dataset, rows, summary)
        append_jsonl(self.evals_path, line)
        return line

    def shared_base_eval(self, dataset: str) -> Path | None:
        """A finished step-0 evaluation of the same seed in a sibling run: the base model's evaluation is
        the same for every algorithm of a seed, so it is computed once per seed (in whichever process
        gets there first) and copied."""
        match = RUN_DIR_PATTERN.match(self.name)
        if match is None:  # not a run directory of a matrix: no siblings
            return None
        seed = match["seed"]
        for sibling in sorted(self.path.parent.glob(f"*-seed{seed}")):
            candidate = RunDir(sibling).eval_dir(dataset, 0)
            if sibling != self.path and (candidate / "summary.json").is_file():
                return candidate
        return None

    # -- checkpoints -------------------------------------------------------------------------------------

    def resume_point(self) -> tuple[int, Path | None]:
        """(step to resume after, checkpoint dir or None for the base model)."""
        latest = latest_checkpoint(self.checkpoints)
        return latest if latest else (0, None)

    def prune_checkpoints(self, keep: int) -> None:
        """Keep the `keep` newest checkpoints (0 = all): resume needs only the newest."""
        if keep <= 0:
            return
        for step in checkpoint_steps(self.checkpoints)[:-keep]:
            shutil.rmtree(self.checkpoint(step), ignore_errors=True)

    def drop_resume_state(self, step: int) -> None:
        """A completed run's final checkpoint keeps the model, not the optimizer state only resume needs."""
        (self.checkpoint(step) / TRAINER_STATE).unlink(missing_ok=True)
        (self.checkpoint(step) / CRITIC_DIR / CRITIC_OPTIMIZER).unlink(missing_ok=True)


def write_eval(run_dir: Path, step: int, dataset: str, rows: list[dict], summary: dict) -> dict:
    """eval/<dataset>/step-<N>/ files (fipo_bench.evals.io schema); returns the evals.jsonl line for them."""
    from fipo_bench.evals.io import write_eval_dir

    write_eval_dir(RunDir(run_dir).eval_dir(dataset, step), rows, summary)
    k = summary.get("k")
    pass_at_k = summary.get("pass_at_k") or {}
    return json_safe({
        "step": step, "dataset": dataset,
        "eval_accuracy": summary.get("avg_at_k"),
        "eval_response_length": (summary.get("response_length") or {}).get("mean"),
        "avg_at_k_ci95": summary.get("avg_at_k_ci95"),
        f"pass_at_{k}": pass_at_k.get(str(k)),
        "cons_at_k": summary.get("cons_at_k"),
        "truncation_rate": summary.get("truncation_rate"),
        "k": k,
    })
