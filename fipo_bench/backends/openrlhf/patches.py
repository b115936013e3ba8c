"""The patches plugin.py applies to OpenRLHF 0.11 modules, each right after the module is imported.

They put the registry's algorithm in place of OpenRLHF's loss, advantages and value loss, so both
backends run the same math. This is the boundary where OpenRLHF's names become ours:
`log_probs -> logp`, `old_log_probs -> old_logp`, `base_action_log_probs -> ref_logp`,
`action_mask -> mask`, an experience's `index // n_samples_per_prompt -> group_ids`.
"""

from __future__ import annotations

import functools
import math
import os

import torch

from fipo_bench import ops
from fipo_bench.backends.openrlhf.translate import (
    ENV_MAX_GEN_BATCHES,
    ENV_MAX_STEPS,
    ENV_START_STEP,
    UnsupportedOption,
)


def make_policy_loss_class(alg, aggregate_loss):
    """A drop-in for openrlhf.models.loss.PolicyLoss (same constructor and forward) computing `alg`'s loss."""

    class RegistryPolicyLoss(torch.nn.Module):
        algorithm = alg

        def __init__(
            self,
            clip_eps_low: float = 0.2,
            clip_eps_high: float = 0.2,
            dual_clip: float | None = None,
            token_level_loss: bool = True,
            policy_loss_type: str = "ppo",
            is_correction_level: str = "off",
            **_is_correction,
        ) -> None:
            super().__init__()
            hp = alg.hyperparameters()
            if policy_loss_type != "ppo" or is_correction_level != "off":
                raise UnsupportedOption(
                    f"--actor.policy_loss_type {policy_loss_type} / "
                    f"--algo.advantage.is_correction_level {is_correction_level}: "
                    f"{alg.name}'s loss replaces OpenRLHF's; use ppo / off"
                )
            # The command line was derived from the same hyperparameters; a mismatch means they diverged.
            expected = {
                "clip_eps_low": hp.get("clip_low", clip_eps_low),
                "clip_eps_high": hp.get("clip_high", clip_eps_high),
                "dual_clip": hp.get("dual_clip", dual_clip),
                "token_level_loss": alg.loss_agg == "token-mean",
            }
            given = {
                "clip_eps_low": clip_eps_low,
                "clip_eps_high": clip_eps_high,
                "dual_clip": dual_clip,
                "token_level_loss": token_level_loss,
            }
            if given != expected:
                raise UnsupportedOption(
                    f"OpenRLHF's loss flags {given} disagree with {alg.name}'s hyperparameters {expected}"
                )
            self.token_level_loss = token_level_loss
            self.experience = None  # set by the patched training_step around each call

        def forward(
            self,
            log_probs,
            old_log_probs,
            advantages,
            action_mask=None,
            rollout_log_probs=None,
            dp_size: int = 1,
            batch_num_tokens=None,
            global_batch_size=None,
        ):
            ref_logp = None
            if alg.needs_reference:
                ref_logp = getattr(self.experience, "base_action_log_probs", None)
            mask = torch.ones_like(log_probs, dtype=torch.bool) if action_mask is None else action_mask
            token_loss, loss_mask, metrics = alg.token_loss(
                log_probs, old_log_probs, advantages, mask, ref_logp
            )
            correct = None
            if alg.needs_correctness:
                correct = getattr(self.experience, "scores", None)
                if correct is None:
                    raise RuntimeError(
                        f"{alg.name}'s loss needs each sample's correctness (experience.scores, from "
                        f"the reward file's 'scores'); none arrived"
                    )
                correct = correct.to(log_probs.device).reshape(-1)
            extra = alg.auxiliary_loss(log_probs, mask, correct)
            if extra is not None:  # a mean over this micro-batch's tokens: weighted as aggregate_loss weighs
                term, extra_metrics = extra
                extra_term = term * (mask.sum() / batch_num_tokens) * dp_size
                metrics.update(extra_metrics)
            if not self.token_level_loss:  # OpenRLHF's seq-mean-token-mean, rescaled to alg.loss_agg
                token_loss = token_loss * ops.seq_mean_token_mean_scale(
                    loss_mask, alg.loss_agg, alg.num_tokens_norm
                ).to(token_loss.dtype)
            loss = aggregate_loss(
                token_loss,
                loss_mask,
                token_level_loss=self.token_level_loss,
                dp_size=dp_size,
                batch_num_tokens=batch_num_tokens,
                global_batch_size=global_batch_size,
            )
            if extra is not None:
                loss = loss + extra_term
            if self.experience is not None:
                self.experience.info.update({key: value.detach() for key, value in metrics.items()})
            zero = torch.zeros((), device=log_probs.device)
            clip_ratio = metrics.get("clip_frac_high", zero) + metrics.get("clip_frac_low", zero)
            return loss, clip_ratio.detach(), metrics.get("ppo_kl", zero).detach(), None, None

    return RegistryPolicyLoss


