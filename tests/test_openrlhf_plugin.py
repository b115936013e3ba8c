"""The plugin inside OpenRLHF 0.11.2 (the real package, flash_attn/vllm stubbed): the patched PolicyLoss,
OpenRLHF's training_step around it, the patched advantages on real Experience objects, the prompt caps,
and the setup hook in a real Ray worker process."""

import os
from types import SimpleNamespace

import pytest

pytest.importorskip("openrlhf", reason="OpenRLHF backend tests need openrlhf (installed by .ci/run)")

import torch  # noqa: E402
from openrlhf_stubs import stubbed_gpu_modules  # noqa: E402

from fipo_bench import registry  # noqa: E402
from fipo_bench.algorithms import get_algorithm, list_algorithms  # noqa: E402
from fipo_bench.backends.openrlhf import plugin, translate  # noqa: E402
from fipo_bench.config import RunConfig  # noqa: E402

OVERRIDES = {"dapo": {"overlong_buffer": 4}, "fipo": {"overlong_buffer": 4}}
# The built-in algorithms but the fipo-7b variant (other test modules register their own into the registry).
ALL = [
    name
    for name in list_algorithms()
    if registry.algorithm_class(name).__module__.startswith("fipo_bench.") and name != "fipo-7b"
    and not registry.algorithm_class(name).needs_critic  # the value-model algorithms: tests of their own
]
# Clip-Cov and KL-Cov pick their tokens within each call, as in verl: per micro-batch, not per batch.
PER_TOKEN_SELECTION = {"clip-cov", "kl-cov"}
CONFIG = RunConfig(
    run_name="t",
    algos=("grpo", "dapo", "fipo"),
    seeds=(0,),
    model="/m",
    dataset="d.jsonl",
    eval_datasets=("aime24",),
    num_steps=3,
    rollout_batch_size=4,
    samples_per_prompt=4,
    mini_batch_size=2,
    max_prompt_length=8,
    max_response_length=12,
    device="auto",
    recompute_old_logp=True,
    max_gen_batches=2,
    algo_overrides=OVERRIDES,
)


@pytest.fixture
def openrlhf_with(monkeypatch, tmp_path):
    """Activate the plugin for an algorithm (as the hook does in a worker), then import OpenRLHF's modules.
    Returns (alg, parsed OpenRLHF args of our command line for it, modules)."""
    from fipo_bench.backends.openrlhf.driver import parse_openrlhf_args

    def activate(name):
        alg = get_algorithm(name, **OVERRIDES.get(name, {}))
        for key, value in translate.plugin_env(CONFIG, alg).items():
            monkeypatch.setenv(key, value)
        plugin.algorithm_from_env.cache_clear()
        plugin.setup_worker()
        import openrlhf.trainer.ppo_utils.experience_maker as experience_maker
        import openrlhf.trainer.ppo_utils.samples_generator as samples_generator
        import openrlhf.trainer.ray.ppo_actor as ppo_actor

        paths = translate.RunPaths(tmp_path / "run", tmp_path / "reward.py", tmp_path / "prompts.jsonl")
        argv = translate.openrlhf_args(
            CONFIG,
            alg,
            0,
            paths,
            translate.Layout(gpus_per_node=2, vllm_engines=2),
            model="/m",
            num_prompts=64,
        )
        modules = SimpleNamespace(
            ppo_actor=ppo_actor, experience_maker=experience_maker, samples_generator=samples_generator
        )
        return alg, parse_openrlhf_args(argv), modules

    with stubbed_gpu_modules():
        yield activate
    plugin.algorithm_from_env.cache_clear()


def batch(seed, n=6, t=7, spread=0.05, dual_clip_hit=False):
    """Random logp/old_logp/ref_logp [n, t], per-token advantages and a right-padded mask."""
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(n, t, generator=g, dtype=torch.float64).float() * 3
    logp = old + spread * torch.randn(n, t, generator=g)
    ref = old + 0.1 * torch.randn(n, t, generator=g)
    lengths = torch.tensor([t, t - 2, 3, t, 1, t - 1][:n])
    mask = torch.arange(t)[None, :] < lengths[:, None]  # [n, t] bool
    adv = torch.tensor([1.0, -0.5, 2.0, -1.5, 0.7, -0.3][:n])[:, None].expand(n, t).clone()
    if dual_clip_hit:  # sequence 1 (A < 0): two tokens with ratio e^3 > dual clip 10 -> FIPO drops it
        logp[1, :2] = old[1, :2] + 3.0
    return logp, old, ref, adv * mask, mask


