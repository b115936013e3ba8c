"""One algorithm x seed of the local matrix: train it (or resume it, or skip it) in this process.

`execute` is the whole of a run, the same whether the matrix calls it in its own process or a Ray
worker does (ray_dispatch); it never raises except for Ctrl-C, so one run's failure stays in its run
directory (status.json: message and traceback) and the matrix goes on.
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fipo_bench import results
from fipo_bench.backends.base import Reporter, RunResult
from fipo_bench.config import RunConfig
from fipo_bench.results import RunDir
from fipo_bench.tasks import load_task


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


def where_stopped(spec: RunSpec) -> str:
    status = RunDir(spec.run_dir).status()
    if status is None:
        return f"{spec.name}: not started"
    if status["status"] in ("completed", "failed"):
        return f"{spec.name}: {status['status']}"
    stopped = status.get("error") or status["status"]
    return f"{spec.name}: {stopped}, resumes after step {status.get('step', 0)}"
