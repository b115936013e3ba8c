"""GRPO: Group Relative Policy Optimization.

Shao et al., "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models",
arXiv 2402.03300 (2024), section 4.1. How it differs from PPO:

1. No value model: the advantage of a response is its reward normalised within the group of responses
   sampled for the same prompt, A_i = (r_i - mean(r)) / (std(r) + eps), broadcast to all its tokens.
2. The KL penalty to the reference model sits in the loss (not in the reward), estimated per token with
   the unbiased k3 estimator  KL_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1  (Schulman 2020).
3. The per-token PPO clipped surrogate, averaged over each response's tokens, then over responses.

    l_t = max(-A r_t, -A clip(r_t, 1 - eps, 1 + eps)) + beta KL_t,   r_t = exp(logp_t - old_logp_t)

The surrogate here also takes DAPO's asymmetric clip and the dual clip (Ye et al. 2020, arXiv
1912.09729) as options, so DAPO, FIPO and the clipped members of the zoo reuse it. `PolicyGradient` is
the frame they all share (GRPO's advantage, the optional KL term, the token-loss template); each
algorithm supplies its own `surrogate`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
from torch import Tensor

from fipo_bench import ops
from fipo_bench.algorithms.base import Algorithm, as_token_inputs, hyperparameter, setting
from fipo_bench.registry import register_algorithm

LOG_RATIO_LIMIT = 20.0  # |logp - old_logp| is clamped here before exp, so one wild token cannot overflow
ADVANTAGE_EPS = 1e-6


def group_normalized_advantages(rewards: Tensor, group_ids: Tensor, eps: float = ADVANTAGE_EPS) -> Tensor:
    """(r - group mean) / (group unbiased std + eps): rewards[N], group_ids[N] -> [N]. Groups of one get 0."""
    rewards = rewards.to(torch.promote_types(rewards.dtype, torch.float32))
    mean, std = ops.group_mean_std(rewards, group_ids)
    return (rewards - mean) / (std + eps)


def clipped_surrogate(
    ratio: Tensor, advantages: Tensor, clip_low: float, clip_high: float, dual_clip: float | None
) -> tuple[Tensor, Tensor]:
    """PPO's pessimistic clipped surrogate, optionally dual-clipped for negative advantages.

    ratio[N, T], advantages[N, T] -> (loss[N, T], dual_clipped[N, T] bool: where -A * dual_clip bound
    the loss, i.e. A < 0 and ratio > dual_clip).
        l = max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high));  where A < 0: l = min(l, -A c)
    """
    loss = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high))
    if dual_clip is None:
        return loss, torch.zeros_like(loss, dtype=torch.bool)
    bound = -advantages * dual_clip
    dual_clipped = (advantages < 0) & (loss > bound)
    return torch.where(dual_clipped, bound, loss), dual_clipped


def k3_kl(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Unbiased, non-negative KL(pi || ref) estimate per token: exp(x) - x - 1 with x = ref - logp. [N, T]."""
    x = (ref_logp - logp).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    return torch.expm1(x) - x


def clip_flags(
    log_ratio: Tensor, advantages: Tensor, clip_low: float, clip_high: float, dual_clipped: Tensor
) -> dict[str, Tensor]:
    """Where each clip bound is active: metric name -> bool [N, T]."""
    log_ratio = log_ratio.detach()
    low = math.log1p(-clip_low) if clip_low < 1.0 else -math.inf  # clip_low = 1: no lower bound
    return {
        "clip_frac_high": (advantages > 0) & (log_ratio > math.log1p(clip_high)),
        "clip_frac_low": (advantages < 0) & (log_ratio < low),
        "dual_clip_frac": dual_clipped,
    }


def surrogate_metrics(log_ratio: Tensor, mask: Tensor, flags: dict[str, Tensor]) -> dict[str, Tensor]:
    """Approximate KL to the rollout policy, and the fraction of `mask` tokens where each flag [N, T] is set
    (`clip_flags`, plus any of the algorithm's own, counted together)."""
    return {"ppo_kl": ops.masked_mean(-log_ratio.detach(), mask), **ops.masked_fractions(flags, mask)}


