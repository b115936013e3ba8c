"""`fipo-bench run --backend openrlhf`: every algorithm x seed as one OpenRLHF job, results in our layout.

For each run (results/README.md): config.json, then one driver process (driver.py: Ray with our
plugin, then OpenRLHF's trainer) with the command line of translate.py, then metrics.jsonl from
OpenRLHF's tensorboard scalars (metrics.py), checkpoints/step-<N>/ from its HF checkpoints, and
`fipo-bench eval` of the base model (step 0) and of each checkpoint -> eval/ and evals.jsonl.
Every command is built, and every setting checked, before the first job starts; `dry_run` prints
them (commands, environment, plugin settings) and needs neither a GPU nor ray nor openrlhf.
Resume: running the same command again skips completed runs and restarts the others from
OpenRLHF's own checkpoint (`--ckpt.load_enable`).
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fipo_bench import results
from fipo_bench.backends.base import (
    Backend,
    Execution,
    MatrixInterrupted,
    MatrixResult,
    Plan,
    Reporter,
    RunResult,
)
from fipo_bench.backends.openrlhf import translate
from fipo_bench.backends.openrlhf.driver import runtime_env
from fipo_bench.config import ConfigError
from fipo_bench.io import json_safe, read_json, write_jsonl

TINY_PLACEHOLDER = "<built-in tiny base checkpoint, trained at launch>"
_HF_CHECKPOINT = re.compile(r"global_step(\d+)_hf")


@dataclass
class TrainingData:
    """What every run of the matrix shares: the base model, the prompt rows and the evaluation sets."""

    model: str
    rows: list[dict]  # {"prompt": text given to the model, "answer": gold}
    evals: dict[str, tuple[str, str]]  # name -> (dataset argument of `fipo-bench eval`, prompt template)
    eval_files: dict[str, list[dict]] = field(default_factory=dict)  # files to write before evaluating
    reward_task: str = "math"
    max_positions: int | None = None  # the model's context length, where it is known without loading it


@dataclass
class Job:
    algo: str
    seed: int
    alg: object
    run_dir: Path
    argv: list[str]
    env: dict[str, str]

    def command(self, ray_address: str | None) -> list[str]:
        address = ["--ray-address", ray_address] if ray_address else []
        return [sys.executable, "-m", "fipo_bench.backends.openrlhf.driver", *address, "--", *self.argv]


def training_data(config, root: Path, *, dry_run: bool) -> TrainingData:
    """Prompts and evaluation sets; the built-in model is trained only for a real launch. A dry run makes
    the same checks of the task, model directory and dataset as a real launch, short of loading a model."""
    from fipo_bench.tasks import load_task, prepare_base, tiny_recipe

    max_positions = tiny_recipe(config).max_length if config.model is None else _max_positions(config.model)
    if dry_run and config.model is not None:  # no tokenizer (it may need the network): unfiltered rows
        from fipo_bench.evals import load_dataset

        try:
            train = load_dataset(config.dataset, config.data_dir, limit=config.num_train_problems or None)
        except (OSError, ValueError, KeyError, ImportError) as e:
            raise ConfigError(
                f"config field 'dataset': {e} (a local .jsonl/.parquet file of problem/answer rows works "
                f"offline: --dataset FILE)"
            ) from None
        model, tests, prompt_text = config.model, [], str
    else:  # the built-in task needs no model to list its problems, so a dry run builds it too
        model = TINY_PLACEHOLDER if dry_run else str(prepare_base(config))
        task = load_task(config)
        train, prompt_text, tests = task.train, task.prompt_text, task.evals.get("tiny", [])
    rows = [{"prompt": prompt_text(p.problem), "answer": p.answer} for p in train]
    if config.model is None:
        tiny_file = root / "openrlhf" / "eval-tiny.jsonl"
        return TrainingData(
            model,
            rows,
            {"tiny": (str(tiny_file), "raw")},
            {str(tiny_file): [{"id": p.id, "problem": p.problem, "answer": p.answer} for p in tests]},
            reward_task="tiny",
            max_positions=max_positions,
        )
    evals = {name: (name, config.prompt_template) for name in config.eval_datasets}
    return TrainingData(model, rows, evals, max_positions=max_positions)


def _max_positions(model: str) -> int | None:
    """max_position_embeddings of a local HF model directory; None for a Hub id (not fetched here)."""
    path = Path(model).expanduser()
    looks_local = model.startswith((".", "/", "~")) or path.exists()
    if looks_local and not path.is_dir():
        raise ConfigError(
            f"config field 'model': {model} is not a directory (expected an HF model directory or a hub id)"
        )
    if not (path / "config.json").is_file():
        return None
    value = read_json(path / "config.json").get("max_position_embeddings")
    return value if isinstance(value, int) else None


def check_algorithm(config, alg) -> None:
    """The algorithm's own check of its reward shaping against this run's length limit, as the local
    backend makes it (ValueError naming the hyperparameter); inside OpenRLHF it fails ~30 s into the job."""
    import torch

    alg.shape_rewards(torch.zeros(1), torch.ones(1), config.max_response_length)


def check_lengths(config, max_positions: int | None) -> None:
    total = config.max_prompt_length + config.max_response_length
    if max_positions is not None and total > max_positions:
        raise ConfigError(
            f"config field 'max_response_length': max_prompt_length + max_response_length = {total} exceeds "
            f"the model's {max_positions} positions (vLLM refuses to start such an engine); lower them to fit"
        )


def plan_jobs(config, root: Path, data: TrainingData, layout: translate.Layout) -> list[Job]:
    """Every job's command line and environment; raises ConfigError for anything OpenRLHF cannot run."""
    from fipo_bench.algorithms import get_algorithm
    from fipo_bench.backends.openrlhf import reward

    check_lengths(config, data.max_positions)
    prompts = root / "openrlhf" / "prompts.jsonl"
    jobs = []
    for seed in config.seeds:
        for algo in config.algos:
            try:
                alg = get_algorithm(algo, **config.algo_overrides.get(algo, {}))
                check_algorithm(config, alg)
            except (KeyError, TypeError, ValueError) as e:
                raise ConfigError(f"config field 'algos' / 'algo_overrides.{algo}': {e}") from None
            try:
                run_dir = root / results.run_dir_name(algo, seed)
                paths = translate.RunPaths(run_dir, Path(reward.__file__).resolve(), prompts)
                argv = translate.openrlhf_args(
                    config, alg, seed, paths, layout, model=data.model, num_prompts=len(data.rows)
                )
            except (KeyError, TypeError, ValueError) as e:
                raise ConfigError(f"backend openrlhf, algorithm {algo!r}: {e}") from None
            env = translate.plugin_env(config, alg, data.reward_task)
            env[translate.ENV_START_STEP] = str(last_checkpoint_step(run_dir))
            jobs.append(Job(algo, seed, alg, run_dir, argv, env))
    return jobs


