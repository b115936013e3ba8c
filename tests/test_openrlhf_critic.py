"""PPO, VC-PPO and VAPO through OpenRLHF 0.11.2's own critic (the real package, flash_attn/vllm stubbed):
the command line as OpenRLHF's parser reads it, the patched advantages and returns on real Experience
objects, the patched ValueLoss inside OpenRLHF's critic training_step, and VAPO's LM loss in the actor's."""

import dataclasses
from types import SimpleNamespace

import pytest

pytest.importorskip("openrlhf", reason="OpenRLHF backend tests need openrlhf (installed by .ci/run)")

import torch  # noqa: E402
from openrlhf_stubs import stubbed_gpu_modules  # noqa: E402

from fipo_bench.algorithms import get_algorithm  # noqa: E402
from fipo_bench.algorithms.ppo import CRITIC_METRICS  # noqa: E402
from fipo_bench.backends.openrlhf import plugin, translate  # noqa: E402
from fipo_bench.config import RunConfig  # noqa: E402

CRITIC_ALGORITHMS = ("ppo", "vc-ppo", "vapo")
OVERRIDES = {"vc-ppo": {"value_pretrain_steps": 5}, "vapo": {"value_pretrain_steps": 5}}
CONFIG = RunConfig(
    run_name="t",
    algos=CRITIC_ALGORITHMS,
    seeds=(0,),
    model="/m",
    dataset="d.jsonl",
    eval_datasets=("aime24",),
    num_steps=20,
    rollout_batch_size=4,
    samples_per_prompt=4,
    mini_batch_size=2,
    max_prompt_length=8,
    max_response_length=12,
    lr=1e-6,
    weight_decay=0.1,
    grad_clip=0.5,
    device="auto",
    recompute_old_logp=True,
    algo_overrides=OVERRIDES,
)
LAYOUT = translate.Layout(gpus_per_node=2, vllm_engines=2)


def argv_for(alg, tmp_path, config=CONFIG):
    paths = translate.RunPaths(tmp_path / "run", tmp_path / "reward.py", tmp_path / "prompts.jsonl")
    return translate.openrlhf_args(config, alg, 0, paths, LAYOUT, model="/models/base", num_prompts=64)


@pytest.fixture
def openrlhf_with(monkeypatch, tmp_path):
    """Activate the plugin for an algorithm (as the hook does in a worker); returns (alg, parsed OpenRLHF args
    of our command line, modules)."""
    from fipo_bench.backends.openrlhf.driver import parse_openrlhf_args

    def activate(name, **overrides):
        alg = get_algorithm(name, **{**OVERRIDES.get(name, {}), **overrides})
        for key, value in translate.plugin_env(CONFIG, alg).items():
            monkeypatch.setenv(key, value)
        plugin.algorithm_from_env.cache_clear()
        plugin.setup_worker()
        import openrlhf.trainer.ppo_utils.experience_maker as experience_maker
        import openrlhf.trainer.ray.ppo_actor as ppo_actor
        import openrlhf.trainer.ray.ppo_critic as ppo_critic

        modules = SimpleNamespace(
            experience_maker=experience_maker, ppo_critic=ppo_critic, ppo_actor=ppo_actor
        )
        return alg, parse_openrlhf_args(argv_for(alg, tmp_path)), modules

    with stubbed_gpu_modules():
        yield activate
    plugin.algorithm_from_env.cache_clear()


@pytest.fixture  # per test: a module-wide stub would keep OpenRLHF's modules, patched, across tests
def parse():
    with stubbed_gpu_modules():
        from fipo_bench.backends.openrlhf.driver import parse_openrlhf_args

        yield parse_openrlhf_args