def actor_trainer(modules, args, monkeypatch):
    """OpenRLHF's ActorPPOTrainer, constructed by its own __init__ (so the loss is built exactly as in a
    worker), minus its CUDA-only replay buffer and its distributed barrier."""
    monkeypatch.setattr(modules.ppo_actor, "NaiveReplayBuffer", lambda *args, **kwargs: None)
    monkeypatch.setattr(modules.ppo_actor, "torch_dist_barrier_and_cuda_sync", lambda: None)
    strategy = SimpleNamespace(
        args=args,
        ring_attn_group=None,
        losses=[],
        backward=lambda loss, model, optim: strategy.losses.append(loss),
        optimizer_step=lambda *a, **k: None,
        get_grad_norm=lambda model: 0.0,
    )
    return modules.ppo_actor.ActorPPOTrainer(
        strategy,
        actor=None,
        ema_model=None,
        actor_optim=None,
        actor_scheduler=SimpleNamespace(get_last_lr=lambda: [1e-6]),
        micro_train_batch_size=2,
    ), strategy


class FakeActor:
    """Stands in for OpenRLHF's Actor: its forward returns the given log-probabilities."""

    def __init__(self, logp):
        self.logp = logp

    def train(self):
        pass

    def __call__(self, *args, **kwargs):
        return self.logp, SimpleNamespace(entropy=torch.zeros_like(self.logp), aux_loss=None)


@pytest.mark.parametrize("name", ALL)
def test_training_step_loss_and_gradient_equal_the_registry(name, openrlhf_with, monkeypatch):
    """One micro-batch through OpenRLHF's real training_step (fake model returning our logp): the loss it
    backpropagates and its gradient equal alg.policy_loss; GRPO's KL is counted once, not twice."""
    alg, args, modules = openrlhf_with(name)
    trainer, strategy = actor_trainer(modules, args, monkeypatch)
    assert type(trainer.actor_loss_fn).__name__ == "RegistryPolicyLoss"
    logp, old, ref, adv, mask = batch(1, spread=0.3)
    leaf = logp.clone().requires_grad_()
    trainer.actor = FakeActor(leaf)
    from openrlhf.trainer.ppo_utils.experience import Experience
    from openrlhf.utils.loss_utils import _optimizer_step_loss_norm

    experience = Experience(
        sequences=torch.zeros(6, 9, dtype=torch.long),
        attention_mask=torch.ones(6, 9),
        action_mask=mask,
        action_log_probs=old,
        advantages=adv,
        base_action_log_probs=ref if alg.needs_reference else None,
        info={},
    )
    norm = _optimizer_step_loss_norm([mask], None, 1, 1)
    torch.manual_seed(0)  # Clip-Cov draws its tokens from torch's global generator, as verl: the same draw
    status = trainer.training_step(experience, args.algo.kl.init_coef, 0, norm)

    expected_leaf = logp.clone().requires_grad_()
    torch.manual_seed(0)
    expected, metrics = alg.policy_loss(expected_leaf, old, adv, mask, ref if alg.needs_reference else None)
    (loss,) = strategy.losses
    torch.testing.assert_close(loss, expected)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(leaf.grad, expected_leaf.grad)
    for key in metrics:
        assert status["metrics"][key].item() == pytest.approx(metrics[key], abs=1e-6)


@pytest.mark.parametrize("name", [name for name in ALL if name not in PER_TOKEN_SELECTION])
def test_global_token_normalisation_over_dp_ranks_and_accumulation(name, openrlhf_with, monkeypatch):
    """OpenRLHF normalises by the optimizer step's global token (or sequence) count, _optimizer_step_loss_norm
    over all micro-batches, times dp_size; DeepSpeed then averages gradients over ranks and scales each
    micro-batch by 1/gas. The patched loss summed that way equals alg.policy_loss on the whole batch."""
    alg, args, modules = openrlhf_with(name)
    trainer, _ = actor_trainer(modules, args, monkeypatch)
    loss_fn = trainer.actor_loss_fn
    from openrlhf.utils.loss_utils import _optimizer_step_loss_norm

    logp, old, ref, adv, mask = batch(2, spread=0.3)
    parts = [slice(0, 2), slice(2, 3), slice(3, 6)]  # uneven micro-batches
    for dp_size, gas in ((3, 1), (1, 3)):
        leaf = logp.clone().requires_grad_()
        norm = _optimizer_step_loss_norm([mask[p] for p in parts], None, dp_size, gas)
        total = 0
        for p in parts:
            loss_fn.experience = SimpleNamespace(base_action_log_probs=ref[p], info={})
            loss, *_ = loss_fn(leaf[p], old[p], adv[p], action_mask=mask[p], **norm)
            total = total + loss / (dp_size * gas)  # DP gradient mean, DeepSpeed's 1/gas per micro-batch
        expected_leaf = logp.clone().requires_grad_()
        expected, _ = alg.policy_loss(expected_leaf, old, adv, mask, ref if alg.needs_reference else None)
        torch.testing.assert_close(total, expected)
        total.backward()
        expected.backward()
        torch.testing.assert_close(leaf.grad, expected_leaf.grad)


