"""Clip-Cov: keep high-covariance tokens from sharpening the policy.

Cui et al., "The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models",
arXiv 2505.22617 (2025). Policy entropy collapses early in RL (and performance saturates with it)
because a policy-gradient step lowers the entropy in proportion to the covariance between a token's
log-probability and its advantage: confident tokens with a high advantage sharpen the policy most.
Clip-Cov removes the gradient of a small random share of those tokens. Differences from GRPO:

1. The covariance of each response token with the batch:
       cov_t = (A_t - mean A) (log pi_theta(y_t) - mean log pi_theta)   (means over the batch's tokens)
2. Candidates: tokens with cov_lb < cov_t < cov_ub that PPO's clip has not already cut. From them, a
   random cov_ratio share of all response tokens (at least one) is drawn, and their loss is set to 0,
   which removes their gradient (the paper says "detached"; only the loss value differs).
3. Otherwise PPO's clipped surrogate with the authors' clip range 1.0 / 1.0 (ratios in [0, 2]: no lower
   bound), token-mean, no KL term, and the rest of their DAPO-based recipe: dynamic sampling on,
   overlong shaping off.

Reference code: the authors' (PRIME-RL/Entropy-Mechanism-of-RL, verl/trainer/ppo/core_algos.py
`compute_policy_loss_clip_cov`; recipe/dapo/7b_clip_cov.sh, 32b_clip_cov.sh), merged into verl as
`clip_cov`; the two compute the same. Differences and notes:
- The draw: both take `torch.randperm` of the candidates (in row-major order) from torch's global
  generator, as here by default (selection_seed None): after the same torch.manual_seed the same tokens
  are chosen (the local trainer reseeds it from (seed, step) before each step's updates, so a run is
  reproducible). selection_seed s gives the instance its own generator instead, seeded with s, so the
  draw does not depend on what else draws random numbers: its first call picks what the reference picks
  right after torch.manual_seed(s), and later calls continue that stream.
- Measured against verl b178a3c's `compute_policy_loss_clip_cov` (run outside this repository): the same
  loss, bit for bit, on 21,600 random batches (float32 and float64, per-row and per-token advantages,
  padding, log-ratios up to +-3) from the same generator state.
- The size of the draw depends on the data: one host sync per call (the reference's `.item()`).
- The covariance means divide by the token count; the reference by (count + 1e-8).
- Log-ratios are not clamped at +-20 (GRPO here clamps them), as in the reference.
- `dual_clip` (off by default, as there) caps negative-advantage losses as in GRPO.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import Tensor

from fipo_bench import ops
from fipo_bench.algorithms.base import hyperparameter, setting
from fipo_bench.algorithms.grpo import GRPO, clip_flags, clipped_surrogate, surrogate_metrics
from fipo_bench.registry import register_algorithm

PAPER = "Cui et al. 2025, The Entropy Mechanism of RL for Reasoning LMs, arXiv 2505.22617"


def authors_dynamic_sampling() -> Any:
    """The `dynamic_sampling` field of Clip-Cov and KL-Cov: on, as in the authors' DAPO-based recipes."""
    return setting(True, "The authors' DAPO-based recipes: enable_filter_groups=True.")


def token_covariance(advantages: Tensor, logp: Tensor, mask: Tensor) -> Tensor:
    """cov_t = (A_t - mean A)(logp_t - mean logp) with means over the mask's tokens, no gradient. [N, T]."""
    logp = logp.detach()
    return (advantages - ops.masked_mean(advantages, mask)) * (logp - ops.masked_mean(logp, mask))


def random_covariance_selection(
    candidates: Tensor, mask: Tensor, ratio: float, generator: torch.Generator | None
) -> Tensor:
    """A random min(k, C) of the C `candidates` (bool [N, T]), k = max(floor(ratio * mask tokens), 1),
    drawn as the reference code draws them (a permutation of the row-major candidates). bool [N, T]."""
    count = int(torch.count_nonzero(mask))  # the draw's size depends on the data: one host sync
    positions = torch.nonzero(candidates)  # [C, 2]
    selected = torch.zeros_like(candidates)
    if len(positions):
        draw = torch.randperm(len(positions), generator=generator)[:max(int(ratio * count), 1)]
        chosen = positions[draw.to(positions.device)]  # the permutation comes from a CPU generator
        selected[chosen[:, 0], chosen[:, 1]] = True
    return selected


@register_algorithm("clip-cov")
@dataclasses.dataclass(frozen=True)
class ClipCov(GRPO):
    """Clip-Cov (arXiv 2505.22617): PPO, with a random share of the high-covariance tokens detached."""

    paper: ClassVar[str] = PAPER
    log_ratio_limit: ClassVar[float | None] = None  # as the reference code

    clip_low: float = setting(
        1.0, "The authors' recipes (7b_clip_cov.sh, 32b_clip_cov.sh): clip_ratio_low=1.")
    clip_high: float = setting(1.0, "The authors' recipes: clip_ratio_high=1.")
    kl_coef: float = setting(0.0, "The authors' recipes: no KL loss.")
    loss_agg: str = setting("token-mean", "The authors' recipes: token-mean.")
    dynamic_sampling: bool = authors_dynamic_sampling()
    cov_ratio: float = hyperparameter(
        2e-4, "Share of the batch's response tokens whose gradient is removed. The authors' recipes: "
        "clip_cov_ratio=0.0002.")
    cov_lb: float = hyperparameter(
        1.0, "Only tokens with covariance above this are candidates. The authors' recipes: clip_cov_lb=1.0.")
    cov_ub: float = hyperparameter(
        5.0, "Only tokens with covariance below this are candidates. The authors' recipes: clip_cov_ub=5.0.")
    # The draw's generator, per instance (set in __post_init__: mutable state, not a hyperparameter).
    _generator: ClassVar[torch.Generator | None] = None
    selection_seed: int | None = hyperparameter(
        None, "Seed of an own generator for the random draw; None = torch's global generator, as the "
        "reference code (verl's compute_policy_loss_clip_cov). Not a paper setting.")

    def __post_init__(self) -> None:
        super().__post_init__()
        prefix = type(self).__name__
        if not 0.0 < self.cov_ratio <= 1.0:
            raise ValueError(f"{prefix}.cov_ratio: expected 0 < cov_ratio <= 1, got {self.cov_ratio}")
        if not self.cov_lb < self.cov_ub:
            raise ValueError(f"{prefix}.cov_lb/cov_ub: expected cov_lb < cov_ub, got {self.cov_lb} and "
                             f"{self.cov_ub}")
        seed = self.selection_seed
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        object.__setattr__(self, "_generator", generator)

    def surrogate(
        self, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        log_ratio = self.log_ratio(logp, old_logp)
        ratio = torch.exp(log_ratio)
        low, high = self.clip_low, self.clip_high
        loss, dual_clipped = clipped_surrogate(ratio, advantages, low, high, self.dual_clip)
        clipped = -advantages * ratio.clamp(1.0 - low, 1.0 + high) > -advantages * ratio  # PPO's clip acts
        covariance = token_covariance(advantages, logp, mask)
        candidates = mask & ~clipped & (covariance > self.cov_lb) & (covariance < self.cov_ub)
        detached = random_covariance_selection(candidates, mask, self.cov_ratio, self._generator)
        flags = clip_flags(log_ratio, advantages, low, high, dual_clipped)
        metrics = surrogate_metrics(log_ratio, mask, {**flags, "cov_detached_frac": detached})
        return torch.where(detached, 0.0, loss), ops.float_mask(mask), metrics
