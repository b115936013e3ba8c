"""The algorithm x seed matrix of `fipo-bench run --backend local`: check, dispatch, resume.

Layout and schemas: results/README.md (written through fipo_bench.results). Fairness: every algorithm x
seed starts from the same base checkpoint; prompts and sampling depend only on (seed, step)
(fipo_bench.backends.local.trainer), so all algorithms see the same prompt order and the same first rollout.

Every run is one call of `one_run.execute(spec, reporter)`. The matrix dispatches those calls either here, one
after the other (one run, or `--max-parallel 1`), or as Ray tasks (ray_dispatch): the
dispatch is the only code the two paths do not share. Before the first run starts the driver checks
everything a run would check (algorithms and their settings, the model, the datasets, the config of an
existing run directory and its repeated lines), takes the run directory's lock, and prepares the base
checkpoint once. A dry run stops after the checks.

Numbers: a run's files depend on its config, its seed and its torch thread count (`cpus_per_run`,
pinned in both paths), never on how many runs share the machine or which process runs it; parallel and
sequential matrices write identical files apart from timings.

Resume: a run directory holds checkpoints/step-<N>/ (weights, optimizer, schedule). Running the same
command again skips completed runs, and restarts an unfinished one from its newest checkpoint after
cutting metrics.jsonl/evals.jsonl back to that step; since nothing else carries state between steps,
the resumed run ends with the numbers of an uninterrupted one.

Failures stay in their run: a non-finite loss or an exception marks that run "failed" (message and
traceback in status.json) and the matrix goes on; Ctrl-C marks unfinished runs "interrupted" and says
how to resume. (A Ray worker that dies is retried once from its checkpoint, then marked failed.)
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fipo_bench import results
from fipo_bench.backends.base import (
    Backend,
    Execution,
    MatrixInterrupted,
    MatrixResult,
    Plan,
    Reporter,
)
from fipo_bench.backends.local.one_run import RunSpec, execute, mark_interrupted, where_stopped
from fipo_bench.backends.local.ray_dispatch import run_on_ray
from fipo_bench.config import ConfigError, RunConfig
from fipo_bench.results import RunDir
from fipo_bench.tasks import load_task, prepare_base


class LocalBackend(Backend):
    """`--backend local`: the matrix below, behind the backend contract (fipo_bench.backends.base)."""

    name = "local"

    def plan(self, config: RunConfig, execution: Execution) -> LocalPlan:
        return plan_matrix(config, execution)

    def run(self, config: RunConfig, execution: Execution, *, reporter: Reporter | None = None,
            command: list[str] | None = None) -> MatrixResult:
        return run_matrix(config, reporter=reporter, command=command, execution=execution)


@dataclass
class LocalPlan(Plan):
    """What a matrix will do, after every check that can fail before step 1."""

    cfg: RunConfig
    root: Path
    algorithms: dict[str, Any]
    mode: str  # "in-process" | "ray"
    parallel: int
    execution: Execution
    notes: list[str] = field(default_factory=list)

    def runs(self) -> str:
        runs = [results.run_dir_name(a, s) for s in self.cfg.seeds for a in self.cfg.algos]
        how = ("one after the other in this process" if self.mode == "in-process" else
               f"on Ray ({self.execution.ray_address or 'a local Ray started for this command'}), "
               f"up to {self.parallel} at once")
        threads = f"{self.execution.cpus_per_run} CPU thread{'s' * (self.execution.cpus_per_run != 1)}"
        return f"{len(runs)} runs into {self.root}/, {how}, {threads} each: {', '.join(runs)}"

    def describe(self) -> str:
        return "\n".join([self.cfg.to_json().rstrip(), *(f"note: {note}" for note in self.notes),
                          f"would run {self.runs()}",
                          "dry run: every check passed (algorithms and their settings, the base model, the "
                          "datasets, existing run directories); nothing was trained or written"])


# -- checks before step 1 ------------------------------------------------------------------------------


def plan_matrix(cfg: RunConfig, execution: Execution = Execution()) -> LocalPlan:
    """Every check the matrix runs before its first step; raises ConfigError naming the field or file."""
    import torch

    from fipo_bench.algorithms import get_algorithm

    algorithms = {}
    # Every algorithm is built, its overrides validated and its reward shaping tried on this run's
    # length limit, before any training starts.
    for algo in cfg.algos:
        try:
            alg = get_algorithm(algo, **cfg.algo_overrides.get(algo, {}))
            alg.shape_rewards(torch.zeros(1), torch.ones(1), cfg.max_response_length)
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"config field 'algos' / 'algo_overrides.{algo}': {e}") from None
        algorithms[algo] = alg
    prepare_base(cfg, dry_run=True)  # the recipe, or the --model directory
    load_task(cfg)  # the tokenizer and every dataset
    root = results.matrix_dir(cfg)
    for seed in cfg.seeds:
        for algo, alg in algorithms.items():
            run = RunDir(root / results.run_dir_name(algo, seed))
            run.check_config(results.run_config_record(cfg, alg, seed, ""))
            try:
                run.repeated_lines()  # identical repeats are repaired at launch; others stop here
            except ValueError as e:
                raise ConfigError(str(e)) from None
    mode, parallel, notes = _dispatch_mode(cfg, execution, len(cfg.algos) * len(cfg.seeds))
    return LocalPlan(cfg, root, algorithms, mode, parallel, execution, notes)


def _dispatch_mode(cfg: RunConfig, execution: Execution, num_runs: int) -> tuple[str, int, list[str]]:
    import importlib.util

    for flag, value, low in (("--max-parallel", execution.max_parallel, 1),
                             ("--cpus-per-run", execution.cpus_per_run, 1),
                             ("--gpus-per-run", execution.gpus_per_run, 0)):
        if value is not None and value < low:
            raise ConfigError(f"{flag}: expected a number >= {low}, got {value}")
    gpus, notes = gpus_per_run(cfg, execution), []
    if execution.ray_address is None:
        from fipo_bench.backends.local.trainer import resolve_device

        try:
            resolve_device(cfg.device)  # cuda requested on a machine without it
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if gpus > 0:
            import torch

            fit, unit = int(torch.cuda.device_count() // gpus), f"{torch.cuda.device_count()} GPUs"
        else:
            fit, unit = local_cores() // execution.cpus_per_run, f"{local_cores()} cores"
        parallel = max(1, min(num_runs, execution.max_parallel or fit, fit))
        if execution.max_parallel and execution.max_parallel > max(fit, 1):
            notes.append(f"--max-parallel {execution.max_parallel}: only {max(fit, 1)} at once fit on {unit}")
    else:  # the cluster's resources are Ray's to schedule
        parallel = min(num_runs, execution.max_parallel or num_runs)
    if parallel <= 1 and execution.ray_address is None:
        return "in-process", 1, notes
    if importlib.util.find_spec("ray") is None:
        if execution.max_parallel is None and execution.ray_address is None:
            return "in-process", 1, [f"ray is not installed: the {num_runs} runs run one after the other "
                                     "(pip install -e '.[ray]' runs them in parallel)"]
        raise ConfigError("--max-parallel > 1 and --ray-address need Ray: pip install -e '.[ray]'")
    if gpus > 0 and cfg.device.startswith("cuda:"):
        raise ConfigError(f"config field 'device': {cfg.device!r} pins one GPU, but under Ray each run gets "
                          "its own; use --device cuda (or --max-parallel 1)")
    return "ray", parallel, notes


def gpus_per_run(cfg: RunConfig, execution: Execution) -> float:
    if execution.gpus_per_run is not None:
        return execution.gpus_per_run
    if cfg.device.startswith("cuda"):
        return 1.0
    if cfg.device == "auto":
        import torch

        return 1.0 if torch.cuda.is_available() else 0.0
    return 0.0


def local_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# -- the matrix ---------------------------------------------------------------------------------------


def run_matrix(cfg: RunConfig, *, reporter: Reporter | None = None, command: list[str] | None = None,
               execution: Execution = Execution()) -> MatrixResult:
    """Run every algorithm x seed of `cfg`; returns results/<run>/ and one result per run."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the per-checkpoint "Loading weights" bars drown our own
    reporter = reporter or Reporter()
    if not cfg.run_name:
        cfg = cfg.replace(run_name=cfg.default_run_name())
    plan = plan_matrix(cfg, execution)
    for note in plan.notes:
        reporter.message(f"note: {note}")
    root = plan.root
    with results.locked(root):
        for seed in cfg.seeds:  # lines two processes once appended twice are repaired before anything runs
            for algo in cfg.algos:
                try:
                    dropped = RunDir(root / results.run_dir_name(algo, seed)).repair()
                except ValueError as e:  # written since plan_matrix looked
                    raise ConfigError(str(e)) from None
                if dropped:
                    reporter.message(f"repaired {len(dropped)} repeated line(s): {dropped[0]}")
        reporter.phase("warm-up" if cfg.model is None else "loading the base model")
        base = prepare_base(cfg, progress=reporter.warmup_progress)
        specs = [RunSpec(cfg, plan.algorithms[algo], seed, base, root / results.run_dir_name(algo, seed),
                         execution.cpus_per_run)
                 for seed in cfg.seeds for algo in cfg.algos]
        meta = results.start_matrix(root, cfg, command=command if command is not None else sys.argv,
                                    backend="local", execution={"mode": plan.mode, "parallel": plan.parallel,
                                                                **vars(execution)})
        reporter.matrix_started([s.name for s in specs], cfg.num_steps, plan.parallel)
        # Completed runs are skipped here, and Ray starts only for two or more runs left to train.
        pending = [s for s in specs if (RunDir(s.run_dir).status() or {}).get("status") != "completed"]
        outcomes = {s.name: execute(s, reporter) for s in specs if s not in pending}
        try:
            if plan.mode == "in-process" or (len(pending) <= 1 and execution.ray_address is None):
                outcomes.update({spec.name: execute(spec, reporter) for spec in pending})
            else:
                ray_results = run_on_ray(pending, reporter, root=root, execution=execution,
                                         parallel=plan.parallel, gpus=gpus_per_run(cfg, execution),
                                         local_cpus=local_cores())
                outcomes.update(zip([s.name for s in pending], ray_results, strict=True))
        except KeyboardInterrupt:
            for spec in specs:
                mark_interrupted(spec)
            results.finish_matrix(root, meta, "interrupted")
            raise MatrixInterrupted(root, [where_stopped(spec) for spec in specs]) from None
        except BaseException:
            results.finish_matrix(root, meta, "failed")
            raise
        outcome = MatrixResult(root, [outcomes[s.name] for s in specs])
        results.finish_matrix(root, meta, "failed" if outcome.failed else "completed")
    return outcome