def test_fipo_dropped_sequences_still_count_in_openrlhfs_token_total(openrlhf_with, monkeypatch):
    """Deviation: OpenRLHF fixes the denominator (all response tokens of the step) before the forward pass,
    so when FIPO drops a sequence the loss is the kept tokens' sum over ALL tokens, i.e.
    policy_loss (sum over kept / kept tokens) x kept / all."""
    alg, args, modules = openrlhf_with("fipo")
    loss_fn = actor_trainer(modules, args, monkeypatch)[0].actor_loss_fn
    from openrlhf.utils.loss_utils import _optimizer_step_loss_norm

    logp, old, _, adv, mask = batch(3, dual_clip_hit=True)
    loss, *_ = loss_fn(logp, old, adv, action_mask=mask, **_optimizer_step_loss_norm([mask], None, 1, 1))
    expected, metrics = alg.policy_loss(logp, old, adv, mask)
    assert metrics["dropped_seq_frac"] == pytest.approx(1 / 6)
    kept, total = (mask.sum() - mask[1].sum()).item(), mask.sum().item()
    torch.testing.assert_close(loss, expected * kept / total)


def experiences_for(modules, rewards, lengths, n, sizes, seed=0):
    """Rollout samples 0..M-1 (n per prompt, consecutive) cut into experiences in a shuffled order, as
    RemoteExperienceMaker.split_rollout_samples numbers them."""
    from openrlhf.trainer.ppo_utils.experience import Experience

    order = torch.randperm(len(rewards), generator=torch.Generator().manual_seed(seed)).tolist()
    experiences, start = [], 0
    for size in sizes:
        idx = order[start : start + size]
        start += size
        mask = torch.arange(int(max(lengths[idx])))[None, :] < lengths[idx][:, None]  # its own width
        experiences.append(
            Experience(
                index=idx,
                rewards=rewards[idx].clone(),
                response_length=lengths[idx],
                action_mask=mask,
                kl=torch.zeros(mask.shape),
                info={},
            )
        )
    return experiences