def patch_ppo_actor(module, alg) -> None:
    """`PolicyLoss` -> `RegistryPolicyLoss`; every rollout step ends in one optimizer step on all it kept.

    The loss is `alg.token_loss` under OpenRLHF's own `aggregate_loss` (the optimizer step's global token
    count `batch_num_tokens`, times `dp_size` for the averaging across data-parallel ranks; same 5-tuple).
    OpenRLHF reduces by token-mean or seq-mean-token-mean only; the token-sum modes (Dr. GRPO's) run as
    seq-mean-token-mean on token losses scaled per sequence (`ops.seq_mean_token_mean_scale`), which is
    exact. `training_step` hands the loss the experience (for `ref_logp` and our metrics) and passes
    OpenRLHF a KL coefficient of 0, because our loss already contains the algorithm's KL term.

    An algorithm's `auxiliary_loss` (VAPO's positive-example LM loss: lm_loss_coef x the mean NLL of the
    micro-batch's correct responses, from `experience.scores`, the reward file's correctness) is added
    weighted by the micro-batch's share of the step's tokens. It equals `alg.policy_loss`'s term when one
    micro-batch makes the step; otherwise each micro-batch's correct tokens are averaged on their own
    (OpenRLHF does not know the step's number of correct tokens in advance).

    One step per rollout step, as in the local backend: OpenRLHF's DataLoader drops a last short
    micro-batch (`drop_last=True`), and DeepSpeed steps only after every `gas`-th micro-batch counted since
    the start of training, so a step that kept fewer than `train.batch_size` samples (dynamic sampling
    after the cap) would take no step and carry its gradient into the next. Here nothing is dropped and
    the accumulation boundary is set explicitly: after each window of `gas` micro-batches (OpenRLHF's
    loss normalisation windows) and after the last.

    Value pretraining: OpenRLHF appends every rollout to the frozen actor's replay buffer but clears it
    only when the actor trains, so its first update would take every pretraining rollout too; the patched
    `ppo_train` keeps only the newest step's share.
    """
    from openrlhf.models.loss import aggregate_loss

    loss_class = make_policy_loss_class(alg, aggregate_loss)
    module.PolicyLoss = loss_class
    data_loader = module.DataLoader  # used by ActorPPOTrainer.ppo_train only
    module.DataLoader = lambda *args, **kwargs: data_loader(*args, **{**kwargs, "drop_last": False})
    trainer = module.ActorPPOTrainer
    original, original_ppo_train = trainer.training_step, trainer.ppo_train

    @functools.wraps(original_ppo_train)
    def ppo_train(self, kl_ctl):
        buffer = self.replay_buffer
        if alg.needs_critic and alg.value_pretrain_steps:
            # the frozen actor's buffer still holds the pretraining rollouts (see the docstring)
            args = self.args
            newest = args.rollout.batch_size * args.rollout.n_samples_per_prompt // data_parallel_size(args)
            if len(buffer.items) % newest:  # ranks got unequal shares: the newest step is not the last rows
                raise RuntimeError(
                    f"{alg.name}: the actor's replay buffer holds {len(buffer.items)} items, not a multiple "
                    f"of one step's {newest} per rank; value pretraining needs rollout_batch_size x "
                    f"samples_per_prompt divisible by the data-parallel size"
                )
            del buffer.items[:-newest]
        self._fipo_bench_micro_batches = math.ceil(len(buffer) / buffer.sample_batch_size)
        try:
            return original_ppo_train(self, kl_ctl)
        finally:
            self._fipo_bench_micro_batches = None

    @functools.wraps(original)
    def training_step(self, experience, kl_ctl, step, loss_batch_info=None):
        if not isinstance(self.actor_loss_fn, loss_class):
            return original(self, experience, kl_ctl, step, loss_batch_info)
        micro_batches = getattr(self, "_fipo_bench_micro_batches", None)
        if micro_batches and not self.args.train.dynamic_batch_enable:
            window_end = (step + 1) % self.strategy.accumulated_gradient == 0
            self.actor.model.set_gradient_accumulation_boundary(window_end or step + 1 == micro_batches)
        self.actor_loss_fn.experience = experience
        try:
            # OpenRLHF adds kl_ctl * its own KL loss; ours is inside alg.token_loss (logged as "kl").
            return original(self, experience, 0.0, step, loss_batch_info)
        finally:
            self.actor_loss_fn.experience = None

    trainer.ppo_train = ppo_train
    trainer.training_step = training_step


