"""The algorithm x seed matrix of `fipo-bench run --backend local`: check, dispatch, resume.

Layout and schemas: results/README.md (written through fipo_bench.results). Fairness: every algorithm x
seed starts from the same base checkpoint; prompts and sampling depend only on (seed, step)
(fipo_bench.backends.local.trainer), so all algorithms see the same prompt order and the same first rollout.

Every run is one call of `execute(spec, reporter)`. The matrix dispatches those calls either here, one
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

import math
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fipo_bench import results
from fipo_bench.config import ConfigError, RunConfig
from fipo_bench.results import RunDir
from fipo_bench.tasks import load_task, prepare_base


class Reporter:
    """Progress hooks (the runner works without one). Per-run hooks name the run, so that a Ray worker's
    events can be forwarded to the driver's reporter unchanged."""

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
    """How the matrix runs. Only `cpus_per_run` (torch's thread count) can change a number."""

    max_parallel: int | None = None
    """Runs at once; None = as many as the resources allow; 1 = one after the other in this process."""
    cpus_per_run: int = 1
    """CPU cores (torch threads) of each run; the same in both paths, so results do not depend on
    max_parallel."""
    gpus_per_run: float | None = None
    """GPUs of each run under Ray; None = 1 when the device is CUDA, else 0."""
    ray_address: str | None = None
    """Join this Ray cluster; None = a local Ray started and stopped by the command."""


@dataclass(frozen=True)
class RunSpec:
    """One algorithm x seed, everything its process needs (picklable: it travels to Ray workers)."""

    cfg: RunConfig
    alg: Any  # fipo_bench.algorithms.base.Algorithm, built and validated by the driver
    seed: int
    base: str
    run_dir: Path
    threads: int

    @property
    def name(self) -> str:
        return self.run_dir.name


@dataclass
class RunResult:
    algo: str
    seed: int
    status: str
    step: int
    error: str | None = None
    evals: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0

    @property
    def name(self) -> str:
        return results.run_dir_name(self.algo, self.seed)


@dataclass
class Plan:
    """What a matrix will do, after every check that can fail before step 1."""

    cfg: RunConfig
    root: Path
    algorithms: dict[str, Any]
    mode: str  # "in-process" | "ray"
    parallel: int
    execution: Execution
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        runs = [results.run_dir_name(a, s) for s in self.cfg.seeds for a in self.cfg.algos]
        how = ("one after the other in this process" if self.mode == "in-process" else
               f"on Ray ({self.execution.ray_address or 'a local Ray started for this command'}), "
               f"up to {self.parallel} at once")
        threads = f"{self.execution.cpus_per_run} CPU thread{'s' * (self.execution.cpus_per_run != 1)}"
        return f"{len(runs)} runs into {self.root}/, {how}, {threads} each: {', '.join(runs)}"


class MatrixInterrupted(Exception):
    """Ctrl-C: every unfinished run is marked "interrupted"; `stops` says where each one stopped."""

    def __init__(self, root: Path, stops: list[str]):
        super().__init__(f"interrupted: {root}")
        self.root, self.stops = root, stops


# -- checks before step 1 ------------------------------------------------------------------------------


def plan_matrix(cfg: RunConfig, execution: Execution = Execution()) -> Plan:
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
    return Plan(cfg, root, algorithms, mode, parallel, execution, notes)


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


# -- one run ------------------------------------------------------------------------------------------


LOCK_WAIT_S = 30.0
"""How long a run waits for its directory's lock: a retried Ray task may start while the killed worker's
process is still being reaped."""


