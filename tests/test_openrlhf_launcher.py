"""The launcher's real (non-dry) path on CPU: OpenRLHF's job and `fipo-bench eval` replaced by scripts that
write what they write (tensorboard scalars, HF checkpoint folders, eval directories); the results land in
our layout and `fipo-bench report` reads them unchanged."""

import json
import sys
import textwrap

import pytest

pytest.importorskip("tensorboard", reason="reading OpenRLHF's logs needs tensorboard (installed by .ci/run)")

from fipo_bench.backends.openrlhf import launcher  # noqa: E402
from fipo_bench.config import RunConfig  # noqa: E402
from fipo_bench.io import read_json, read_jsonl  # noqa: E402

FAKE_OPENRLHF = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    from torch.utils.tensorboard import SummaryWriter

    argv = sys.argv[1:]
    flag = lambda name: argv[argv.index(name) + 1]
    log_dir = Path(flag("--logger.tensorboard_dir")) / flag("--logger.wandb.run_name")
    writer = SummaryWriter(str(log_dir))
    for step in (1, 2, 3, 4):  # what PPOTrainer logs, under OpenRLHF's names
        for key, value in {"reward": 0.1 * step, "accuracy": 0.2 * step, "response_length": 10.0 + step,
                           "policy_loss": 1.0 / step, "actor_lr": 1e-6, "timing/step_total": 2.0}.items():
            writer.add_scalar(f"train/{key}", value, step)
    writer.close()
    checkpoints = Path(flag("--ckpt.path"))
    for step in (2,):
        (checkpoints / f"global_step{step}_hf").mkdir(parents=True)
    Path(flag("--ckpt.output_dir")).mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k.startswith("FIPO_BENCH_")}
    (log_dir.parent.parent / "env.json").write_text(json.dumps(env))
""")

FAKE_EVAL = textwrap.dedent("""
    import sys
    from fipo_bench.evals import CheckResult
    from fipo_bench.evals.io import generation_row, write_eval_dir
    from fipo_bench.evals.metrics import summarize_generations

    checkpoint, out = sys.argv[1:]
    verdicts = [CheckResult("incorrect", "1"), CheckResult("correct", "1")]
    rows = [generation_row(str(i), 0, "Answer: 1", "1", v, 5, False) for i, v in enumerate(verdicts)]
    summary = summarize_generations(rows, dataset="aime24", checkpoint=checkpoint, k=1, sampling={})
    write_eval_dir(out, rows, summary)
