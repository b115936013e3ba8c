"""`fipo-bench run` end to end on a micro setting: files and fields, determinism, identical first rollouts,
resume after SIGKILL and Ctrl-C, non-finite losses, a test-only algorithm run through the trainer, the
run-directory lock and repair, dry-run checks, and the parallel matrix on a 2-CPU local Ray (same files as
sequential, a crash that stays in its run, a killed worker that resumes, a killed driver whose workers
stop and whose matrix resumes, the probe of a shared results directory)."""

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fipo_bench.algorithms.base import Algorithm, hyperparameter
from fipo_bench.cli import app
from fipo_bench.io import read_json, read_jsonl
from fipo_bench.registry import register_algorithm
from fipo_bench.results import TIMING_FIELDS, RunDir, lock_holder, locked

# A micro task and model: a 150-step warm-up so that some answers are right and updates do something.
MICRO = [
    "rollout_batch_size=4", "samples_per_prompt=4", "mini_batch_size=2", "max_response_length=20",
    "eval_limit=16", "eval_every=2", "checkpoint_every=1", "num_train_problems=400",
    "tiny_task.max_value=9", "tiny_task.max_terms=3", "tiny_task.test_size=16",
    "tiny_recipe.steps=150", "tiny_recipe.hidden_size=64", "tiny_recipe.num_layers=2",
    "tiny_recipe.num_heads=2", "tiny_recipe.ffn_size=128", "tiny_recipe.max_length=64",
    "tiny_recipe.lr_warmup_steps=10", "tiny_recipe.bf16_autocast=true",  # the recipe the numbers were set on
    "max_gen_batches=3",
]
METRIC_FIELDS = ("step", "accuracy", "reward", "response_length_mean", "response_length_median", "entropy",
                 "clip_frac_high", "clip_frac_low", "kept_groups_frac", "tokens_per_s", "step_time_s", "loss",
                 "grad_norm", "lr")
STEPS = 4
SEQUENTIAL = ("--max-parallel", "1")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "tiny-cache"


def args(out: Path, cache: Path, algos: str, run_name: str, *extra: str) -> list[str]:
    """The micro command; one run after the other in this process unless `extra` says --max-parallel."""
    # Overlong shaping scaled to the 20-token limit for the algorithms that shape.
    shaping = [f"{a}.overlong_buffer=8" for a in algos.split(",") if a in ("dapo", "fipo")]
    sets = [f"--set={s}" for s in [*MICRO, *shaping, f"base_cache_dir={cache}"]]
    parallel = () if "--max-parallel" in extra else SEQUENTIAL
    return ["run", "--preset", "tiny-sums", "--algos", algos, "--steps", str(STEPS), "--output-dir", str(out),
            "--run-name", run_name, "--device", "cpu", *sets, *parallel, *extra]


def invoke(argv: list[str], expect: int = 0):
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == expect, (result.output, result.exception)
    return result


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in rows]


OUTPUT = {}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("results")
    OUTPUT["ref"] = invoke(args(out, cache_dir, "grpo,dapo,fipo", "ref")).output
    return out / "ref"


def test_smoke_run_of_each_algorithm_writes_the_documented_files(reference_run):
    run = read_json(reference_run / "run.json")
    assert run["status"] == "completed" and run["algos"] == ["grpo", "dapo", "fipo"] and run["seeds"] == [0]
    assert {"command", "git_commit", "package_versions", "started_at", "finished_at"} <= set(run)
    for algo in ("grpo", "dapo", "fipo"):
        d = reference_run / f"{algo}-seed0"
        assert read_json(d / "status.json") == {"status": "completed", "step": STEPS, "error": None}
        config = read_json(d / "config.json")
        assert config["algo"] == algo and config["seed"] == 0 and "hyperparameters" in config
        metrics = read_jsonl(d / "metrics.jsonl")
        assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))
        for m in metrics:
            assert set(METRIC_FIELDS) <= set(m), set(METRIC_FIELDS) - set(m)
            for key in ("accuracy", "reward", "response_length_mean", "entropy", "tokens_per_s"):
                assert math.isfinite(m[key])
            assert 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["kept_groups_frac"] <= 1.0
        evals = read_jsonl(d / "evals.jsonl")
        assert [e["step"] for e in evals] == [0, 2, 4] and all(e["dataset"] == "tiny" for e in evals)
        for e in evals:
            assert 0.0 <= e["eval_accuracy"] <= 1.0 and e["eval_response_length"] > 0
            step_dir = d / "eval" / "tiny" / f"step-{e['step']}"
            generations = read_jsonl(step_dir / "generations.jsonl")
            assert len(generations) == 16  # eval_limit problems x eval_k=1
            assert e["eval_accuracy"] == pytest.approx(sum(g["correct"] for g in generations) / 16)
            assert read_json(step_dir / "summary.json")["dataset"] == "tiny"
        # The tiny preset keeps one checkpoint: the final model, without the optimizer state resume needs.
        assert [p.name for p in (d / "checkpoints").iterdir()] == [f"step-{STEPS}"]
        assert (d / "checkpoints" / f"step-{STEPS}" / "config.json").is_file()
        assert not (d / "checkpoints" / f"step-{STEPS}" / "trainer_state.pt").exists()
    # FIPO reports its own metrics next to the documented ones.
    assert "weight_mean" in read_jsonl(reference_run / "fipo-seed0" / "metrics.jsonl")[0]


