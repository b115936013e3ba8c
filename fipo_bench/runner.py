"""The algorithm x seed matrix of `fipo-bench run --backend local`, with resumable results.

Layout and schemas: results/README.md. Fairness: every algorithm x seed starts from the same base
checkpoint; prompts and sampling depend only on (seed, step) (fipo_bench.backends.local), so all
algorithms see the same prompt order and the same first rollout for a seed.

Resume: a run directory holds checkpoints/step-<N>/ (weights, optimizer, schedule). Running the same
command again skips completed runs, and restarts an unfinished one from its newest checkpoint after
cutting metrics.jsonl/evals.jsonl back to that step; since nothing else carries state between steps,
the resumed run ends with the numbers of an uninterrupted one. A non-finite loss marks that run
"failed" (its checkpoints stay) and the matrix goes on.
"""

from __future__ import annotations

import importlib.metadata
import math
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fipo_bench.config import ConfigError, RunConfig
from fipo_bench.io import append_jsonl, iter_jsonl, json_safe, read_json, write_json, write_jsonl

RUN_STATUSES = ("running", "completed", "failed")
# Per-run config.json keys that may differ between an interrupted run and its resumption.
_NOT_COMPARED = ("base_checkpoint",)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_dir_name(algo: str, seed: int) -> str:
    return f"{algo}-seed{seed}"


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("fipo-bench", "torch", "transformers", "tokenizers", "math-verify", "numpy"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def run_config_record(cfg: RunConfig, alg, seed: int, base_checkpoint: str) -> dict[str, Any]:
    """config.json of one run: the algorithm with every hyperparameter, the seed, and the trainer settings."""
    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("algos", "seeds", "algo_overrides")}
    return {"algo": alg.name, "seed": seed, "hyperparameters": json_safe(alg.hyperparameters()),
            "base_checkpoint": str(base_checkpoint), **settings}


# -- data -----------------------------------------------------------------------------------------


def prepare_task(cfg: RunConfig, progress=None):
    """(base checkpoint, TaskData) for the built-in task or a math dataset."""
    from fipo_bench.backends.local import TaskData, Verdict

    if cfg.model is None:
        from fipo_bench.tiny import TinyRecipe, TinyTask, ensure_base_checkpoint

        try:
            task = TinyTask(**cfg.tiny_task)
            recipe = TinyRecipe(task=task, **cfg.tiny_recipe)
        except TypeError as e:
            raise ConfigError(f"config field 'tiny_task' / 'tiny_recipe': {e}") from None
        base = ensure_base_checkpoint(recipe, cfg.base_cache_dir, progress=progress)
        limit = cfg.eval_limit or None
        tests = task.test_problems[:limit]

        def check(responses: list[str], golds: list[str]) -> list[Verdict]:
            return [_verdict(task.check(r, g)) for r, g in zip(responses, golds, strict=True)]

        train = task.train_problems(cfg.num_train_problems or 100_000)
        return base, TaskData(train=train, evals={"tiny": tests}, prompt_text=lambda text: text, check=check)

    from fipo_bench import models
    from fipo_bench.evals import check_answers, format_prompt, load_dataset
    from fipo_bench.evals.runner import validate_checkpoint

    try:
        validate_checkpoint(cfg.model)  # a model directory, or a Hub id that loads now
    except (OSError, ValueError, ImportError) as e:
        raise ConfigError(f"config field 'model': {e}") from None
    try:
        base = models.resolve_model(cfg.model, cfg.base_cache_dir)  # a GGUF file: its converted HF dir
        tokenizer = models.load_tokenizer(base)
    except (OSError, ValueError, ImportError) as e:
        raise ConfigError(f"config field 'model': {e}") from None
    try:
        train = load_dataset(cfg.dataset, cfg.data_dir, limit=cfg.num_train_problems or None)
    except (OSError, ValueError, KeyError, ImportError) as e:
        raise ConfigError(f"config field 'dataset': {e}") from None

    def prompt_text(text: str) -> str:
        return format_prompt(text, cfg.prompt_template, tokenizer)

    def prompt_tokens(text: str) -> int:
        return len(models.encode_prompt(tokenizer, prompt_text(text)))

    fits = [p for p in train if prompt_tokens(p.problem) <= cfg.max_prompt_length]
    if not fits:
        raise ConfigError(f"config field 'max_prompt_length': no prompt of {cfg.dataset} fits in "
                          f"{cfg.max_prompt_length} tokens")
    if len(fits) < len(train):
        print(f"note: dropped {len(train) - len(fits)} of {len(train)} prompts longer than "
              f"max_prompt_length={cfg.max_prompt_length}")
    limit = cfg.eval_limit or None
    try:
        evals = {dataset_label(name): load_dataset(name, cfg.data_dir, limit=limit)
                 for name in cfg.eval_datasets}
    except (OSError, ValueError, KeyError, ImportError) as e:
        raise ConfigError(f"config field 'eval_datasets': {e}") from None

    def check(responses: list[str], golds: list[str]) -> list[Verdict]:
        return [_verdict(r) for r in check_answers(responses, golds)]

    return base, TaskData(train=fits, evals=evals, prompt_text=prompt_text, check=check)