@pytest.mark.parametrize("name", CRITIC_ALGORITHMS)
def test_critic_flags_parse_and_mean_what_we_intend(name, tmp_path, parse):
    alg = get_algorithm(name, **OVERRIDES.get(name, {}))
    args = parse(argv_for(alg, tmp_path, dataclasses.replace(CONFIG, warmup_steps=2)))
    assert args.algo.advantage.estimator == "gae"
    assert args.critic.model_name_or_path == "/models/base"  # the base checkpoint with a value head
    assert (args.algo.advantage.gamma, args.algo.advantage.lambd) == (alg.gamma, alg.lam_critic)
    assert args.critic.value_clip == alg.value_clip == 0.2
    assert args.critic.adam.lr == pytest.approx(1e-6 * alg.critic_lr_scale)
    assert (args.critic.adam.weight_decay, args.critic.max_norm) == (0.1, 0.5)
    assert list(args.critic.adam.betas) == [0.9, 0.999] and args.critic.lr_scheduler == "constant_with_warmup"
    # the actor warms up; the critic's rate is constant from the first step, as the local backend's
    assert args.actor.lr_warmup_ratio > 0 and args.critic.lr_warmup_ratio == 0.0
    # OpenRLHF trains the actor once global_step (0 at the first step) > freezing_steps: P - 1 freezes P steps
    assert alg.value_pretrain_steps == (0 if name == "ppo" else 5)
    assert args.critic.freezing_steps == alg.value_pretrain_steps - 1
    assert (args.critic.num_nodes, args.critic.num_gpus_per_node) == (1, 2)
    assert list(args.actor.eps_clip_low_high) == [0.2, 0.28 if name == "vapo" else 0.2]
    assert args.actor.loss_agg_mode == "token-mean" and args.algo.kl.init_coef == 0.0
    assert not args.algo.kl.use_loss and not args.algo.dynamic_filtering_enable


def test_what_the_critic_path_cannot_run_is_an_error_naming_it(tmp_path):
    with pytest.raises(translate.UnsupportedOption, match="value_pretrain_steps = 50"):
        argv_for(get_algorithm("vc-ppo"), tmp_path)  # 50 pretraining steps of a 20-step run
    for alg in (get_algorithm("vapo", value_pretrain_steps=2, dynamic_sampling=True),
                get_algorithm("ppo", dynamic_sampling=True)):  # OpenRLHF's critic loader drops short batches
        with pytest.raises(translate.UnsupportedOption, match="dynamic_sampling with a critic"):
            argv_for(alg, tmp_path)
    with pytest.raises(translate.UnsupportedOption, match="value_clip"):
        argv_for(get_algorithm("ppo", value_clip=None), tmp_path)


def experiences(modules, rewards, lengths, sizes, seed=0):
    """Experiences of the rollout samples 0..M-1 in a shuffled order, each with its own width and its
    critic values (garbage on padding)."""
    from openrlhf.trainer.ppo_utils.experience import Experience

    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(rewards), generator=g).tolist()
    values = torch.randn(len(rewards), int(lengths.max()), generator=g)
    out, start = [], 0
    for size in sizes:
        idx = order[start : start + size]
        start += size
        width = int(max(lengths[idx]))
        mask = torch.arange(width)[None, :] < lengths[idx][:, None]
        out.append(
            Experience(
                index=idx,
                rewards=rewards[idx].clone(),
                response_length=lengths[idx],
                action_mask=mask,
                values=torch.where(mask, values[idx, :width], 7.0),
                kl=torch.zeros(mask.shape),
                info={},
            )
        )
    return out, values


@pytest.mark.parametrize("name", CRITIC_ALGORITHMS)
def test_patched_advantages_and_returns_on_openrlhf_experiences_equal_ours(name, openrlhf_with):
    alg, args, modules = openrlhf_with(name)
    rewards = torch.tensor([1.0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 1, 1])
    lengths = torch.tensor([3, 12, 9, 10, 11, 12, 2, 5, 12, 8, 9, 1, 4, 10, 12, 7])
    batch, values = experiences(modules, rewards, lengths, sizes=[5, 3, 8])
    maker = SimpleNamespace(strategy=SimpleNamespace(args=args))
    out = modules.experience_maker.RemoteExperienceMaker.compute_advantages_and_returns(maker, batch)

    mask = torch.arange(12)[None, :] < lengths[:, None]  # [16, 12] in rollout order
    advantages, returns = alg.advantages_and_returns(rewards, values, mask)  # whitened over all 16
    for e in out:
        width = e.action_mask.shape[1]
        torch.testing.assert_close(e.advantages, advantages[e.index][:, :width])
        torch.testing.assert_close(e.returns, returns[e.index][:, :width])
        assert set(CRITIC_METRICS) - {"value_loss", "value_clip_frac"} <= set(e.info)
    # whitened over the whole batch, not per experience: mean 0 over all response tokens
    total = sum(e.advantages.sum() for e in out) / mask.sum()
    assert abs(total.item()) < 1e-5


