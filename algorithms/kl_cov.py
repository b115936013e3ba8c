"""KL-Cov: a KL penalty on the highest-covariance tokens.

Cui et al., "The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models",
arXiv 2505.22617 (2025); the covariance and the reason for it are in `clip_cov.py`. Differences from
GRPO:

1. No PPO clip: the surrogate is -A_t r_t.
2. The top cov_ratio share of the batch's response tokens by covariance
       cov_t = (A_t - mean A) (log pi_theta(y_t) - mean log pi_theta)
   (at least one) get a penalty on their log-ratio to the rollout policy:
       l_t = -A_t r_t + cov_kl_coef |log pi_theta(y_t) - log pi_old(y_t)|
3. Token-mean, no KL-to-reference term, and the rest of the authors' DAPO-based recipe: dynamic
   sampling on, overlong shaping off.

Reference code: the authors' (PRIME-RL/Entropy-Mechanism-of-RL, verl/trainer/ppo/core_algos.py
`compute_policy_loss_kl_cov`; recipe/dapo/7b_kl_cov.sh, 32b_kl_cov.sh) and verl's `kl_cov`.
Differences, the default following the authors:
- The share: the authors' `k_percent` is a percentage (7B recipe 0.2 -> 0.002 of the tokens; 32B 0.02
  -> 0.0002); verl's `kl_cov_ratio` is the fraction itself, default 0.0002 (the 32B value).
- The penalty weight: the authors' ppo_kl_coef = 1; verl's default 0.1.
- The top tokens: both take torch.topk over the valid tokens in row-major order, on the CPU; here on
  the tensors' device, which gives the same tokens on a CPU and may break ties differently on a GPU.
- Log-ratios are not clamped at +-20 (GRPO here clamps them), as in both.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import Tensor

from fipo_bench import ops
from fipo_bench.algorithms.base import hyperparameter
from fipo_bench.algorithms.clip_cov import PAPER, authors_dynamic_sampling, token_covariance
from fipo_bench.algorithms.grpo import PolicyGradient, surrogate_metrics
from fipo_bench.registry import register_algorithm


def top_covariance_tokens(covariance: Tensor, mask: Tensor, ratio: float) -> Tensor:
    """bool [N, T]: the max(1, floor(ratio * tokens)) mask tokens of highest covariance (none if none)."""
    keep = mask.bool()
    values = covariance[keep]  # the valid tokens, row-major
    selected = torch.zeros(keep.numel(), dtype=torch.bool, device=keep.device)
    if values.numel():
        top = torch.topk(values, max(1, int(values.numel() * ratio))).indices
        selected[torch.nonzero(keep.flatten()).squeeze(1)[top]] = True
    return selected.view(keep.shape)


@register_algorithm("kl-cov")
@dataclasses.dataclass(frozen=True)
class KLCov(PolicyGradient):
    """KL-Cov (arXiv 2505.22617): no clip; a log-ratio penalty on the top-covariance tokens."""

    paper: ClassVar[str] = PAPER
    log_ratio_limit: ClassVar[float | None] = None  # as the reference code

    dynamic_sampling: bool = authors_dynamic_sampling()
    cov_ratio: float = hyperparameter(
        2e-3, "Share of the batch's response tokens that get the penalty. The authors' 7B recipe: "
        "k_percent=0.2 (%); their 32B recipe: 0.02 % (verl's default).")
    cov_kl_coef: float = hyperparameter(
        1.0, "Weight of the |log-ratio| penalty. The authors' recipes: ppo_kl_coef=1 (verl's default: 0.1).")

    def __post_init__(self) -> None:
        super().__post_init__()
        prefix = type(self).__name__
        if not 0.0 < self.cov_ratio <= 1.0:
            raise ValueError(f"{prefix}.cov_ratio: expected 0 < cov_ratio <= 1, got {self.cov_ratio}")
        if not self.cov_kl_coef >= 0.0:
            raise ValueError(f"{prefix}.cov_kl_coef: expected >= 0, got {self.cov_kl_coef}")

    def surrogate(
        self, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        log_ratio = self.log_ratio(logp, old_logp)
        penalized = top_covariance_tokens(token_covariance(advantages, logp, mask), mask, self.cov_ratio)
        penalty = torch.where(penalized, self.cov_kl_coef * log_ratio.abs(), 0.0)
        metrics = surrogate_metrics(log_ratio, mask, {"cov_penalized_frac": penalized})
        return -advantages * torch.exp(log_ratio) + penalty, ops.float_mask(mask), metrics