@pytest.mark.parametrize("name", ALL)
def test_patched_advantages_on_openrlhf_experiences_equal_ours(name, openrlhf_with):
    alg, args, modules = openrlhf_with(name)
    n = args.rollout.n_samples_per_prompt
    rewards = torch.tensor([1.0, -1, -1, 1, -1, -1, -1, -1, 1, 1, -1, 1, 1, 1, 1, 1])  # 4 groups of 4
    lengths = torch.tensor([3, 12, 9, 10, 11, 12, 2, 5, 12, 8, 9, 1, 4, 10, 12, 7])
    experiences = experiences_for(modules, rewards, lengths, n, sizes=[5, 3, 8])
    maker = SimpleNamespace(strategy=SimpleNamespace(args=args))
    out = modules.experience_maker.RemoteExperienceMaker.compute_advantages_and_returns(maker, experiences)

    shaped = alg.shape_rewards(rewards, lengths, CONFIG.max_response_length)
    mask = torch.arange(12)[None, :] < lengths[:, None]  # [16, 12] in rollout order
    expected = alg.advantages(shaped, torch.arange(16) // n, mask=mask)  # [16] or [16, 12]
    for e in out:
        width = e.action_mask.shape[1]
        mine = expected[e.index][:, :width] if expected.dim() == 2 else expected[e.index][:, None]
        torch.testing.assert_close(e.advantages, mine * e.action_mask)
        torch.testing.assert_close(e.rewards, shaped[e.index])
    if name in OVERRIDES:  # the overlong penalty did act: 12 = max length -> -1
        assert shaped[1].item() == pytest.approx(-2.0)


# Ours -> OpenRLHF's own estimator of the same name (OpenRLHF is the REINFORCE++ authors' code).
NATIVE = {
    "dapo": ("group_norm", {}),
    "dr-grpo": ("dr_grpo", {}),
    "rloo": ("rloo", {}),
    "reinforce++-baseline": ("reinforce_baseline", {}),
    "reinforce++": ("reinforce", {}),
    "reinforce++ gamma 0.9": ("reinforce", {"gamma": 0.9}),
}


@pytest.mark.parametrize("case", list(NATIVE))
def test_group_ids_and_overlong_flags_agree_with_openrlhfs_own_computation(case, openrlhf_with):
    """Cross-check of the translation and of the estimators: OpenRLHF's native estimators (its own grouping
    of experience.index; for DAPO its own overlong penalty) give our advantages, up to its std epsilon."""
    estimator, overrides = NATIVE[case]
    alg, args, modules = openrlhf_with(case.split()[0])
    alg = get_algorithm(alg.name, **{**OVERRIDES.get(alg.name, {}), **overrides})
    args.algo.advantage.gamma = overrides.get("gamma", 1.0)
    native = modules.experience_maker.RemoteExperienceMaker.__dict__["compute_advantages_and_returns"]
    rewards = torch.tensor([1.0, -1, -1, 1, -1, -1, 1, -1, 1, 1, -1, 1, -1, 1, 1, 1])
    lengths = torch.tensor([3, 12, 9, 10, 11, 12, 2, 5, 12, 8, 9, 1, 4, 10, 12, 7])
    from fipo_bench.backends.openrlhf.patches import registry_advantages

    registry = registry_advantages(
        experiences_for(modules, rewards, lengths, 4, sizes=[8, 8], seed=1),
        alg,
        4,
        CONFIG.max_response_length,
    )
    # the class's method is patched; OpenRLHF's original is reachable only by re-importing unpatched
    import importlib
    import sys

    del sys.modules["openrlhf.trainer.ppo_utils.experience_maker"]
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, plugin.PatchOnImport)]
    unpatched = importlib.import_module("openrlhf.trainer.ppo_utils.experience_maker")
    assert unpatched.RemoteExperienceMaker.compute_advantages_and_returns is not native
    maker = unpatched.RemoteExperienceMaker.__new__(unpatched.RemoteExperienceMaker)
    maker.strategy, maker.args, maker.advantage_estimator = SimpleNamespace(args=args), args, estimator
    args.algo.advantage.estimator = estimator
    maker.kl_ctl = SimpleNamespace(value=0.0)
    theirs = maker.compute_advantages_and_returns(
        experiences_for(modules, rewards, lengths, 4, sizes=[8, 8], seed=1)
    )
    for a, b in zip(registry, theirs, strict=True):
        torch.testing.assert_close(a.rewards, b.rewards)  # overlong penalty: same formula, same flags
        # OpenRLHF's whitened advantages are not zeroed on padding (its loss masks them)
        torch.testing.assert_close(a.advantages, b.advantages * a.action_mask, rtol=1e-5, atol=1e-5)


class FakeRay:
    """ray.wait/ray.get over plain lists (one prompt's responses per "ref")."""

    @staticmethod
    def wait(refs, num_returns=1, timeout=None):
        return refs[:num_returns], refs[num_returns:]

    @staticmethod
    def get(ref):
        return ref


def test_prompt_cap_and_step_cap(openrlhf_with, monkeypatch):
    """Under dynamic filtering OpenRLHF refills every filtered prompt without end; the plugin stops after
    max_gen_batches x batch prompts, and after num_steps batches. Real SamplesGenerator code, fake engines:
    every group is all-correct, so every prompt is filtered."""
    alg, args, modules = openrlhf_with("dapo")
    sg = modules.samples_generator
    monkeypatch.setattr(sg, "ray", FakeRay)
    prompts = iter([(None, [f"p{i}"], [str(i)], [None]) for i in range(1000)])
    generator = sg.SamplesGenerator.__new__(sg.SamplesGenerator)
    generator.args = args
    n = args.rollout.n_samples_per_prompt
    generator._dispatch_prompts_to_vllm = lambda ps, labels, images=None, **kw: [[{"p": p}] * n for p in ps]
    generator._process_response_into_experience = lambda response, **kw: SimpleNamespace(scores=torch.ones(1))
    accepted, consumed, exhausted = generator._generate_vllm(prompts, 4, True)
    assert (accepted, consumed, exhausted) == ([], 4 * CONFIG.max_gen_batches, False)
    assert next(prompts)[1] == [f"p{4 * CONFIG.max_gen_batches}"]  # nothing drawn beyond the cap

    monkeypatch.setattr(
        generator,
        "_generate_vllm",
        lambda dataloader_iter, num_prompts, dynamic_filtering, **kw: (
            [object()] * num_prompts * n,
            num_prompts,
            False,
        ),
    )
    generator._dataloader_iter, generator._sample_buffer = iter([]), []
    generator.args.vllm.enable_sleep = False
    steps = [len(generator.generate_samples()[0]) for _ in range(CONFIG.num_steps + 2)]
    assert steps == [4 * n] * CONFIG.num_steps + [0, 0]