def critic_trainer(modules, args, monkeypatch, values):
    """OpenRLHF's CriticPPOTrainer from its own __init__ (so the loss is built as in a worker), with a
    critic returning `values` and no CUDA replay buffer."""
    monkeypatch.setattr(modules.ppo_critic, "NaiveReplayBuffer", lambda *a, **k: None)
    strategy = SimpleNamespace(
        args=args,
        ring_attn_group=None,
        losses=[],
        backward=lambda loss, model, optim: strategy.losses.append(loss),
        optimizer_step=lambda *a, **k: None,
        get_grad_norm=lambda model: 0.0,
    )

    class FakeCritic:
        def train(self):
            pass

        def __call__(self, *args, **kwargs):
            return values, SimpleNamespace(aux_loss=None)

    trainer = modules.ppo_critic.CriticPPOTrainer(
        strategy,
        critic=FakeCritic(),
        critic_optim=None,
        critic_scheduler=SimpleNamespace(get_last_lr=lambda: [2e-6]),
        micro_train_batch_size=2,
        value_clip=args.critic.value_clip,
    )
    return trainer, strategy


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean"])
def test_critic_training_step_backpropagates_our_value_loss(agg, openrlhf_with, monkeypatch):
    alg, args, modules = openrlhf_with("ppo", value_loss_agg=agg)
    g = torch.Generator().manual_seed(3)
    old = torch.randn(6, 7, generator=g)
    new = (old + 0.5 * torch.randn(6, 7, generator=g)).requires_grad_()
    returns = torch.randn(6, 7, generator=g)
    mask = torch.arange(7)[None, :] < torch.tensor([7, 5, 3, 7, 1, 6])[:, None]
    trainer, strategy = critic_trainer(modules, args, monkeypatch, new)
    assert type(trainer.critic_loss_fn).__name__ == "RegistryValueLoss"
    from openrlhf.trainer.ppo_utils.experience import Experience
    from openrlhf.utils.loss_utils import _optimizer_step_loss_norm

    # as OpenRLHF's replay buffer batches per-sample info: a list of 0-dim tensors
    info = {"explained_variance": [torch.tensor(0.25)] * 6, "value_mean": list(torch.full((6,), -1.0))}
    experience = Experience(
        sequences=torch.zeros(6, 9, dtype=torch.long),
        attention_mask=torch.ones(6, 9),
        action_mask=mask,
        values=old,
        returns=returns,
        info=info,
    )
    status = trainer.training_step(experience, 0, _optimizer_step_loss_norm([mask], None, 1, 1))
    (loss,) = strategy.losses
    expected_leaf = new.detach().clone().requires_grad_()
    expected, metrics = alg.value_loss(expected_leaf, old, returns, mask)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(new.grad, expected_leaf.grad)
    assert status["critic_loss"] == pytest.approx(metrics["value_loss"], rel=1e-5)
    assert (
        status["value_clip_frac"] == pytest.approx(metrics["value_clip_frac"])
        and metrics["value_clip_frac"] > 0
    )
    assert (status["explained_variance"], status["value_mean"]) == (0.25, -1.0)  # the rollout's, passed on


def test_value_loss_over_micro_batches_and_ranks_equals_ours(openrlhf_with, monkeypatch):
    alg, args, modules = openrlhf_with("ppo")
    loss_fn = critic_trainer(modules, args, monkeypatch, None)[0].critic_loss_fn
    from openrlhf.utils.loss_utils import _optimizer_step_loss_norm

    g = torch.Generator().manual_seed(4)
    old, returns = torch.randn(2, 6, 7, generator=g).unbind(0)
    new = old + 0.5 * torch.randn(6, 7, generator=g)
    mask = torch.arange(7)[None, :] < torch.tensor([7, 5, 3, 7, 1, 6])[:, None]
    parts = [slice(0, 2), slice(2, 3), slice(3, 6)]
    for dp_size, gas in ((3, 1), (1, 3)):
        norm = _optimizer_step_loss_norm([mask[p] for p in parts], None, dp_size, gas)
        total = sum(
            loss_fn(new[p], old[p], returns[p], action_mask=mask[p], **norm) / (dp_size * gas) for p in parts
        )
        torch.testing.assert_close(total, alg.value_loss(new, old, returns, mask)[0])