def _concatenated(experiences, alg, max_response_length: int):
    """A rollout's experiences as one batch of M samples: (their sizes, the shaped rewards [M], the action
    masks right-padded to one width [M, width], and `padded`, which does the same to other [B, A] tensors)."""
    sizes = [len(e.index) for e in experiences]
    rewards = torch.cat(
        [e.rewards.to(torch.promote_types(e.rewards.dtype, torch.float32)) for e in experiences]
    )
    lengths = torch.cat([e.response_length for e in experiences])  # [M]
    width = max(e.action_mask.shape[1] for e in experiences)

    def padded(tensors):
        widened = [torch.nn.functional.pad(t, (0, width - t.shape[1])) for t in tensors]
        return torch.cat(widened).to(rewards.device)

    mask = padded([e.action_mask.bool() for e in experiences])
    return sizes, alg.shape_rewards(rewards, lengths, max_response_length), mask, padded


def registry_advantages(experiences, alg, n_samples_per_prompt: int, max_response_length: int):
    """Set rewards (shaped), advantages and returns [B, A] of OpenRLHF experiences in place; returns them.

    Groups: OpenRLHF numbers the samples of a rollout batch 0..M-1 in `experience.index`, the n samples
    of a prompt consecutively, so group_ids = index // n.
    """
    sizes, shaped, mask, _ = _concatenated(experiences, alg, max_response_length)
    group_ids = torch.tensor([i for e in experiences for i in e.index]) // n_samples_per_prompt  # [M]
    advantages = alg.advantages(shaped, group_ids, mask=mask)  # [M] or [M, width]
    group_std = ops.group_mean_std(shaped, group_ids)[1]
    for e, reward, advantage, std in zip(
        experiences, shaped.split(sizes), advantages.split(sizes), group_std.split(sizes), strict=True
    ):
        e.rewards = reward
        per_token = advantage[:, : e.action_mask.shape[1]] if advantage.dim() == 2 else advantage[:, None]
        e.advantages = per_token * e.action_mask  # [B, A]
        e.returns = e.advantages.clone()
        e.kl = None
        e.info.update({"reward": reward.clone(), "return": reward.clone(), "group_reward_std": std})
    return experiences


def registry_critic_advantages(experiences, alg, max_response_length: int):
    """Set rewards (shaped), advantages and returns [B, A] of OpenRLHF experiences from their critic values
    (`experience.values`, [B, A]), with the rollout-side critic metrics in `info`; returns them."""

    sizes, shaped, mask, padded = _concatenated(experiences, alg, max_response_length)
    values = padded([e.values.float() for e in experiences])  # [M, width]
    advantages, returns, batch_metrics = alg.critic_rollout(shaped, values, mask)
    for e, reward, advantage, target in zip(
        experiences, shaped.split(sizes), advantages.split(sizes), returns.split(sizes), strict=True
    ):
        e.rewards = reward
        e.advantages = advantage[:, : e.action_mask.shape[1]] * e.action_mask  # [B, A]
        e.returns = target[:, : e.action_mask.shape[1]] * e.action_mask
        e.kl = None
        e.info.update({"reward": reward.clone(), "return": reward.clone()})
        e.info.update({key: torch.full_like(reward, value) for key, value in batch_metrics.items()})
    return experiences