def test_every_algorithm_sees_the_same_first_rollout_and_base_eval(reference_run):
    algos = ("grpo", "dapo", "fipo")
    first = {a: read_jsonl(reference_run / f"{a}-seed0" / "metrics.jsonl")[0] for a in algos}
    for key in ("accuracy", "response_length_mean", "response_length_median", "entropy", "truncated_frac"):
        assert first["grpo"][key] == first["dapo"][key] == first["fipo"][key], key
    base = {a: read_jsonl(reference_run / f"{a}-seed0" / "eval" / "tiny" / "step-0" / "generations.jsonl")
            for a in ("grpo", "dapo", "fipo")}
    assert base["grpo"] == base["dapo"] == base["fipo"]
    # ...and training then differs (the runs are not copies of each other).
    last = {a: read_jsonl(reference_run / f"{a}-seed0" / "metrics.jsonl")[-1] for a in ("grpo", "fipo")}
    assert last["grpo"]["loss"] != last["fipo"]["loss"]


def test_same_seed_twice_gives_identical_metrics_and_a_rerun_skips(reference_run, cache_dir):
    out = reference_run.parent
    invoke(args(out, cache_dir, "fipo", "again"))
    again = read_jsonl(out / "again" / "fipo-seed0" / "metrics.jsonl")
    assert without_timing(again) == without_timing(read_jsonl(reference_run / "fipo-seed0" / "metrics.jsonl"))
    # Running the finished command again trains nothing and appends nothing.
    before = (out / "again" / "fipo-seed0" / "metrics.jsonl").read_text()
    result = invoke(args(out, cache_dir, "fipo", "again"))
    assert "already completed" in result.output
    assert (out / "again" / "fipo-seed0" / "metrics.jsonl").read_text() == before


def test_sigkill_mid_run_then_rerun_resumes_to_the_same_numbers(reference_run, cache_dir):
    out = reference_run.parent
    argv = [sys.executable, "-m", "fipo_bench.cli", *args(out, cache_dir, "dapo", "killed")]
    metrics = out / "killed" / "dapo-seed0" / "metrics.jsonl"
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if metrics.exists() and metrics.read_text().count("\n") >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    killed_at = metrics.read_text().count("\n")
    assert 2 <= killed_at < STEPS
    assert read_json(out / "killed" / "dapo-seed0" / "status.json")["status"] == "running"

    invoke(args(out, cache_dir, "dapo", "killed"))
    resumed = read_jsonl(metrics)
    assert [m["step"] for m in resumed] == list(range(1, STEPS + 1))  # none missing, none duplicated
    reference = read_jsonl(reference_run / "dapo-seed0" / "metrics.jsonl")
    assert without_timing(resumed) == without_timing(reference)
    evals = read_jsonl(out / "killed" / "dapo-seed0" / "evals.jsonl")
    assert [e["step"] for e in evals] == [0, 2, 4]
    reference_evals = read_jsonl(reference_run / "dapo-seed0" / "evals.jsonl")
    assert [e["eval_accuracy"] for e in evals] == [e["eval_accuracy"] for e in reference_evals]


