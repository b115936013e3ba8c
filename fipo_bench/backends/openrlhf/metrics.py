"""OpenRLHF's tensorboard scalars -> our metrics.jsonl rows (results/README.md).

OpenRLHF 0.11 logs one point per rollout step (`global_step`, from 1) under `train/<key>`
(openrlhf/utils/logging_utils.py TensorboardLogger). Our names for its keys are below; the reward
file's `accuracy` and the plugin's loss metrics (clip fractions, FIPO's weight statistics, ...) arrive
under our own names already. Every other key is kept under OpenRLHF's name (`timing/ppo_train`, ...).
Deviations: OpenRLHF logs rollout statistics over the samples that entered training, so under dynamic
sampling `accuracy` and `reward` are those of the kept groups (the local backend: generation batch 0);
it has no response-length median.
"""

from __future__ import annotations

from pathlib import Path

# train/<OpenRLHF key> -> our key
RENAMES = {
    "policy_loss": "loss",
    "critic_loss": "value_loss",  # the registry's value loss (the plugin replaces OpenRLHF's ValueLoss)
    "actor_grad_norm": "grad_norm",
    "actor_lr": "lr",
    "entropy_loss": "entropy",
    "response_length": "response_length_mean",
    "timing/step_total": "step_time_s",
    "timing/generation": "gen_time_s",
    "rollout/truncated_rate": "truncated_frac",
}


def read_scalars(log_dir: Path) -> dict[int, dict[str, float]]:
    """step -> {tag: value} from every event file under `log_dir`; a step logged twice (a resumed run)
    keeps its latest value."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    latest: dict[tuple[int, str], tuple[float, float]] = {}  # (step, tag) -> (wall_time, value)
    for events_dir in sorted({path.parent for path in Path(log_dir).rglob("events.out.tfevents.*")}):
        accumulator = EventAccumulator(str(events_dir), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            for event in accumulator.Scalars(tag):
                key = (event.step, tag)
                if key not in latest or event.wall_time >= latest[key][0]:
                    latest[key] = (event.wall_time, event.value)
    steps: dict[int, dict[str, float]] = {}
    for (step, tag), (_, value) in latest.items():
        steps.setdefault(step, {})[tag] = value
    return steps


def metrics_row(step: int, scalars: dict[str, float], samples_per_prompt: int) -> dict:
    """One metrics.jsonl line from one step's `train/*` scalars."""
    train = {tag.removeprefix("train/"): value for tag, value in scalars.items() if tag.startswith("train/")}
    row: dict = {"step": step}
    for key, value in train.items():
        if key in RENAMES:
            row[RENAMES[key]] = value
        elif key == "dynamic_filtering_pass_rate":
            # OpenRLHF logs 100 x samples kept / prompts drawn (ppo_utils/samples_generator.py:123)
            row["kept_groups_frac"] = value / 100.0 / samples_per_prompt
        else:
            row[key] = value
    samples, length, step_time = (
        train.get(k) for k in ("rollout/num_samples", "response_length", "timing/step_total")
    )
    if samples and length is not None and step_time:
        row["tokens_per_s"] = samples * length / step_time
    for key in (
        "accuracy",
        "reward",
        "response_length_mean",
        "response_length_median",
        "entropy",
        "clip_frac_high",
        "clip_frac_low",
        "kept_groups_frac",
        "tokens_per_s",
        "step_time_s",
        "loss",
        "grad_norm",
        "lr",
    ):
        row.setdefault(key, None)
    return row


def metrics_rows(log_dir: Path, samples_per_prompt: int) -> list[dict]:
    """Every step's metrics.jsonl line, in step order."""
    steps = sorted(read_scalars(log_dir).items())
    return [metrics_row(step, scalars, samples_per_prompt) for step, scalars in steps]
