"""The local trainer's critic (algorithms with `needs_critic`): values aligned with response tokens as a
per-sequence loop computes them, value pretraining that learns without moving the policy or its data,
checkpoints that hold the critic, and resume that gives identical numbers."""

from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from fipo_bench.algorithms import CRITIC_METRICS, get_algorithm
from fipo_bench.backends.local.critic import response_values
from fipo_bench.backends.local.trainer import LocalTrainer, Rollout
from fipo_bench.config import build_config
from fipo_bench.results import (
    CRITIC_DIR,
    CRITIC_OPTIMIZER,
    CRITIC_WEIGHTS,
    TIMING_FIELDS,
    TRAINER_STATE,
    RunDir,
)
from fipo_bench.sampling import left_pad
from fipo_bench.tasks import TaskData

# 2 updates of 2 groups x 4 samples per step; short responses keep a step well under a second.
SMALL = {"rollout_batch_size": 4, "samples_per_prompt": 4, "mini_batch_size": 2, "max_response_length": 12,
         "recompute_old_logp": "true"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, as every run of the matrix pins: tiny matrices on a shared 2-core machine run
    ~30x slower with 2 threads waiting on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_trainer(base, algo: str = "ppo", resume_from=None, **sets) -> LocalTrainer:
    from fipo_bench.tiny import TinyTask

    sets = {**SMALL, **sets}
    cfg = build_config("tiny", options={"algos": algo}, sets=[f"{k}={v}" for k, v in sets.items()])
    # A checker whose verdicts vary with the response (a random policy answers nothing right).
    def check(responses, golds):
        return [SimpleNamespace(correct=len(r) % 3 == 0) for r in responses]

    data = TaskData(train=TinyTask(test_size=4).train_problems(32), evals={}, prompt_text=lambda t: t,
                    check=check)
    alg = get_algorithm(algo, **cfg.algo_overrides.get(algo, {}))
    return LocalTrainer(cfg, alg, 0, base, data, resume_from=resume_from)


def without_timing(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in TIMING_FIELDS}


def test_values_align_with_response_tokens_as_a_per_sequence_loop(random_base):
    """V_t is the value head on the hidden state that predicts response token t: the trainer's batched,
    padded, bucketed pass equals one unpadded forward per row."""
    trainer = make_trainer(random_base, micro_batch_size=12)
    g = torch.Generator().manual_seed(1)
    vocab = trainer.model.config.vocab_size
    prompts = [torch.randint(4, vocab, (int(torch.randint(2, 9, (1,), generator=g)),), generator=g).tolist()
               for _ in range(32)]
    (s,), _ = trainer.generate(prompts, max_new_tokens=12, temperature=1.0, top_p=1.0,
                               generator=torch.Generator().manual_seed(2), chunk=32)
    assert len(set(s.lengths.tolist())) > 3  # ragged, so the pass pads and buckets
    prompt_ids, prompt_mask = left_pad(prompts, trainer.pad_id)
    rollout = Rollout(prompt_ids, prompt_mask, s.tokens, s.mask, s.logp, None, torch.arange(32) // 4)
    values = trainer._forward_no_grad(rollout, trainer._values_of(trainer.critic))
    critic = trainer.critic
    for i in range(32):
        n, prompt = int(s.lengths[i]), prompts[i]
        with torch.no_grad():
            ids = torch.tensor([prompt + s.tokens[i, :n].tolist()])
            hidden = critic.backbone(input_ids=ids).last_hidden_state
            expected = critic.head(hidden[0, len(prompt) - 1:len(prompt) - 1 + n]).squeeze(-1)
        torch.testing.assert_close(values[i, :n], expected, atol=2e-6, rtol=1e-5)
        assert not values[i, n:].any()  # 0 on padding
    assert values[s.mask.bool()].std() > 0  # the head is not a constant


def test_value_head_stays_float32_under_autocast(random_base):
    trainer = make_trainer(random_base)
    ids, mask = left_pad([[5, 6, 7]], trainer.pad_id)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        values = response_values(trainer.critic, ids, mask, torch.tensor([[8, 9]]), torch.ones(1, 2))
    assert values.dtype == torch.float32 and trainer.critic.head.weight.dtype == torch.float32


def test_value_pretraining_learns_without_moving_the_policy_or_its_data(random_base):
    trainer = make_trainer(random_base, **{"ppo.value_pretrain_steps": 8})
    policy = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    log = trainer.pretrain_critic()
    assert [row["step"] for row in log] == list(range(1, 9))
    assert set(CRITIC_METRICS) | {"critic_grad_norm", "critic_lr"} <= set(log[0])
    losses = [row["value_loss"] for row in log]
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3, losses  # the critic learns the returns
    assert all(torch.equal(v, policy[k]) for k, v in trainer.model.state_dict().items())  # policy frozen
    # The policy's first step sees the same prompts and samples as a run without value pretraining.
    plain = make_trainer(random_base)
    rollout_keys = ("accuracy", "response_length_mean", "entropy", "reward", "truncated_frac")
    first, first_plain = trainer.train_step(1), plain.train_step(1)
    assert {k: first[k] for k in rollout_keys} == {k: first_plain[k] for k in rollout_keys}
    assert first["value_loss"] < first_plain["value_loss"]  # ...and meets a pretrained critic


def test_a_step_with_a_critic_reports_its_metrics_and_trains_both_models(random_base):
    trainer = make_trainer(random_base)
    policy = [p.clone() for p in trainer.model.parameters()]
    critic = [p.clone() for p in trainer.critic.parameters()]
    metrics = trainer.train_step(1)
    assert set(CRITIC_METRICS) | {"critic_grad_norm", "critic_lr", "critic_time_s"} <= set(metrics)
    assert metrics["critic_lr"] == pytest.approx(trainer.cfg.lr * trainer.alg.critic_lr_scale)
    assert metrics["updates"] == 2
    assert any(not torch.equal(a, b) for a, b in zip(policy, trainer.model.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(critic, trainer.critic.parameters(), strict=True))


@pytest.mark.parametrize("algo", ["ppo", "vapo"])  # vapo: length-adaptive lambda, the LM loss on correct rows
def test_resume_with_a_critic_gives_identical_numbers_and_checkpoints_hold_it(random_base, tmp_path, algo):
    sets = {f"{algo}.value_pretrain_steps": 2}
    whole = make_trainer(random_base, algo, **sets)
    whole.pretrain_critic()
    rows = [whole.train_step(step) for step in (1, 2)]
    checkpoint = tmp_path / "step-2"
    whole.save_checkpoint(checkpoint, 2)
    rows.append(whole.train_step(3))

    saved = load_file(str(checkpoint / CRITIC_DIR / CRITIC_WEIGHTS))
    assert {"head.weight", "head.bias"} <= set(saved) and any(k.startswith("backbone.layers.") for k in saved)
    assert set(saved) == set(whole.critic.state_dict())
    optimizer = torch.load(checkpoint / CRITIC_DIR / CRITIC_OPTIMIZER, weights_only=True)
    assert len(optimizer["state"]) == len(list(whole.critic.parameters()))  # AdamW moments of every tensor

    resumed = make_trainer(random_base, algo, resume_from=checkpoint, **sets)
    assert without_timing(resumed.train_step(3)) == without_timing(rows[2])
    for a, b in zip(whole.critic.state_dict().values(), resumed.critic.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_completed_runs_final_checkpoint_keeps_the_critic_not_its_optimizer_state(random_base, tmp_path):
    trainer = make_trainer(random_base)
    run = RunDir(tmp_path / "ppo-seed0")
    trainer.save_checkpoint(run.checkpoint(1), 1)
    critic = run.checkpoint(1) / CRITIC_DIR
    assert (critic / CRITIC_OPTIMIZER).is_file() and (run.checkpoint(1) / TRAINER_STATE).is_file()
    run.drop_resume_state(1)
    assert (critic / CRITIC_WEIGHTS).is_file()
    assert not (critic / CRITIC_OPTIMIZER).exists() and not (run.checkpoint(1) / TRAINER_STATE).exists()