@pytest.mark.parametrize("gpus", [1, 2])
def test_a_capped_short_batch_trains_on_one_rank_and_stops_the_job_on_several(gpus, openrlhf_with,
                                                                             monkeypatch):
    """After the cap, the step trains on what it kept with one data-parallel rank (ppo_actor's patch
    makes that one optimizer step); with more, OpenRLHF would split it unevenly over the ranks, whose
    collectives then no longer pair up, so the job stops with a message instead."""
    alg, args, modules = openrlhf_with("dapo")
    args.actor.num_gpus_per_node = gpus
    sg = modules.samples_generator
    monkeypatch.setattr(sg, "ray", FakeRay)
    prompts = iter([(None, [f"p{i}"], [str(i)], [None]) for i in range(1000)])
    generator = sg.SamplesGenerator.__new__(sg.SamplesGenerator)
    generator.args = args
    n = args.rollout.n_samples_per_prompt
    generator._dispatch_prompts_to_vllm = lambda ps, labels, images=None, **kw: [
        [{"p": p, "mixed": p == "p0"}] * n for p in ps  # only the first prompt's group passes the filter
    ]
    generator._process_response_into_experience = lambda response, **kw: SimpleNamespace(
        scores=torch.tensor([0.5 if response["mixed"] else 1.0])
    )
    if gpus == 1:
        accepted, consumed, _ = generator._generate_vllm(prompts, 4, True)
        assert (len(accepted), consumed) == (n, 4 * CONFIG.max_gen_batches)
    else:
        with pytest.raises(RuntimeError, match=rf"kept {n} of {4 * n} samples .* 2 data-parallel ranks"):
            generator._generate_vllm(prompts, 4, True)


def test_setup_hook_patches_inside_a_ray_worker_and_spares_vllm_processes(tmp_path):
    """A local Ray cluster started as the driver starts it: the hook runs in the worker processes; a
    worker that imports only the vLLM side of OpenRLHF stays unpatched and never loads deepspeed."""
    import openrlhf_stubs
    import ray

    from fipo_bench.backends.openrlhf.driver import runtime_env

    # tests/support is not importable in Ray's workers: the closures below carry its code with them.
    ray.cloudpickle.register_pickle_by_value(openrlhf_stubs)
    alg = get_algorithm("fipo")
    env = translate.plugin_env(CONFIG, alg)

    def vllm_side():
        import sys

        from fipo_bench.backends.openrlhf.plugin import patch_report

        with openrlhf_stubs.stubbed_gpu_modules():
            import openrlhf.trainer.ray.vllm_engine  # noqa: F401  (what an engine process imports)

            hooked = any(type(finder).__name__ == "PatchOnImport" for finder in sys.meta_path)
            return os.getpid(), hooked, patch_report(), "deepspeed" in sys.modules

    def trainer_side():
        from fipo_bench.backends.openrlhf.plugin import patch_report

        with openrlhf_stubs.stubbed_gpu_modules():
            import openrlhf.trainer.ppo_utils.experience_maker as maker
            import openrlhf.trainer.ray.ppo_actor as actor

            return (
                os.getpid(),
                patch_report(),
                actor.PolicyLoss.__name__,
                actor.PolicyLoss.algorithm.name,
                maker.RemoteExperienceMaker.compute_advantages_and_returns.__module__,
            )

    ray.init(address="local", num_cpus=1, include_dashboard=False, runtime_env={**runtime_env(env)},
             log_to_driver=False)
    try:
        pid, hooked, report, deepspeed_loaded = ray.get(ray.remote(vllm_side).remote())
        assert pid != os.getpid() and hooked and not any(report.values()) and not deepspeed_loaded
        pid, report, loss_name, algo, advantages_module = ray.get(ray.remote(trainer_side).remote())
    finally:
        ray.shutdown()
    assert pid != os.getpid()
    assert report["openrlhf.trainer.ray.ppo_actor"] and report["openrlhf.trainer.ppo_utils.experience_maker"]
    assert (loss_name, algo, advantages_module) == (
        "RegistryPolicyLoss",
        "fipo",
        "fipo_bench.backends.openrlhf.patches",
    )


def test_hook_does_nothing_outside_a_fipo_bench_job(monkeypatch):
    import sys

    monkeypatch.delenv(translate.ENV_ALGO, raising=False)
    before = list(sys.meta_path)
    plugin.setup_worker()
    assert sys.meta_path == before