def eval_command(config, checkpoint: str, dataset: str, template: str, seed: int, out: Path) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "fipo_bench.cli",
        "eval",
        checkpoint,
        "--dataset",
        dataset,
        "--k",
        str(config.eval_k),
        "--temperature",
        repr(config.eval_temperature),
        "--top-p",
        repr(config.eval_top_p),
        "--max-new-tokens",
        str(config.eval_max_response_length or config.max_response_length),
        "--seed",
        str(seed),
        "--template",
        template,
        "--out",
        str(out),
    ]
    if config.data_dir:
        command += ["--data-dir", config.data_dir]
    if config.eval_limit:
        command += ["--limit", str(config.eval_limit)]
    return command


def eval_steps(config) -> list[int]:
    """Steps evaluated: 0 (the base model), every eval_every, and the last."""
    every = range(config.eval_every, config.num_steps, config.eval_every) if config.eval_every else []
    return [0, *every, config.num_steps]


def last_checkpoint_step(run_dir: Path) -> int:
    """Rollout steps done according to OpenRLHF's newest checkpoint tag (global_step<N>), else 0."""
    tags = run_dir / "checkpoints" / "_actor"
    steps = [
        int(m.group(1)) for p in tags.glob("global_step*") if (m := re.fullmatch(r"global_step(\d+)", p.name))
    ]
    return max(steps, default=0)