def patch_experience_maker(module, alg) -> None:
    """`compute_advantages_and_returns` -> `alg.shape_rewards` + `alg.advantages` (`registry_advantages`),
    or with a critic `alg.critic_rollout` on the rollout values (`registry_critic_advantages`,
    whitened over the whole rollout batch, with the rollout-side `CRITIC_METRICS` in `info`)."""
    @torch.no_grad()
    def compute_advantages_and_returns(self, experiences):
        args = self.strategy.args
        max_response_length = args.rollout.max_new_tokens or args.data.max_len
        if alg.needs_critic:
            return registry_critic_advantages(experiences, alg, max_response_length)
        return registry_advantages(experiences, alg, args.rollout.n_samples_per_prompt, max_response_length)

    module.RemoteExperienceMaker.compute_advantages_and_returns = compute_advantages_and_returns


def make_value_loss_class(alg, aggregate_loss):
    """A drop-in for openrlhf.models.loss.ValueLoss (same constructor and forward) computing `alg`'s terms."""
    from fipo_bench.algorithms.ppo import value_loss_terms

    class RegistryValueLoss(torch.nn.Module):
        algorithm = alg

        def __init__(self, clip_eps: float | None = None, token_level_loss: bool = True) -> None:
            super().__init__()
            if clip_eps != alg.value_clip:
                raise UnsupportedOption(
                    f"OpenRLHF's --critic.value_clip {clip_eps} disagrees with {alg.name}.value_clip "
                    f"{alg.value_clip}"
                )
            self.last_metrics: dict[str, torch.Tensor] = {}

        def forward(self, values, old_values, returns, action_mask=None, dp_size: int = 1,
                    batch_num_tokens=None, global_batch_size=None):
            mask = torch.ones_like(values, dtype=torch.bool) if action_mask is None else action_mask.bool()
            zero = torch.zeros((), dtype=torch.float32, device=values.device)
            clean = [torch.where(mask, t.float(), zero) for t in (values, old_values.detach(), returns)]
            per_token, clipped = value_loss_terms(*clean, alg.value_clip)
            token_level = alg.value_loss_agg == "token-mean"
            if not token_level:  # OpenRLHF's seq-mean-token-mean, rescaled to value_loss_agg
                per_token = per_token * ops.seq_mean_token_mean_scale(mask, alg.value_loss_agg)
            loss = aggregate_loss(per_token, mask, token_level_loss=token_level, dp_size=dp_size,
                                  batch_num_tokens=batch_num_tokens, global_batch_size=global_batch_size)
            self.last_metrics = ops.masked_fractions({"value_clip_frac": clipped}, mask)
            return 0.5 * loss

    return RegistryValueLoss


def patch_ppo_critic(module, alg) -> None:
    """`ValueLoss` -> `RegistryValueLoss` (`alg.value_loss`'s per-token terms under OpenRLHF's
    `aggregate_loss`, as the policy loss). The critic's training step adds `value_clip_frac` and the
    rollout's critic metrics to its status, so they are logged during value pretraining too (the frozen
    actor logs nothing then). `critic_loss`, `critic_lr` and `critic_grad_norm` are OpenRLHF's own."""
    if not alg.needs_critic:  # OpenRLHF builds no critic then; its module stays as it is
        return
    from openrlhf.models.loss import aggregate_loss

    from fipo_bench.algorithms.ppo import CRITIC_METRICS

    module.ValueLoss = make_value_loss_class(alg, aggregate_loss)
    trainer = module.CriticPPOTrainer
    original = trainer.training_step

    @functools.wraps(original)
    def training_step(self, experience, step, loss_batch_info=None):
        status = original(self, experience, step, loss_batch_info)
        status.update({key: float(value) for key, value in self.critic_loss_fn.last_metrics.items()})
        for key in CRITIC_METRICS:  # the rollout's, set by the experience maker
            value = experience.info.get(key)  # the replay buffer batches per-sample info as a list
            if isinstance(value, list) and value:
                value = torch.stack([torch.as_tensor(v) for v in value])
            if isinstance(value, torch.Tensor):
                status[key] = float(value.float().mean())
        return status

    trainer.training_step = training_step


