"""OpenRLHF's tensorboard logs -> metrics.jsonl rows; OpenRLHF HF checkpoints -> checkpoints/step-<N>/."""

from types import SimpleNamespace

import pytest

pytest.importorskip("openrlhf", reason="OpenRLHF backend tests need openrlhf (installed by .ci/run)")
pytest.importorskip("tensorboard", reason="reading OpenRLHF's logs needs tensorboard (installed by .ci/run)")

from openrlhf_stubs import stubbed_gpu_modules  # noqa: E402

from fipo_bench.backends.openrlhf.launcher import collect_checkpoints, eval_steps, last_checkpoint_step  # noqa: E402
from fipo_bench.backends.openrlhf.metrics import metrics_rows  # noqa: E402
from fipo_bench.config import RunConfig  # noqa: E402


def log_with_openrlhf(log_dir, steps):
    """Write `steps` ({step: logs}) with OpenRLHF's own TensorboardLogger, as PPOTrainer does."""
    with stubbed_gpu_modules():
        from openrlhf.utils.logging_utils import TensorboardLogger

        args = SimpleNamespace(
            logger=SimpleNamespace(tensorboard_dir=str(log_dir), wandb=SimpleNamespace(run_name="fipo-seed0"))
        )
        logger = TensorboardLogger(args)
        for step, logs in steps.items():
            logger.log_train(step, {**logs, "generated_samples": ["text", 1.0]})
        logger.close()


def test_metrics_rows_rename_openrlhf_keys_and_keep_a_resumed_runs_latest_values(tmp_path):
    step = {
        "policy_loss": 0.5,
        "actor_grad_norm": 2.0,
        "actor_lr": 1e-6,
        "reward": 0.25,
        "accuracy": 0.625,
        "response_length": 100.0,
        "entropy_loss": 1.5,
        "dynamic_filtering_pass_rate": 160.0,  # 100 x samples kept / prompts drawn
        "timing/step_total": 8.0,
        "rollout/num_samples": 64.0,
        "rollout/truncated_rate": 0.125,
        "clip_frac_high": 0.01,
        "weight_mean": 1.05,
        "ppo_clip_ratio": 0.02,
        "critic_loss": 0.125,
        "value_clip_frac": 0.25,
    }
    log_with_openrlhf(tmp_path, {1: step, 2: {**step, "reward": 0.5}})
    log_with_openrlhf(tmp_path, {2: {**step, "reward": 0.75}, 3: step})  # resumed from step 1: step 2 again
    rows = metrics_rows(tmp_path, samples_per_prompt=4)
    assert [row["step"] for row in rows] == [1, 2, 3]
    assert [row["reward"] for row in rows] == [0.25, 0.75, 0.25]
    first = rows[0]
    assert (first["loss"], first["grad_norm"], first["lr"], first["accuracy"]) == pytest.approx(
        (0.5, 2.0, 1e-6, 0.625)
    )
    assert (first["response_length_mean"], first["entropy"], first["truncated_frac"]) == (100.0, 1.5, 0.125)
    assert first["kept_groups_frac"] == pytest.approx(0.4)  # 1.6 samples per prompt / 4 per group
    assert first["tokens_per_s"] == pytest.approx(64 * 100 / 8.0)  # samples x mean length / step time
    assert (first["step_time_s"], first["weight_mean"], first["ppo_clip_ratio"]) == pytest.approx(
        (8.0, 1.05, 0.02)
    )
    assert first["clip_frac_high"] == pytest.approx(0.01) and first["clip_frac_low"] is None
    assert first["response_length_median"] is None  # OpenRLHF does not log it
    assert (first["value_loss"], first["value_clip_frac"]) == (0.125, 0.25) and "critic_loss" not in first


def test_checkpoints_are_moved_into_our_layout(tmp_path):
    ckpt = tmp_path / "checkpoints"
    for name in ("global_step5_hf", "global_step10_hf", "final", "_actor/global_step10"):
        (ckpt / name).mkdir(parents=True)
    (ckpt / "final" / "config.json").write_text("{}")
    collect_checkpoints(tmp_path, last_step=12)
    assert sorted(p.name for p in ckpt.iterdir()) == ["_actor", "step-10", "step-12", "step-5"]
    assert (ckpt / "step-12" / "config.json").is_file()  # the final model is the last step's checkpoint
    assert last_checkpoint_step(tmp_path) == 10


def test_eval_steps():
    config = RunConfig(run_name="t", num_steps=12, eval_every=5)
    assert eval_steps(config) == [0, 5, 10, 12]
    assert eval_steps(config.replace(eval_every=0)) == [0, 12]