# -- test-only algorithms, registered here: the trainer must run them with no name-specific code --------

CALLS = {"policy_loss": 0, "with_reference": 0}


@register_algorithm("test-only-reinforce")
@dataclasses.dataclass(frozen=True)
class ReinforceWithKL(Algorithm):
    """Test-only: REINFORCE with a group-mean baseline and a k1 KL term (so it needs a reference)."""

    kl_coef: float = hyperparameter(0.1, "KL weight (test only).")

    @property
    def needs_reference(self) -> bool:
        return True

    def advantages(self, rewards, group_ids, mask=None):
        sums = torch.zeros(int(group_ids.max()) + 1).index_add_(0, group_ids, rewards)
        counts = torch.zeros_like(sums).index_add_(0, group_ids, torch.ones_like(rewards))
        return rewards - (sums / counts)[group_ids]

    def token_loss(self, logp, old_logp, advantages, mask, ref_logp=None):
        CALLS["policy_loss"] += 1
        CALLS["with_reference"] += ref_logp is not None
        mask = mask.float()
        loss = (-advantages[:, None] * torch.exp(logp - old_logp) + self.kl_coef * (logp - ref_logp)) * mask
        return loss, mask, {"test_metric": torch.tensor(1.0)}


@register_algorithm("test-only-nan")
@dataclasses.dataclass(frozen=True)
class NanAfterFourUpdates(ReinforceWithKL):
    """Test-only: a loss that turns NaN on the 5th call (step 3's first update with 2 updates per step)."""

    def token_loss(self, logp, old_logp, advantages, mask, ref_logp=None):
        loss, loss_mask, metrics = super().token_loss(logp, old_logp, advantages, mask, ref_logp)
        CALLS["nan"] = CALLS.get("nan", 0) + 1
        return (loss * float("nan") if CALLS["nan"] >= 5 else loss), loss_mask, metrics


def test_registered_algorithm_runs_and_nan_loss_fails_only_its_run(reference_run, cache_dir):
    out = reference_run.parent
    CALLS.update(policy_loss=0, with_reference=0, nan=0)
    # The NaN algorithm goes first: the other run must still complete after it failed.
    result = invoke(args(out, cache_dir, "test-only-nan,test-only-reinforce", "custom"), expect=1)
    root = out / "custom"
    status = read_json(root / "test-only-nan-seed0" / "status.json")
    assert status["status"] == "failed" and "non-finite" in status["error"]
    assert status["step"] == 2 and "checkpoints/step-2" in status["error"]
    assert (root / "test-only-nan-seed0" / "checkpoints" / "step-2" / "trainer_state.pt").is_file()
    assert not (root / "test-only-nan-seed0" / "checkpoints" / "step-3").exists()
    assert [m["step"] for m in read_jsonl(root / "test-only-nan-seed0" / "metrics.jsonl")] == [1, 2]
    assert "failed" in result.output

    ok = read_jsonl(root / "test-only-reinforce-seed0" / "metrics.jsonl")
    assert [m["step"] for m in ok] == list(range(1, STEPS + 1))
    assert read_json(root / "test-only-reinforce-seed0" / "status.json")["status"] == "completed"
    assert all(m["updates"] == 2 and m["test_metric"] == 1.0 for m in ok)
    assert CALLS["with_reference"] == CALLS["policy_loss"] > 0  # the reference model was used every time
    assert read_json(root / "run.json")["status"] == "failed"