def data_parallel_size(args) -> int:
    """The actor's data-parallel ranks in OpenRLHF: its GPUs over ring-attention x tensor-parallel size."""
    gpus = args.actor.num_nodes * args.actor.num_gpus_per_node
    return gpus // (args.ds.ring_attn_size * args.ds.tensor_parallel_size)


def patch_samples_generator(module, alg) -> None:
    """Stop after $FIPO_BENCH_MAX_STEPS rollout batches (the prompt file holds more under dynamic
    sampling), and draw at most $FIPO_BENCH_MAX_GEN_BATCHES x batch prompts per batch (OpenRLHF refills
    filtered prompts without a cap; after the cap the step trains on what it kept).

    With more than one data-parallel rank a short batch would split unevenly over the ranks (their
    collectives would not pair up), so there the capped step stops the job with a clear error, as verl's
    DAPO recipe does when max_num_gen_batches runs out.
    """
    max_steps = int(os.environ.get(ENV_MAX_STEPS, "0")) or None
    max_gen_batches = int(os.environ.get(ENV_MAX_GEN_BATCHES, "0")) or None
    start_step = int(os.environ.get(ENV_START_STEP, "0"))
    generator = module.SamplesGenerator
    original_generate, original_vllm = generator.generate_samples, generator._generate_vllm
    original_collect = module._collect_prompt_batch
    budget: list[int | None] = [None]  # prompts the current generation round may still draw

    @functools.wraps(original_generate)
    def generate_samples(self, **generate_kwargs):
        done = getattr(self, "_fipo_bench_steps", start_step)
        if max_steps is not None and done >= max_steps:
            return [], None, 0, True
        samples, pass_rate, consumed, exhausted = original_generate(self, **generate_kwargs)
        self._fipo_bench_steps = done + bool(samples)
        return samples, pass_rate, consumed, exhausted

    @functools.wraps(original_vllm)
    def _generate_vllm(self, dataloader_iter, num_prompts, dynamic_filtering, **generate_kwargs):
        budget[0] = num_prompts * max_gen_batches if dynamic_filtering and max_gen_batches else None
        try:
            accepted, consumed, exhausted = original_vllm(
                self, dataloader_iter, num_prompts, dynamic_filtering, **generate_kwargs
            )
            capped = budget[0] is not None and budget[0] <= 0
        finally:
            budget[0] = None
        kept, wanted = len(accepted), num_prompts * self.args.rollout.n_samples_per_prompt
        if capped and accepted and kept < wanted and data_parallel_size(self.args) > 1:
            raise RuntimeError(
                f"dynamic sampling kept {kept} of {wanted} samples after max_gen_batches={max_gen_batches} "
                f"generation batches; a short batch cannot be split evenly over "
                f"{data_parallel_size(self.args)} data-parallel ranks. Raise max_gen_batches, or use "
                f"easier training data"
            )
        return accepted, consumed, exhausted

    @functools.wraps(original_collect)
    def _collect_prompt_batch(dataloader_iter, num_prompts):
        if budget[0] is None:
            return original_collect(dataloader_iter, num_prompts)
        if budget[0] <= 0:
            return [], [], [], False  # no refill, and the data is not exhausted
        prompts, labels, images, exhausted = original_collect(dataloader_iter, min(num_prompts, budget[0]))
        budget[0] -= len(prompts)
        return prompts, labels, images, exhausted

    generator.generate_samples = generate_samples
    generator._generate_vllm = _generate_vllm
    module._collect_prompt_batch = _collect_prompt_batch