def dataset_label(name: str) -> str:
    """The directory name of an eval dataset: its name, or a file's stem ("data/x.jsonl" -> "x")."""
    path = Path(name)
    return path.stem if path.suffix in (".jsonl", ".json", ".parquet") or len(path.parts) > 1 else name


def _verdict(result) -> Any:
    from fipo_bench.backends.local import Verdict

    return Verdict(verdict=result.verdict, extracted=result.extracted, correct=bool(result.correct))


# -- eval files -----------------------------------------------------------------------------------


def summarize(rows: list[dict], *, dataset: str, checkpoint: str, k: int, sampling: dict) -> dict:
    try:
        from fipo_bench.evals.metrics import summarize_generations
    except ImportError:  # TEMPORARY until issue 4's metrics land: headline numbers only
        lengths = sorted(r["num_tokens"] for r in rows)
        return {"dataset": dataset, "checkpoint": checkpoint, "k": k, "num_samples": len(rows),
                "avg_at_k": sum(r["correct"] for r in rows) / len(rows),
                "response_length": {"mean": sum(lengths) / len(lengths),
                                    "median": lengths[len(lengths) // 2]},
                "truncation_rate": sum(r["truncated"] for r in rows) / len(rows), "sampling": sampling}
    return summarize_generations(rows, dataset=dataset, checkpoint=checkpoint, k=k, sampling=sampling)


def write_eval(run_dir: Path, step: int, dataset: str, rows: list[dict], summary: dict) -> dict:
    """eval/<dataset>/step-<N>/ files; returns the evals.jsonl line."""
    out_dir = run_dir / "eval" / dataset / f"step-{step}"
    try:
        from fipo_bench.evals.io import write_eval_dir
    except ImportError:  # TEMPORARY until issue 4's writer lands
        write_jsonl(out_dir / "generations.jsonl", rows)
        write_json(out_dir / "summary.json", json_safe(summary))
    else:
        write_eval_dir(out_dir, rows, summary)
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


# -- one run --------------------------------------------------------------------------------------


@dataclass
class RunResult:
    algo: str
    seed: int
    status: str
    step: int
    error: str | None = None
    evals: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0


class Reporter:
    """Progress display hooks (the runner works without one)."""

    def phase(self, text: str) -> None: ...
    def start_run(self, name: str, total: int, done: int) -> None: ...
    def advance_run(self, step: int, metrics: dict) -> None: ...
    def start_eval(self, dataset: str, step: int) -> None: ...
    def end_eval(self) -> None: ...
    def message(self, text: str) -> None: ...


def _truncate_jsonl(path: Path, last_step: int) -> list[dict]:
    """Keep the lines with step <= last_step (and drop a partial tail); returns them."""
    if not path.exists():
        return []
    rows = [row for _, row in iter_jsonl(path)
            if isinstance(row.get("step"), int) and row["step"] <= last_step]
    write_jsonl(path, rows)
    return rows


def run_one(cfg: RunConfig, algo: str, seed: int, base_checkpoint, task, run_dir: Path,
            reporter: Reporter, eval_cache: dict) -> RunResult:
    """Train (or resume, or skip) one algorithm x seed; never raises for a non-finite loss."""
    from fipo_bench.algorithms import get_algorithm
    from fipo_bench.backends.local import LocalTrainer, NonFiniteLossError, latest_checkpoint

    started = time.perf_counter()
    alg = get_algorithm(algo, **cfg.algo_overrides.get(algo, {}))
    record = run_config_record(cfg, alg, seed, str(base_checkpoint))
    status_path = run_dir / "status.json"
    config_path = run_dir / "config.json"
    if config_path.exists():
        old = read_json(config_path)
        diff = sorted(k for k in set(old) | set(record)
                      if k not in _NOT_COMPARED and old.get(k) != json_safe(record.get(k)))
        if diff:
            raise ConfigError(f"{config_path}: this run was started with a different config (fields {diff}); "
                              "use --run-name to start a new run, or delete the directory")
    if status_path.exists():
        status = read_json(status_path)
        if status.get("status") == "completed":
            evals_path = run_dir / "evals.jsonl"
            evals = [row for _, row in iter_jsonl(evals_path)] if evals_path.exists() else []
            reporter.message(f"{run_dir.name}: already completed, skipped")
            return RunResult(algo, seed, "completed", status.get("step", cfg.num_steps), evals=evals)
    write_json(config_path, json_safe(record))

    latest = latest_checkpoint(run_dir / "checkpoints")
    start_step = latest[0] if latest else 0
    _truncate_jsonl(run_dir / "metrics.jsonl", start_step)
    evals = _truncate_jsonl(run_dir / "evals.jsonl", start_step)
    write_json(status_path, {"status": "running", "step": start_step, "error": None})
    if latest:
        reporter.message(f"{run_dir.name}: resuming from step {start_step}")

    trainer = LocalTrainer(cfg, alg, seed, base_checkpoint, task, resume_from=latest[1] if latest else None)
    done_evals = {(row["step"], row["dataset"]) for row in evals}
    eval_max_new = cfg.eval_max_response_length or cfg.max_response_length
    sampling = {"temperature": cfg.eval_temperature, "top_p": cfg.eval_top_p, "max_new_tokens": eval_max_new,
                "seed": seed, "template": cfg.prompt_template if cfg.model else "tiny"}

    def evaluate(step: int) -> None:
        for dataset, problems in task.evals.items():
            if (step, dataset) in done_evals:
                continue
            reporter.start_eval(dataset, step)
            # The base model's evaluation is the same for every algorithm of a seed: computed once.
            key = (seed, dataset) if step == 0 else None
            rows = eval_cache.get(key) if key else None
            if rows is None:
                rows = trainer.evaluate(problems, k=cfg.eval_k, temperature=cfg.eval_temperature,
                                        top_p=cfg.eval_top_p, max_new_tokens=eval_max_new,
                                        seed_parts=(seed, dataset))
                if key:
                    eval_cache[key] = rows
            checkpoint = str(base_checkpoint) if step == 0 else str(run_dir / "checkpoints" / f"step-{step}")
            summary = summarize(rows, dataset=dataset, checkpoint=checkpoint, k=cfg.eval_k, sampling=sampling)
            line = write_eval(run_dir, step, dataset, rows, summary)
            append_jsonl(run_dir / "evals.jsonl", line)
            evals.append(line)
            done_evals.add((step, dataset))
            reporter.end_eval()

    reporter.start_run(f"{alg.name} seed {seed}", cfg.num_steps, start_step)
    step = start_step
    try:
        if start_step == 0:
            evaluate(0)
        for step in range(start_step + 1, cfg.num_steps + 1):
            metrics = trainer.train_step(step)
            bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
            if bad:
                raise NonFiniteLossError(f"non-finite metrics {bad}")
            append_jsonl(run_dir / "metrics.jsonl", json_safe(metrics))
            last = step == cfg.num_steps
            if last or (cfg.eval_every and step % cfg.eval_every == 0):
                evaluate(step)
            if last or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
                trainer.save_checkpoint(run_dir / "checkpoints" / f"step-{step}", step)
                write_json(status_path, {"status": "running", "step": step, "error": None})
            reporter.advance_run(step, metrics)
    except NonFiniteLossError as e:
        latest = latest_checkpoint(run_dir / "checkpoints")
        kept = f"checkpoints/step-{latest[0]}" if latest else "the base checkpoint (no checkpoint yet)"
        message = f"step {step}: {e}; stopped this run; last good checkpoint: {kept}"
        write_json(status_path, {"status": "failed", "step": latest[0] if latest else 0, "error": message})
        reporter.message(f"[red]{run_dir.name} failed[/red]: {message}")
        return RunResult(algo, seed, "failed", step, message, evals, time.perf_counter() - started)
    except Exception as e:  # a bug or an environment problem: record it, then stop the matrix
        latest = latest_checkpoint(run_dir / "checkpoints")
        write_json(status_path, {"status": "failed", "step": latest[0] if latest else 0,
                                 "error": f"step {step}: {type(e).__name__}: {e}"})
        raise
    write_json(status_path, {"status": "completed", "step": cfg.num_steps, "error": None})
    return RunResult(algo, seed, "completed", cfg.num_steps, None, evals, time.perf_counter() - started)


# -- the matrix -----------------------------------------------------------------------------------


def run_matrix(cfg: RunConfig, *, reporter: Reporter | None = None, command: list[str] | None = None) -> Path:
    """Run every algorithm x seed of `cfg`; returns results/<run>/."""
    import torch
    from transformers.utils import logging as hf_logging

    from fipo_bench.algorithms import get_algorithm

    hf_logging.disable_progress_bar()  # the per-checkpoint "Loading weights" bars drown our own
    reporter = reporter or Reporter()
    run_name = cfg.run_name or cfg.default_run_name()
    root = Path(cfg.output_dir) / run_name
    # Every algorithm is built, its overrides validated and its reward shaping tried on this run's
    # length limit, before any training starts.
    for algo in cfg.algos:
        try:
            alg = get_algorithm(algo, **cfg.algo_overrides.get(algo, {}))
            alg.shape_rewards(torch.zeros(1), torch.ones(1), cfg.max_response_length)
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"config field 'algos' / 'algo_overrides.{algo}': {e}") from None

    reporter.phase("warm-up" if cfg.model is None else "loading data")
    base, task = prepare_task(cfg, progress=getattr(reporter, "warmup_progress", None))

    run_json = root / "run.json"
    previous = read_json(run_json) if run_json.exists() else {}
    meta = {
        "command": shlex.join(command if command is not None else sys.argv),
        "git_commit": git_commit(),
        "package_versions": package_versions(),
        "backend": cfg.backend, "preset": cfg.preset, "algos": list(cfg.algos), "seeds": list(cfg.seeds),
        "status": "running",
        "started_at": previous.get("started_at", _now()),
        "resumed_at": [*previous.get("resumed_at", []), _now()] if previous else [],
        "finished_at": None,
        "config": cfg.to_dict(),
    }
    write_json(run_json, meta)
    results: list[RunResult] = []
    eval_cache: dict = {}
    try:
        for seed in cfg.seeds:
            for algo in cfg.algos:
                results.append(run_one(cfg, algo, seed, base, task, root / run_dir_name(algo, seed), reporter,
                                       eval_cache))
    except Exception:  # a crash (Ctrl-C leaves "running"); either way the same command resumes
        write_json(run_json, {**meta, "status": "failed", "finished_at": _now()})
        raise
    meta.update(status="failed" if any(r.status == "failed" for r in results) else "completed",
                finished_at=_now())
    write_json(run_json, meta)
    reporter.results = results  # for the summary table
    return root