@dataclass
class OpenRLHFPlan(Plan):
    """Every job's command line and environment, checked; `data` is the dry run's when dry_run."""

    config: object
    root: Path
    data: TrainingData
    jobs: list[Job]
    layout: translate.Layout
    ray_address: str | None

    def describe(self) -> str:
        """Every job's environment and OpenRLHF command, then its fipo-bench eval commands."""
        config, root, data = self.config, self.root, self.data
        lines = [f"# fipo-bench run --backend openrlhf: {len(self.jobs)} jobs -> {root}/",
                 f"# layout: {self.layout}; ray: {self.ray_address or 'a local head started by each job'}"]
        unfiltered = " (before dropping prompts over max_prompt_length, which needs the tokenizer)"
        unfiltered = unfiltered if config.model else ""
        prompts = root / "openrlhf" / "prompts.jsonl"
        lines.append(f"# training prompts: {len(data.rows)} rows{unfiltered} -> {prompts}")
        steps = eval_steps(config)
        for job in self.jobs:
            lines.append(f"\n## {job.run_dir.name}: {job.alg.name} {json_safe(job.alg.hyperparameters())}")
            lines += [f"export {key}={shlex.quote(value)}" for key, value in sorted(job.env.items())]
            lines.append(f"# ray.init(runtime_env={json.dumps(runtime_env(job.env))})")
            lines.append(shlex.join(job.command(self.ray_address)))
            lines.append(f"# then fipo-bench eval at steps {steps[:3]} ... {steps[-1]} ({len(steps)}), e.g.:")
            for step in (steps[0], steps[-1]):
                checkpoint = data.model if step == 0 else str(job.run_dir / "checkpoints" / f"step-{step}")
                for name, (dataset, template) in data.evals.items():
                    out = job.run_dir / "eval" / name / f"step-{step}"
                    evaluate = eval_command(config, checkpoint, dataset, template, job.seed, out)
                    lines.append(shlex.join(evaluate))
        lines.append(f"run directory: {root}")
        return "\n".join(lines)


def make_plan(config, *, dry_run: bool, ray_address: str | None) -> OpenRLHFPlan:
    """Every check of a launch; a dry run trains nothing (the built-in base model is a placeholder)."""
    root = results.matrix_dir(config)  # absolute: Ray workers (other nodes too) have their own directory
    try:
        layout = translate.Layout.from_env()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    data = training_data(config, root, dry_run=dry_run)
    return OpenRLHFPlan(config, root, data, plan_jobs(config, root, data, layout), layout, ray_address)


class OpenRLHFBackend(Backend):
    """`--backend openrlhf`: one OpenRLHF job per algorithm x seed (`launch`), behind the backend contract.
    Of `Execution` it reads `ray_address`; progress goes to each job's log, not to the reporter."""

    name = "openrlhf"

    def plan(self, config, execution: Execution) -> OpenRLHFPlan:
        return make_plan(config, dry_run=True, ray_address=execution.ray_address)

    def run(self, config, execution: Execution, *, reporter: Reporter | None = None,
            command: list[str] | None = None) -> MatrixResult:
        root = launch(config, ray_address=execution.ray_address, command=command)
        runs = []
        for seed in config.seeds:
            for algo in config.algos:
                run = results.RunDir(root / results.run_dir_name(algo, seed))
                status = run.status() or {"status": "failed", "step": 0, "error": "no status.json"}
                runs.append(RunResult(algo, seed, status["status"], status["step"], status.get("error"),
                                      run.evals()))
        return MatrixResult(root, runs)


def launch(config, *, ray_address: str | None = None, command: list[str] | None = None) -> Path:
    """Run every algorithm x seed of `config` on OpenRLHF; returns results/<run>/. `command` is recorded
    in run.json (default sys.argv). (The dry run is the backend's plan: OpenRLHFPlan.describe.)"""
    prepared = make_plan(config, dry_run=False, ray_address=ray_address)
    root, data, jobs = prepared.root, prepared.data, prepared.jobs
    with results.locked(root):  # a second launch of the same run is refused (it names this process)
        meta = results.start_matrix(root, config, command=command if command is not None else sys.argv,
                                    backend="openrlhf")
        write_jsonl(root / "openrlhf" / "prompts.jsonl", data.rows)
        for path, rows in data.eval_files.items():
            write_jsonl(Path(path), rows)
        try:
            statuses = [
                run_job(config, job, data, ray_address,
                        results.run_config_record(config, job.alg, job.seed, data.model))
                for job in jobs
            ]
        except KeyboardInterrupt:  # Ctrl-C also stops the job's process group; the same command resumes
            results.finish_matrix(root, meta, "interrupted")
            raise MatrixInterrupted(root, [mark_interrupted(job) for job in jobs]) from None
        failed = any(s != "completed" for s in statuses)
        results.finish_matrix(root, meta, "failed" if failed else "completed")
    return root


def mark_interrupted(job: Job) -> str:
    """Mark a job that Ctrl-C left "running" as interrupted; where the job stopped, in a line."""
    run, name = results.RunDir(job.run_dir), job.run_dir.name
    status = run.status()
    if status is None:
        return f"{name}: not started"
    if status["status"] != "running":
        return f"{name}: {status['status']}"
    step = last_checkpoint_step(job.run_dir)
    run.set_status("interrupted", step, "interrupted (Ctrl-C)")
    return f"{name}: interrupted, resumes after step {step}"