def test_critic_algorithms_pretrain_train_checkpoint_and_resume_to_the_same_numbers(tmp_path, cache_dir):
    """ppo and vapo through the CLI: value pretraining logged before step 1, the critic's metrics every
    step, its weights and optimizer state in each checkpoint, and a resume from step 2 that ends with the
    numbers of the uninterrupted run (without pretraining again)."""
    from fipo_bench.algorithms import CRITIC_METRICS

    out = tmp_path
    sets = ["--set=ppo.value_pretrain_steps=4", "--set=vapo.value_pretrain_steps=2",
            "--set=keep_checkpoints=0"]
    invoke(args(out, cache_dir, "ppo,vapo", "critic", *sets))
    for algo, pretrain_steps in (("ppo", 4), ("vapo", 2)):
        d = out / "critic" / f"{algo}-seed0"
        pretrain = read_jsonl(d / "value_pretrain.jsonl")
        assert [row["step"] for row in pretrain] == list(range(1, pretrain_steps + 1))
        metrics = read_jsonl(d / "metrics.jsonl")
        assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))
        for row in (*pretrain, *metrics):
            assert set(CRITIC_METRICS) | {"critic_grad_norm", "critic_lr"} <= set(row), row
        for step in range(1, STEPS + 1):  # keep_checkpoints=0: every checkpoint, each a resume point
            critic = d / "checkpoints" / f"step-{step}" / "critic"
            assert (critic / "model.safetensors").is_file() and (critic / "optimizer.pt").is_file()
    losses = [row["value_loss"] for row in read_jsonl(out / "critic" / "ppo-seed0" / "value_pretrain.jsonl")]
    assert losses[-1] < losses[0], losses

    # Resume from step 2 as after a crash: the same metrics, and value pretraining is not run again.
    d = out / "critic" / "ppo-seed0"
    reference = read_jsonl(d / "metrics.jsonl")
    pretrain_text = (d / "value_pretrain.jsonl").read_text()
    for step in range(3, STEPS + 1):
        shutil.rmtree(d / "checkpoints" / f"step-{step}")
    RunDir(d).set_status("running", 2)
    invoke(args(out, cache_dir, "ppo,vapo", "critic", *sets))
    assert without_timing(read_jsonl(d / "metrics.jsonl")) == without_timing(reference)
    assert (d / "value_pretrain.jsonl").read_text() == pretrain_text


def test_bad_algorithm_setting_fails_before_anything_is_written(tmp_path):
    # DAPO's overlong buffer must be shorter than the response limit (96 in the tiny preset).
    result = invoke(["run", "--algos", "dapo", "--output-dir", str(tmp_path),
                     "--set", "dapo.overlong_buffer=100"], expect=2)
    assert "algo_overrides.dapo" in result.output and "overlong_buffer" in result.output
    assert list(tmp_path.iterdir()) == []
    result = invoke(["run", "--algos", "nosuchalgo", "--output-dir", str(tmp_path)], expect=2)
    assert "nosuchalgo" in result.output and list(tmp_path.iterdir()) == []


def test_dry_run_prints_the_resolved_config_and_trains_nothing(tmp_path):
    config = tmp_path / "run.json"
    config.write_text('{"num_steps": 7, "eval_k": 3}')
    result = invoke(["run", "--algos", "grpo,fipo", "--seeds", "0,1", "--config", str(config), "--output-dir",
                     str(tmp_path / "out"), "--dry-run"])
    assert '"num_steps": 7' in result.output and '"eval_k": 3' in result.output
    assert "fipo-seed1" in result.output and not (tmp_path / "out").exists()