def actor_trainer(modules, args, monkeypatch):
    """OpenRLHF's ActorPPOTrainer with no model, optimizer, buffer or GPU: for its loss and ppo_train."""
    monkeypatch.setattr(modules.ppo_actor, "NaiveReplayBuffer", lambda *a, **k: None)
    monkeypatch.setattr(modules.ppo_actor, "torch_dist_barrier_and_cuda_sync", lambda: None)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: "cpu")
    return modules.ppo_actor.ActorPPOTrainer(
        SimpleNamespace(args=args, ring_attn_group=None),
        actor=None,
        ema_model=None,
        actor_optim=None,
        actor_scheduler=SimpleNamespace(get_last_lr=lambda: [1e-6]),
        micro_train_batch_size=2,
    )


def test_vapo_lm_loss_in_the_actor_uses_the_reward_files_correctness(openrlhf_with, monkeypatch):
    alg, args, modules = openrlhf_with("vapo")
    trainer = actor_trainer(modules, args, monkeypatch)
    loss_fn = trainer.actor_loss_fn
    from openrlhf.utils.loss_utils import _optimizer_step_loss_norm

    g = torch.Generator().manual_seed(5)
    old = -torch.rand(4, 6, generator=g) * 3
    logp = old + 0.2 * torch.randn(4, 6, generator=g)
    advantages = torch.randn(4, 6, generator=g)
    mask = torch.arange(6)[None, :] < torch.tensor([6, 4, 2, 5])[:, None]
    correct = torch.tensor([1.0, 0.0, 1.0, 0.0])
    loss_fn.experience = SimpleNamespace(scores=correct, info={})
    loss, *_ = loss_fn(
        logp, old, advantages * mask, action_mask=mask, **_optimizer_step_loss_norm([mask], None, 1, 1)
    )
    expected, metrics = alg.policy_loss(logp, old, advantages * mask, mask, correct=correct)
    torch.testing.assert_close(loss, expected)
    assert metrics["lm_loss"] > 0
    loss_fn.experience = SimpleNamespace(scores=None, info={})
    with pytest.raises(RuntimeError, match="correctness"):
        loss_fn(
            logp, old, advantages * mask, action_mask=mask, **_optimizer_step_loss_norm([mask], None, 1, 1)
        )


class ReplayBuffer(list):
    """What ppo_train reads of OpenRLHF's NaiveReplayBuffer: its items (here: itself) and batch size."""

    sample_batch_size = 2
    collate_fn = None

    @property
    def items(self):
        return self


@pytest.mark.parametrize(("name", "kept"), [("vc-ppo", 8), ("ppo", 24)])
def test_the_frozen_actor_trains_only_on_the_newest_rollout(name, kept, openrlhf_with, monkeypatch):
    # 4 prompts x 4 samples per step over 2 data-parallel ranks: 8 items per rank per step. After value
    # pretraining, the actor's buffer holds three steps' items; only the newest step's may train it.
    alg, args, modules = openrlhf_with(name)
    trainer = actor_trainer(modules, args, monkeypatch)
    trainer.replay_buffer = ReplayBuffer(range(24))
    trainer.max_epochs = 0  # OpenRLHF's own loop then trains nothing: only the buffer is looked at
    trainer.ppo_train(0.0)
    assert list(trainer.replay_buffer) == list(range(24 - kept, 24))
    if name == "vc-ppo":  # a buffer that is not whole steps: the newest step's rows are unknown, so stop
        trainer.replay_buffer = ReplayBuffer(range(25))
        with pytest.raises(RuntimeError, match="not a multiple"):
            trainer.ppo_train(0.0)