def run_job(config, job: Job, data: TrainingData, ray_address: str | None, record: dict) -> str:
    """Train, collect and evaluate one algorithm x seed; returns its final status."""
    from fipo_bench.backends.openrlhf.metrics import metrics_rows

    run = results.RunDir(job.run_dir)
    if (run.status() or {}).get("status") == "completed":
        return "completed"
    command = job.command(ray_address)
    run.write_config({**record, "backend": "openrlhf", "openrlhf_command": command, "plugin_env": job.env})
    run.set_status("running", last_checkpoint_step(job.run_dir))
    log = job.run_dir / "openrlhf" / "train.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as out:
        result = subprocess.run(command, env={**os.environ, **job.env}, stdout=out, stderr=subprocess.STDOUT)
    tensorboard = job.run_dir / "openrlhf" / "tensorboard"
    rows = metrics_rows(tensorboard, config.samples_per_prompt) if tensorboard.exists() else []
    run.write_metrics(rows)
    bad = [row["step"] for row in rows if not all(_finite(v) for v in row.values())]
    last = rows[-1]["step"] if rows else 0
    if result.returncode != 0 or bad:
        error = (
            f"OpenRLHF exited with status {result.returncode}{failure_reason(log)} (log: {log})"
            if result.returncode
            else f"non-finite metrics at steps {bad}"
        )
        print(f"{job.run_dir.name} failed: {error}", file=sys.stderr)
        run.set_status("failed", last, error)
        return "failed"
    collect_checkpoints(job.run_dir, last)
    try:
        evaluate(config, job, data)
    except subprocess.CalledProcessError as e:
        error = f"evaluation failed: {shlex.join(e.cmd)} exited with status {e.returncode}"
        run.set_status("failed", last, error)
        return "failed"
    run.set_status("completed", last)
    return "completed"


_ERROR_LINE = re.compile(r"^(error: .*|[A-Za-z_.]*(Error|Exception): .*)$")


def failure_reason(log: Path) -> str:
    """": <the log's last error line>" (the driver's own `error:` or a Python exception), else ""."""
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()]
    errors = [line for line in lines if _ERROR_LINE.match(line)]
    return f": {errors[-1]}" if errors else ""


def collect_checkpoints(run_dir: Path, last_step: int) -> None:
    """OpenRLHF's checkpoints/global_step<N>_hf -> checkpoints/step-<N>; its final model -> the last step."""
    checkpoints = run_dir / "checkpoints"
    for path in checkpoints.glob("global_step*_hf"):
        step = int(_HF_CHECKPOINT.fullmatch(path.name).group(1))
        target = checkpoints / f"step-{step}"
        if not target.exists():
            os.replace(path, target)
    final, last = checkpoints / "final", checkpoints / f"step-{last_step}"
    if final.is_dir() and not last.exists():
        os.replace(final, last)
    elif final.is_dir():
        shutil.rmtree(final)


def evaluate(config, job: Job, data: TrainingData) -> None:
    """`fipo-bench eval` of each checkpoint still missing from evals.jsonl; one line per (step, dataset).
    The base model (step 0) is evaluated once per seed: the seed's other runs reuse it."""
    from fipo_bench.evals.io import read_eval_dir

    run = results.RunDir(job.run_dir)
    done = {(row["step"], row["dataset"]) for row in run.evals()}
    for step in eval_steps(config):
        checkpoint = data.model if step == 0 else str(job.run_dir / "checkpoints" / f"step-{step}")
        for name, (dataset, template) in data.evals.items():
            if (step, name) in done or (step and not Path(checkpoint).is_dir()):
                continue
            out = job.run_dir / "eval" / name / f"step-{step}"
            done_elsewhere = (
                [
                    path.parent
                    for path in job.run_dir.parent.glob(f"*-seed{job.seed}/eval/{name}/step-0/summary.json")
                ]
                if step == 0
                else []
            )
            if done_elsewhere and not out.exists():
                shutil.copytree(done_elsewhere[0], out)
            elif not (out / "summary.json").exists():
                subprocess.run(eval_command(config, checkpoint, dataset, template, job.seed, out), check=True)
            rows, summary = read_eval_dir(out)
            run.write_eval(step, name, rows, summary)


def _finite(value) -> bool:
    return not isinstance(value, float) or math.isfinite(value)