def execute(spec: RunSpec, reporter: Reporter) -> RunResult:
    """Train (or resume, or skip) one algorithm x seed, with torch pinned to `spec.threads` threads;
    never raises except for Ctrl-C (which marks the run "interrupted" first)."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the per-checkpoint "Loading weights" bars drown our own
    threads = torch.get_num_threads()
    torch.set_num_threads(spec.threads)
    try:
        with RunDir(spec.run_dir).lock(wait_s=LOCK_WAIT_S):
            return _train(spec, reporter)
    except results.RunLockedError as e:
        return RunResult(spec.alg.name, spec.seed, "failed", 0, str(e))
    finally:
        torch.set_num_threads(threads)


def _train(spec: RunSpec, reporter: Reporter) -> RunResult:
    from fipo_bench.backends.local.trainer import LocalTrainer, NonFiniteLossError
    from fipo_bench.evals.io import read_eval_dir
    from fipo_bench.evals.metrics import summarize_generations

    cfg, alg, seed, name = spec.cfg, spec.alg, spec.seed, spec.name
    run = RunDir(spec.run_dir)
    started = time.perf_counter()
    status = run.status()
    if status and status.get("status") == "completed":
        reporter.message(f"{name}: already completed, skipped")
        reporter.run_finished(name, "completed", status.get("step", cfg.num_steps))
        return RunResult(alg.name, seed, "completed", status.get("step", cfg.num_steps), evals=run.evals())
    run.write_config(results.run_config_record(cfg, alg, seed, spec.base))
    start_step, checkpoint = run.resume_point()
    evals = run.rewind(start_step)
    run.set_status("running", start_step)
    if checkpoint is not None:
        reporter.message(f"{name}: resuming from step {start_step}")
    reporter.run_started(name, start_step)
    step = start_step

    def stopped(status: str, message: str, **extra) -> RunResult:
        resume = run.resume_point()[0]
        run.set_status(status, resume, message, **extra)
        return RunResult(alg.name, seed, status, resume, message, evals, time.perf_counter() - started)

    try:
        task = load_task(cfg)
        trainer = LocalTrainer(cfg, alg, seed, spec.base, task, resume_from=checkpoint)
        done_evals = {(row["step"], row["dataset"]) for row in evals}
        eval_max_new = cfg.eval_max_response_length or cfg.max_response_length
        sampling = {"temperature": cfg.eval_temperature, "top_p": cfg.eval_top_p,
                    "max_new_tokens": eval_max_new, "seed": seed,
                    "template": cfg.prompt_template if cfg.model else "tiny"}

        def evaluate(step: int) -> None:
            for dataset, problems in task.evals.items():
                if (step, dataset) in done_evals:
                    continue
                reporter.run_eval(name, dataset, step)
                shared = run.shared_base_eval(dataset) if step == 0 else None
                if shared is not None:
                    rows, summary = read_eval_dir(shared)
                else:
                    rows = trainer.evaluate(problems, k=cfg.eval_k, temperature=cfg.eval_temperature,
                                            top_p=cfg.eval_top_p, max_new_tokens=eval_max_new,
                                            seed_parts=(seed, dataset))
                    checkpoint = spec.base if step == 0 else str(run.checkpoint(step))
                    summary = summarize_generations(rows, dataset=dataset, checkpoint=checkpoint,
                                                    k=cfg.eval_k, sampling=sampling)
                evals.append(run.write_eval(step, dataset, rows, summary))
                done_evals.add((step, dataset))

        if start_step == 0:
            evaluate(0)
            pretrain = trainer.pretrain_critic()  # value pretraining (with a critic): fresh runs only
            if pretrain:
                run.write_value_pretrain(pretrain)
        for step in range(start_step + 1, cfg.num_steps + 1):
            metrics = trainer.train_step(step)
            bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
            if bad:
                raise NonFiniteLossError(f"non-finite metrics {bad}")
            run.append_metrics(metrics)
            last = step == cfg.num_steps
            if last or (cfg.eval_every and step % cfg.eval_every == 0):
                evaluate(step)
            if last or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
                trainer.save_checkpoint(run.checkpoint(step), step)
                run.prune_checkpoints(cfg.keep_checkpoints)
                run.set_status("running", step)
            reporter.run_step(name, step, metrics)
    except KeyboardInterrupt:
        result = stopped("interrupted", f"interrupted during step {step}")
        reporter.run_finished(name, "interrupted", result.step)
        raise
    except NonFiniteLossError as e:
        resume = run.resume_point()[0]
        kept = f"checkpoints/step-{resume}" if resume else "the base checkpoint (no checkpoint yet)"
        result = stopped("failed", f"step {step}: {e}; stopped this run; last good checkpoint: {kept}")
    except Exception as e:  # a bug, out of memory, a broken file: this run fails, the others go on
        result = stopped("failed", f"step {step}: {type(e).__name__}: {e}", traceback=traceback.format_exc())
    else:
        run.set_status("completed", cfg.num_steps)
        if cfg.keep_checkpoints:
            run.drop_resume_state(cfg.num_steps)
        result = RunResult(alg.name, seed, "completed", cfg.num_steps, None, evals,
                           time.perf_counter() - started)
    if result.status == "failed":
        reporter.message(f"{name} failed: {result.error}")
    reporter.run_finished(name, result.status, result.step)
    return result


def run_lost(spec: RunSpec, reason: str) -> RunResult:
    """Record a run whose process died (the driver writes its status, the worker no longer can)."""
    run = RunDir(spec.run_dir)
    resume = run.resume_point()[0]
    message = f"{reason}; last checkpoint: step {resume}"
    run.set_status("failed", resume, message)
    return RunResult(spec.alg.name, spec.seed, "failed", resume, message, run.evals())


def mark_interrupted(spec: RunSpec) -> None:
    """A run left "running" by a process that was stopped from outside."""
    run = RunDir(spec.run_dir)
    status = run.status()
    if status and status.get("status") == "running":
        resume = run.resume_point()[0]
        run.set_status("interrupted", resume, f"interrupted during step {run.last_logged_step() + 1}")


# -- the matrix ---------------------------------------------------------------------------------------


def run_matrix(cfg: RunConfig, *, reporter: Reporter | None = None, command: list[str] | None = None,
               execution: Execution = Execution()) -> tuple[Path, list[RunResult]]:
    """Run every algorithm x seed of `cfg`; returns (results/<run>/, one result per run)."""
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
                from fipo_bench.backends.local.ray_dispatch import run_on_ray

                ray_results = run_on_ray(pending, reporter, plan)
                outcomes.update(zip([s.name for s in pending], ray_results, strict=True))
        except KeyboardInterrupt:
            for spec in specs:
                mark_interrupted(spec)
            results.finish_matrix(root, meta, "interrupted")
            raise MatrixInterrupted(root, [_where(spec) for spec in specs]) from None
        except BaseException:
            results.finish_matrix(root, meta, "failed")
            raise
        ordered = [outcomes[s.name] for s in specs]
        failed = any(r.status == "failed" for r in ordered)
        results.finish_matrix(root, meta, "failed" if failed else "completed")
    return root, ordered


def _where(spec: RunSpec) -> str:
    status = RunDir(spec.run_dir).status()
    if status is None:
        return f"{spec.name}: not started"
    if status["status"] in ("completed", "failed"):
        return f"{spec.name}: {status['status']}"
    stopped = status.get("error") or status["status"]
    return f"{spec.name}: {stopped}, resumes after step {status.get('step', 0)}"