def test_model_and_dataset_path_uses_the_dataset_checker(reference_run, tmp_path):
    """--model DIR --dataset FILE: prompts from a jsonl file, verdicts from fipo_bench.evals.check_answers."""
    import json

    base = read_json(reference_run / "grpo-seed0" / "config.json")["base_checkpoint"]
    data = tmp_path / "sums.jsonl"
    rows = [{"problem": f"{a}+{b}?", "answer": str(a + b)} for a in range(1, 9) for b in (2, 5)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    invoke(["run", "--algos", "grpo", "--model", base, "--dataset", str(data), "--steps", "1", "--output-dir",
            str(tmp_path / "out"), "--run-name", "file", "--device", "cpu", "--set", "prompt_template=raw",
            "--set", f'eval_datasets=["{data}"]', "--set", "max_response_length=20", "--set",
            "rollout_batch_size=4", "--set", "samples_per_prompt=4", "--set", "mini_batch_size=2", "--set",
            "eval_k=1"])  # (--model without --preset: the small-model preset, 4 samples per problem)
    d = tmp_path / "out" / "file" / "grpo-seed0"
    generations = read_jsonl(d / "eval" / "sums" / "step-1" / "generations.jsonl")
    assert len(generations) == len(rows)
    from fipo_bench.evals import check_answer

    for g in generations:  # the stored verdicts are the dataset checker's (a finished response)
        if not g["truncated"]:
            assert g["correct"] == check_answer(g["response"], g["gold"]).correct
    assert [e["step"] for e in read_jsonl(d / "evals.jsonl")] == [0, 1]


def test_the_last_line_names_report_html(reference_run):
    lines = [line for line in OUTPUT["ref"].splitlines() if line.strip()]
    assert lines[-1] == f"report: {reference_run / 'report' / 'report.html'}"
    assert (reference_run / "report" / "report.html").is_file()


# -- the run directory: lock, repair, Ctrl-C, dry run ---------------------------------------------------


def test_a_second_process_on_the_same_run_directory_is_refused(tmp_path, cache_dir):
    root = tmp_path / "busy"
    with locked(root):  # as a first `fipo-bench run` of the same command holds it
        result = invoke(args(tmp_path, cache_dir, "dapo", "busy"), expect=2)
    assert f"pid {os.getpid()}" in result.output and "in use by another fipo-bench process" in result.output
    assert sorted(p.name for p in root.iterdir()) == [".lock"]  # nothing written, nothing trained


def _copy_run(reference_run: Path, out: Path) -> Path:
    """The reference results under another --output-dir (config.json records the output directory)."""
    root = out / "ref"
    shutil.copytree(reference_run, root)
    for config in root.glob("*/config.json"):
        config.write_text(json.dumps({**json.loads(config.read_text()), "output_dir": str(out)}))
    return root


def test_resume_repairs_repeated_lines_or_names_the_line_to_fix(reference_run, cache_dir, tmp_path):
    root = _copy_run(reference_run, tmp_path)
    metrics = root / "dapo-seed0" / "metrics.jsonl"
    original = metrics.read_text()
    lines = original.splitlines(keepends=True)
    # Steps 2-3 again with other timings: what two processes appending to one run left behind.
    again = [json.dumps({**json.loads(line), "step_time_s": 9.0}) + "\n" for line in lines[1:3]]
    metrics.write_text("".join(lines[:3] + again + lines[3:]))
    result = invoke(args(tmp_path, cache_dir, "grpo,dapo,fipo", "ref"))
    assert "repaired 2 repeated line(s)" in result.output and f"{metrics}:4: repeats line 2" in result.output
    assert metrics.read_text() == original
    conflicting = json.dumps({**json.loads(lines[1]), "loss": 123.0}) + "\n"
    metrics.write_text("".join(lines[:3] + [conflicting] + lines[3:]))
    result = invoke(args(tmp_path, cache_dir, "grpo,dapo,fipo", "ref"), expect=2)
    assert f"{metrics}:4: repeats line 2" in result.output and "'loss'" in result.output
    assert "Delete" in result.output


def test_ctrl_c_marks_the_run_interrupted_says_how_to_resume_and_resume_finishes(
        reference_run, cache_dir, tmp_path, monkeypatch):
    from fipo_bench.backends.local.trainer import LocalTrainer

    real_step = LocalTrainer.train_step

    def interrupted_at_step_3(self, step):
        if step == 3:
            raise KeyboardInterrupt
        return real_step(self, step)

    monkeypatch.setattr(LocalTrainer, "train_step", interrupted_at_step_3)
    argv = args(tmp_path, cache_dir, "dapo", "ctrl-c")
    result = invoke(argv, expect=130)
    root = tmp_path / "ctrl-c"
    assert read_json(root / "dapo-seed0" / "status.json") == {
        "status": "interrupted", "step": 2, "error": "interrupted during step 3"}
    assert read_json(root / "run.json")["status"] == "interrupted"
    assert "dapo-seed0: interrupted during step 3, resumes after step 2" in result.output
    assert "resume: run the same command again" in result.output

    monkeypatch.setattr(LocalTrainer, "train_step", real_step)
    invoke(argv)
    resumed = read_jsonl(root / "dapo-seed0" / "metrics.jsonl")
    reference = read_jsonl(reference_run / "dapo-seed0" / "metrics.jsonl")
    assert without_timing(resumed) == without_timing(reference)
    assert read_json(root / "run.json")["status"] == "completed"


def test_dry_run_runs_the_checks_of_a_real_run(reference_run, tmp_path, cache_dir):
    base = read_json(reference_run / "grpo-seed0" / "config.json")["base_checkpoint"]
    out = ["--output-dir", str(tmp_path / "out")]
    cases = [
        (["--algos", "nosuchalgo"], "nosuchalgo"),
        (["--algos", "dapo", "--set", "dapo.overlong_buffer=100"], "overlong_buffer"),
        (["--set", "tiny_task.max_value=-1"], "config field 'tiny_task'"),
        (["--algos", "grpo", "--model", str(tmp_path / "missing"), "--dataset", "x.jsonl", "--set",
          "eval_datasets=[\"aime24\"]"], "'model'"),
        (["--algos", "grpo", "--model", base, "--dataset", str(tmp_path / "none.jsonl"), "--set",
          "eval_datasets=[\"aime24\"]"], "'dataset'"),
        (["--max-parallel", "0"], "--max-parallel"),
        (["--seeds", "a,b"], "config: field 'seeds': expected a list of integers"),
    ]
    for extra, expected in cases:
        result = invoke(["run", *extra, *out, "--dry-run"], expect=2)
        assert expected in result.output, (extra, result.output)
        assert "config: config field" not in result.output
    # A results directory started with another config fails the dry run as it fails the real one.
    changed = [*args(reference_run.parent, cache_dir, "grpo,dapo,fipo", "ref"), "--set", "lr=0.5",
               "--dry-run"]
    result = invoke(changed, expect=2)
    assert "started with a different config" in result.output and "'lr'" in result.output
    assert not (tmp_path / "out").exists()


# -- the matrix on Ray ----------------------------------------------------------------------------------


def _identical_files(run_dir: Path, reference: Path) -> None:
    """Every file of a run that holds no timing equals the reference's (paths of the results root aside)."""
    assert without_timing(read_jsonl(run_dir / "metrics.jsonl")) == without_timing(
        read_jsonl(reference / "metrics.jsonl"))
    for name in ("evals.jsonl", "status.json"):
        assert (run_dir / name).read_text() == (reference / name).read_text(), name

    def config(run: Path) -> dict:
        where = ("run_name", "output_dir")
        return {k: v for k, v in read_json(run / "config.json").items() if k not in where}

    assert config(run_dir) == config(reference)
    files = sorted(p.relative_to(reference) for p in (reference / "eval").rglob("*.json*"))
    assert files == sorted(p.relative_to(run_dir) for p in (run_dir / "eval").rglob("*.json*"))
    for f in files:
        here = (run_dir / f).read_text().replace(str(run_dir.parent), "ROOT")
        assert here == (reference / f).read_text().replace(str(reference.parent), "ROOT"), f


def test_parallel_matrix_on_ray_writes_the_files_of_the_sequential_one(reference_run, cache_dir):
    pytest.importorskip("ray", reason="the parallel matrix needs ray (installed by .ci/run)")
    out = reference_run.parent
    result = invoke(args(out, cache_dir, "grpo,dapo,fipo", "parallel", "--max-parallel", "2"))
    execution = read_json(out / "parallel" / "run.json")["execution"]
    assert execution["mode"] == "ray" and execution["parallel"] == 2
    for algo in ("grpo", "dapo", "fipo"):
        _identical_files(out / "parallel" / f"{algo}-seed0", reference_run / f"{algo}-seed0")
    assert "fipo-seed0" in result.output and result.output.rstrip().endswith("report.html")


RAY_DRIVER = textwrap.dedent("""
    # `fipo-bench` with a test-only algorithm that raises at its 5th loss (step 3): defined in __main__, so
    # Ray ships the class to its workers by value.
    import dataclasses
    from typing import ClassVar

    from fipo_bench.algorithms import GRPO, register_algorithm
    from fipo_bench.cli import app


    @register_algorithm("test-only-crash")
    @dataclasses.dataclass(frozen=True)
    class CrashAtStepThree(GRPO):
        calls: ClassVar[list] = [0]

        def token_loss(self, *args, **kwargs):
            self.calls[0] += 1
            if self.calls[0] >= 5:
                raise RuntimeError("boom at step 3")
            return super().token_loss(*args, **kwargs)


    app()
""")


def test_on_ray_a_crash_fails_only_its_run_and_a_killed_worker_resumes(reference_run, cache_dir, tmp_path):
    pytest.importorskip("ray", reason="the parallel matrix needs ray (installed by .ci/run)")
    script = tmp_path / "driver.py"
    script.write_text(RAY_DRIVER)
    argv = [sys.executable, str(script), *args(tmp_path, cache_dir, "test-only-crash,dapo", "ray",
                                               "--max-parallel", "2")]
    dapo = tmp_path / "ray" / "dapo-seed0"
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = None
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None and killed is None:
            metrics = dapo / "metrics.jsonl"
            if metrics.exists() and metrics.read_text().count("\n") >= 2:
                killed = lock_holder(dapo)["pid"]  # the Ray worker training dapo
                assert killed != proc.pid
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        output, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert killed is not None, output
    assert proc.returncode == 1, output  # one run failed
    crash = read_json(tmp_path / "ray" / "test-only-crash-seed0" / "status.json")
    assert crash["status"] == "failed" and "RuntimeError: boom at step 3" in crash["error"], crash
    assert crash["step"] == 2 and "boom at step 3" in crash["traceback"]
    # Ray retried the killed worker's task; it resumed from its checkpoint to the uninterrupted numbers.
    assert read_json(dapo / "status.json")["status"] == "completed"
    _identical_files(dapo, reference_run / "dapo-seed0")
    incomplete = (tmp_path / "ray" / "report" / "report.md").read_text().split("## Incomplete runs", 1)[1]
    assert "test-only-crash-seed0 | failed | 2" in incomplete


def _alive(pid: int, *, group: bool = False) -> bool:
    """Whether process `pid` (or any process of group `pid`) still exists."""
    try:
        (os.killpg if group else os.kill)(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_on_ray_a_killed_driver_stops_its_workers_and_the_same_command_resumes(reference_run, cache_dir):
    pytest.importorskip("ray", reason="the parallel matrix needs ray (installed by .ci/run)")
    out = reference_run.parent
    argv = args(out, cache_dir, "dapo,fipo", "driver-killed", "--max-parallel", "2")
    runs = {algo: RunDir(out / "driver-killed" / f"{algo}-seed0") for algo in ("dapo", "fipo")}
    # Its own process group: the local Ray's processes are the driver's children and stay in it.
    proc = subprocess.Popen([sys.executable, "-m", "fipo_bench.cli", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if runs["dapo"].last_logged_step() >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the matrix ended before its driver could be killed"
        workers = [holder["pid"] for run in runs.values() if (holder := lock_holder(run.path))]
        assert workers and proc.pid not in workers
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # The local Ray shares the driver's fate: its workers stop instead of writing on unsupervised.
        deadline = time.monotonic() + 60
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(map(_alive, workers)), f"Ray workers {workers} outlived their driver"
        # (Until a worker notices, it trains on: on a loaded machine a micro run may even complete.)
        resumable = [algo for algo, run in runs.items()
                     if (run.status() or {}).get("status") != "completed" and run.resume_point()[1]]

        result = invoke(argv)
        for algo, run in runs.items():
            _identical_files(run.path, reference_run / f"{algo}-seed0")
        for algo in resumable:
            assert f"{algo}-seed0: resuming from step" in result.output, result.output
        # Ray's agents notice the lost raylet within seconds, and nothing of the killed driver is left.
        deadline = time.monotonic() + 60
        while _alive(proc.pid, group=True) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _alive(proc.pid, group=True), "a process of the killed driver's Ray outlived it"
    finally:
        if proc.poll() is None:
            proc.kill()
        if _alive(proc.pid, group=True):
            os.killpg(proc.pid, signal.SIGKILL)


def test_on_ray_every_node_probes_the_results_directory_and_the_base(tmp_path):
    ray = pytest.importorskip("ray", reason="the parallel matrix needs ray (installed by .ci/run)")
    from fipo_bench.backends.local.ray_dispatch import OBJECT_STORE_BYTES, check_shared_results
    from fipo_bench.config import ConfigError

    root, base = tmp_path / "results", tmp_path / "base"
    root.mkdir()
    base.mkdir()
    ray.init(address="local", num_cpus=1, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES,
             log_to_driver=False)
    try:
        check_shared_results(root, str(base))  # one node, one file system: nothing to say
        with pytest.raises(ConfigError, match=f"cannot read the base checkpoint {tmp_path / 'missing'}"):
            check_shared_results(root, str(tmp_path / "missing"))
    finally:
        ray.shutdown()
    assert list(root.iterdir()) == []  # the probe files are gone