""")


def test_launch_writes_our_results_layout_and_the_report_reads_it(tmp_path, monkeypatch):
    train_script, eval_script = tmp_path / "fake_openrlhf.py", tmp_path / "fake_eval.py"
    train_script.write_text(FAKE_OPENRLHF)
    eval_script.write_text(FAKE_EVAL)
    base = tmp_path / "base"
    base.mkdir()
    data = launcher.TrainingData(
        str(base), [{"prompt": f"p{i}", "answer": str(i)} for i in range(16)], {"aime24": ("aime24", "dapo")}
    )
    evals_run = []
    monkeypatch.setattr(launcher, "training_data", lambda config, root, dry_run: data)
    monkeypatch.setattr(
        launcher.Job, "command", lambda self, address: [sys.executable, str(train_script), *self.argv]
    )
    monkeypatch.setattr(
        launcher,
        "eval_command",
        lambda config, checkpoint, dataset, template, seed, out: (
            evals_run.append(checkpoint) or [sys.executable, str(eval_script), checkpoint, str(out)]
        ),
    )
    config = RunConfig(
        run_name="e2e",
        output_dir=str(tmp_path / "results"),
        algos=("dapo", "fipo"),
        seeds=(0,),
        model=str(base),
        dataset="d.jsonl",
        eval_datasets=("aime24",),
        num_steps=4,
        rollout_batch_size=4,
        mini_batch_size=2,
        eval_every=2,
        checkpoint_every=2,
        device="cuda",
        recompute_old_logp=True,
        algo_overrides={"dapo": {"overlong_buffer": 8}, "fipo": {"overlong_buffer": 8}},
    )
    monkeypatch.setenv("FIPO_BENCH_OPENRLHF_GPUS_PER_NODE", "2")
    monkeypatch.setenv("FIPO_BENCH_OPENRLHF_VLLM_ENGINES", "2")
    root = launcher.launch(config)

    assert read_json(root / "run.json")["status"] == "completed"
    assert len(read_jsonl(root / "openrlhf" / "prompts.jsonl")) == 16
    for algo in ("dapo", "fipo"):
        run = root / f"{algo}-seed0"
        assert read_json(run / "status.json") == {"status": "completed", "step": 4, "error": None}
        assert read_json(run / "config.json")["hyperparameters"]["overlong_buffer"] == 8
        env = json.loads((run / "openrlhf" / "env.json").read_text())
        assert env["FIPO_BENCH_ALGO"] == algo and env["FIPO_BENCH_MAX_STEPS"] == "4"
        metrics = read_jsonl(run / "metrics.jsonl")
        assert [m["step"] for m in metrics] == [1, 2, 3, 4]
        assert metrics[1]["accuracy"] == pytest.approx(0.4) and metrics[1]["loss"] == pytest.approx(0.5)
        assert metrics[1]["tokens_per_s"] is None  # no rollout/num_samples logged
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-2", "step-4"]
        evals = read_jsonl(run / "evals.jsonl")
        assert [(e["step"], e["dataset"], e["eval_accuracy"]) for e in evals] == [
            (0, "aime24", 0.5),
            (2, "aime24", 0.5),
            (4, "aime24", 0.5),
        ]
    assert evals_run.count(str(base)) == 1  # the base model is evaluated once per seed

    from fipo_bench.report import write_report

    out = write_report(root)
    assert (out / "report.md").is_file() and "fipo" in (out / "report.md").read_text()

    statuses_before = {p: p.stat().st_mtime_ns for p in root.glob("*/metrics.jsonl")}
    launcher.launch(config)  # completed runs are skipped
    assert statuses_before == {p: p.stat().st_mtime_ns for p in root.glob("*/metrics.jsonl")}


def test_a_failed_jobs_status_names_the_error_of_its_log(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("loading\nTraceback (most recent call last):\n  File x\n"
                   "RuntimeError: Invalid device string: 'cuda:cpu'\nshutting down\n")
    assert launcher.failure_reason(log) == ": RuntimeError: Invalid device string: 'cuda:cpu'"
    log.write_text("error: this job needs 3 GPUs and 4 CPUs in Ray (...); the cluster has 0 GPUs\n")
    assert launcher.failure_reason(log).startswith(": error: this job needs 3 GPUs")
    log.write_text("nothing to see\n")
    assert launcher.failure_reason(log) == ""


def test_ctrl_c_marks_the_running_job_interrupted_and_says_where_each_stopped(tmp_path, monkeypatch):
    from fipo_bench.backends.base import MatrixInterrupted
    from fipo_bench.results import RunDir

    base = tmp_path / "base"
    base.mkdir()
    rows = [{"prompt": "p", "answer": "1"}] * 16
    data = launcher.TrainingData(str(base), rows, {"aime24": ("aime24", "dapo")})
    monkeypatch.setattr(launcher, "training_data", lambda config, root, dry_run: data)

    def run_job(config, job, data, ray_address, record):  # dapo completes; fipo is stopped after 2 steps
        run = RunDir(job.run_dir)
        if job.alg.name == "dapo":
            run.set_status("completed", 4)
            return "completed"
        run.set_status("running", 0)
        (job.run_dir / "checkpoints" / "_actor" / "global_step2").mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(launcher, "run_job", run_job)
    config = RunConfig(run_name="stop", output_dir=str(tmp_path / "results"), algos=("dapo", "fipo", "grpo"),
                       seeds=(0,), model=str(base), dataset="d.jsonl", eval_datasets=("aime24",), num_steps=4,
                       rollout_batch_size=4, mini_batch_size=2, device="cuda", recompute_old_logp=True,
                       algo_overrides={"dapo": {"overlong_buffer": 8}, "fipo": {"overlong_buffer": 8}})
    monkeypatch.setenv("FIPO_BENCH_OPENRLHF_GPUS_PER_NODE", "2")
    monkeypatch.setenv("FIPO_BENCH_OPENRLHF_VLLM_ENGINES", "2")
    with pytest.raises(MatrixInterrupted) as stopped:
        launcher.launch(config)
    root = stopped.value.root
    assert stopped.value.stops == ["dapo-seed0: completed", "fipo-seed0: interrupted, resumes after step 2",
                                   "grpo-seed0: not started"]
    assert read_json(root / "fipo-seed0" / "status.json") == {
        "status": "interrupted", "step": 2, "error": "interrupted (Ctrl-C)"}
    assert read_json(root / "run.json")["status"] == "interrupted"
