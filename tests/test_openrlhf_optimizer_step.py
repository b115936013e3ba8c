"""Every rollout step ends in exactly one optimizer step on all it kept: OpenRLHF 0.11.2's real
ActorPPOTrainer.ppo_train (patched by the plugin) over a real DeepSpeed engine (CPU accelerator, gloo, one
rank), with a batch shorter than train.batch_size as dynamic sampling leaves it after its cap.

Before the fix, OpenRLHF's DataLoader dropped the short last micro-batch and DeepSpeed stepped only on
every gas-th micro-batch counted since the start of training: a step that kept 3 of 8 samples took no
optimizer step and its gradient leaked into the next step's."""

import socket
from types import SimpleNamespace

import pytest

pytest.importorskip("openrlhf", reason="OpenRLHF backend tests need openrlhf (installed by .ci/run)")
pytest.importorskip("deepspeed", reason="OpenRLHF backend tests need deepspeed (installed by .ci/run)")

import torch  # noqa: E402
from openrlhf_stubs import stubbed_gpu_modules  # noqa: E402

from fipo_bench.algorithms import get_algorithm  # noqa: E402
from fipo_bench.backends.openrlhf import plugin, translate  # noqa: E402
from fipo_bench.config import RunConfig  # noqa: E402

VOCAB, WIDTH, PROMPT, RESPONSE = 11, 6, 3, 4
TRAIN_BATCH, MICRO = 8, 2  # gas = 4 micro-batches per optimizer step on one rank
LR = 0.05


class TinyPolicy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(VOCAB, WIDTH)
        self.head = torch.nn.Linear(WIDTH, VOCAB)

    def forward(self, sequences):  # [B, S] -> log-probabilities of each next token [B, S-1]
        logits = self.head(torch.tanh(self.embed(sequences)))
        return logits[:, :-1].log_softmax(-1).gather(-1, sequences[:, 1:, None]).squeeze(-1)


class ActorLike:
    """What ActorPPOTrainer uses of OpenRLHF's Actor: `.model` (the DeepSpeed engine) and its call."""

    def __init__(self, engine):
        self.model = engine

    def train(self):
        self.model.train()

    def __call__(self, sequences, action_mask, **_kwargs):
        logp = self.model(sequences)[:, -action_mask.shape[1] :]
        return logp, SimpleNamespace(entropy=torch.zeros_like(logp), aux_loss=None)


def samples(n, seed):
    g = torch.Generator().manual_seed(seed)
    sequences = torch.randint(0, VOCAB, (n, PROMPT + RESPONSE), generator=g)
    lengths = torch.randint(1, RESPONSE + 1, (n,), generator=g)
    mask = torch.arange(RESPONSE)[None, :] < lengths[:, None]
    attention = torch.cat([torch.ones(n, PROMPT, dtype=torch.long), mask.long()], dim=1)
    advantages = torch.randn(n, generator=g)[:, None] * mask
    return sequences, attention, mask, advantages


@pytest.fixture(scope="module")
def gloo_rank():
    """A one-rank gloo process group, as DeepSpeed's CPU accelerator sets it up in an OpenRLHF worker."""
    if torch.distributed.is_initialized():
        pytest.fail("a default process group already exists in this process")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1
    )
    yield
    torch.distributed.destroy_process_group()


def test_a_short_step_takes_one_optimizer_step_on_all_it_kept(gloo_rank, monkeypatch, tmp_path):
    import deepspeed

    alg = get_algorithm("dapo")
    config = RunConfig(
        run_name="t", algos=("dapo",), model="/m", dataset="d.jsonl", eval_datasets=("aime24",),
        rollout_batch_size=4, samples_per_prompt=4, mini_batch_size=2, micro_batch_size=MICRO,
        max_prompt_length=PROMPT, max_response_length=RESPONSE, device="auto", recompute_old_logp=True,
    )
    for key, value in translate.plugin_env(config, alg).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LOCAL_RANK", "0")  # what OpenRLHF's worker sets for DeepSpeed (launcher.py:36)
    plugin.algorithm_from_env.cache_clear()
    with stubbed_gpu_modules():
        plugin.setup_worker()
        import openrlhf.trainer.ray.ppo_actor as ppo_actor
        from openrlhf.trainer.ppo_utils.experience import Experience
        from openrlhf.trainer.ppo_utils.replay_buffer import NaiveReplayBuffer

        from fipo_bench.backends.openrlhf.driver import parse_openrlhf_args

        paths = translate.RunPaths(tmp_path / "run", tmp_path / "reward.py", tmp_path / "prompts.jsonl")
        layout = translate.Layout(gpus_per_node=1, vllm_engines=1, colocate=False)
        args = parse_openrlhf_args(translate.openrlhf_args(config, alg, 0, paths, layout, model="/m",
                                                           num_prompts=64))
        assert (args.train.batch_size, args.train.micro_batch_size) == (TRAIN_BATCH, MICRO)

        model = TinyPolicy()
        reference = TinyPolicy()  # the same initial weights, trained by hand below
        engine, *_ = deepspeed.initialize(
            model=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=LR),
            config={"train_batch_size": TRAIN_BATCH, "train_micro_batch_size_per_gpu": MICRO,
                    "gradient_accumulation_steps": TRAIN_BATCH // MICRO, "zero_optimization": {"stage": 0}},
        )
        strategy = SimpleNamespace(
            args=args, ring_attn_group=None, accumulated_gradient=TRAIN_BATCH // MICRO,
            backward=lambda loss, actor, optim: actor.model.backward(loss),  # as DeepspeedStrategy does
            optimizer_step=lambda optim, actor, scheduler, name=None: actor.model.step(),
            get_grad_norm=lambda actor: 0.0, all_reduce=lambda status: status, is_rank_0=lambda: True,
        )
        monkeypatch.setattr(ppo_actor, "torch_dist_barrier_and_cuda_sync", lambda: None)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)  # the buffer's unused target_device
        trainer = ppo_actor.ActorPPOTrainer(
            strategy, ActorLike(engine), ema_model=None, actor_optim=None,
            actor_scheduler=SimpleNamespace(get_last_lr=lambda: [LR]), micro_train_batch_size=MICRO,
            dataloader_pin_memory=False,
        )
        assert isinstance(trainer.replay_buffer, NaiveReplayBuffer)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: "cpu")  # where ppo_train moves batches

        for step, kept in enumerate((3, 8, 5)):  # samples kept by three rollout steps
            sequences, attention, mask, advantages = samples(kept, seed=step)
            with torch.no_grad():
                old = reference(sequences)[:, -RESPONSE:]
            trainer.replay_buffer.append(Experience(
                sequences=sequences, attention_mask=attention, action_mask=mask, action_log_probs=old,
                advantages=advantages, index=list(range(kept)), info={},
            ))
            steps_before = engine.global_steps
            trainer.ppo_train(0.0)
            trainer.replay_buffer.clear()
            assert engine.global_steps == steps_before + 1

            # The same update by hand: one SGD step on DAPO's token-mean loss over everything kept.
            reference.zero_grad()
            loss, _ = alg.policy_loss(reference(sequences)[:, -RESPONSE:], old, advantages, mask)
            loss.backward()
            with torch.no_grad():
                for p in reference.parameters():
                    p -= LR * p.grad
            for ours, theirs in zip(model.parameters(), reference.parameters(), strict=True):
                torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    plugin.algorithm_from_env.cache_clear()