@dataclasses.dataclass(frozen=True)
class PolicyGradient(Algorithm):
    """The frame of every group-based policy-gradient loss here (not registered itself): GRPO's group-
    normalised advantage, the algorithm's per-token `surrogate`, and an optional k3 KL-to-reference term."""

    kl_coef: float = hyperparameter(
        0.0, "Weight of the k3 KL-to-reference term added to each token's loss (0 = no reference model). "
        "Off unless the algorithm's paper uses a KL loss.")

    # |logp - old_logp| is clamped at this before the surrogate (None: not clamped, where the reference
    # code clamps nothing and the algorithm bounds the ratio itself).
    log_ratio_limit: ClassVar[float | None] = LOG_RATIO_LIMIT

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.kl_coef >= 0.0 and math.isfinite(self.kl_coef)):
            raise ValueError(f"{type(self).__name__}.kl_coef: expected a finite value >= 0, "
                             f"got {self.kl_coef}")

    @property
    def needs_reference(self) -> bool:
        return self.kl_coef > 0

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor | None = None) -> Tensor:
        return group_normalized_advantages(rewards, group_ids)

    def log_ratio(self, logp: Tensor, old_logp: Tensor) -> Tensor:
        """logp - old_logp [N, T], clamped at +-log_ratio_limit when set."""
        if self.log_ratio_limit is None:
            return logp - old_logp
        return (logp - old_logp).clamp(-self.log_ratio_limit, self.log_ratio_limit)

    def token_loss(
        self, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, ref_logp: Tensor | None = None
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        if self.needs_reference and ref_logp is None:
            raise ValueError(f"{self.name}: kl_coef = {self.kl_coef} > 0 needs ref_logp (the reference "
                             f"model's log-probabilities); pass it or set kl_coef=0")
        logp, old_logp, advantages, mask, ref_logp = as_token_inputs(
            logp, old_logp, advantages, mask, ref_logp)
        loss, loss_mask, metrics = self.surrogate(logp, old_logp, advantages, mask)
        if ref_logp is not None:
            kl = k3_kl(logp, ref_logp)  # [N, T]
            loss = loss + self.kl_coef * kl
            metrics["kl"] = ops.masked_mean(kl.detach(), mask)
        return loss * loss_mask, loss_mask, metrics

    def surrogate(
        self, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """The policy-gradient part of the loss: logp, old_logp, advantages [N, T] (0 on padding), mask[N, T]
        bool -> (loss[N, T], loss_mask[N, T] float32, metrics)."""
        raise NotImplementedError


def validate_clip(algorithm) -> None:
    """The shared checks of clip_low, clip_high (and dual_clip, where there is one), naming the field."""
    prefix = type(algorithm).__name__
    if not 0.0 <= algorithm.clip_low <= 1.0:
        raise ValueError(f"{prefix}.clip_low: expected 0 <= clip_low <= 1 (1 = no lower bound), "
                         f"got {algorithm.clip_low}")
    if not algorithm.clip_high >= 0.0:
        raise ValueError(f"{prefix}.clip_high: expected >= 0, got {algorithm.clip_high}")
    dual_clip = getattr(algorithm, "dual_clip", None)
    if dual_clip is not None and not dual_clip > 1.0 + algorithm.clip_high:
        raise ValueError(f"{prefix}.dual_clip: expected None or > 1 + clip_high = {1 + algorithm.clip_high}, "
                         f"got {dual_clip}")


@register_algorithm("grpo")
@dataclasses.dataclass(frozen=True)
class GRPO(PolicyGradient):
    """GRPO as published in DeepSeekMath (arXiv 2402.03300)."""

    paper: ClassVar[str] = "Shao et al. 2024, DeepSeekMath, arXiv 2402.03300"

    clip_low: float = hyperparameter(
        0.2, "Ratio clipped below at 1 - clip_low (1 = no lower bound). PPO (Schulman et al. 2017); GRPO "
        "uses 0.2.")
    clip_high: float = hyperparameter(
        0.2, "Ratio clipped above at 1 + clip_high. GRPO: symmetric 0.2; DAPO's clip-higher raises it.")
    dual_clip: float | None = hyperparameter(
        None, "For negative advantages the loss is capped at -A * dual_clip (None = off). "
        "Dual-clip PPO (Ye et al. 2020, arXiv 1912.09729).")
    kl_coef: float = setting(0.04, "DeepSeekMath section 4.1: beta = 0.04.")
    loss_agg: str = setting(
        "seq-mean-token-mean", "GRPO: mean over each response's tokens, then over responses.")

    def __post_init__(self) -> None:
        super().__post_init__()
        validate_clip(self)

    def surrogate(
        self, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        log_ratio = self.log_ratio(logp, old_logp)
        loss, dual_clipped = clipped_surrogate(
            torch.exp(log_ratio), advantages, self.clip_low, self.clip_high, self.dual_clip)
        flags = clip_flags(log_ratio, advantages, self.clip_low, self.clip_high, dual_clipped)
        return loss, ops.float_mask(mask), surrogate_metrics(log_ratio, mask, flags)
