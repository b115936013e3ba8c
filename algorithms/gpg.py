"""GPG: Group Policy Gradient.

Chu et al., "GPG: A Simple and Strong Reinforcement Learning Baseline for Model Reasoning",
arXiv 2504.02546 (2025), section 3. Differences from GRPO:

1. The loss is the plain policy gradient, l_t = -A_t log pi_theta(y_t): no importance ratio, no
   clip (and so no correction when a mini-batch is off-policy), no KL term; token-mean.
2. Advantage A_i = alpha (r_i - mean_j r_j): no division by the std (F_norm = 1, the paper's best
   setting), times one factor per batch, alpha = B / (B - M), where M counts the samples of groups whose
   rewards are all equal (their advantages are 0, so without alpha they dilute the gradient of the
   others). A group of one counts in M.

Reference code: the authors' (AMAP-ML/GPG, open-r1/src/open_r1/gpg_trainer.py: `loss / inverse_alpha`,
inverse_alpha = share of groups with unequal rewards, the same B / (B - M) when groups have one size,
as there) and verl (`gpg` estimator and loss). Differences, the default following the authors:
- verl's alpha is B / (number of samples with a NONZERO REWARD), which depends on how rewards are
  scored (with +-1 rewards it is always 1); `alpha_rule="nonzero-rewards"` gives it, "one" none.
  Either way alpha is one positive constant per batch on every advantage.
- The authors resample prompts until at least `min_inverse_alpha` of the groups have unequal rewards
  (beta_th = 0.6 in the paper's table); not done here (DAPO's dynamic sampling is the closest option).
- A group of one sample: verl's mean is 0, so its advantage is alpha times its raw reward; here its
  baseline is its own reward (`lone_baseline="zero"` gives verl's).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import torch
from torch import Tensor

from fipo_bench import ops
from fipo_bench.algorithms.base import hyperparameter, setting
from fipo_bench.algorithms.dr_grpo import LoneBaseline, group_centered_advantages, lone_baseline_field
from fipo_bench.algorithms.grpo import PolicyGradient, surrogate_metrics
from fipo_bench.registry import register_algorithm


def gradient_correction(rewards: Tensor, group_ids: Tensor, rule: str) -> Tensor:
    """GPG's alpha, a 0-dim tensor: B / (B - M) ("valid-groups"), B / #nonzero rewards ("nonzero-rewards",
    verl) or 1 ("one"). M = samples of the groups whose rewards are all equal."""
    total = rewards.new_tensor(rewards.numel())
    if rule == "one":
        return total.new_ones(())
    if rule == "nonzero-rewards":
        return total / torch.count_nonzero(rewards).clamp_min(1)
    _, std = ops.group_mean_std(rewards, group_ids)
    valid = torch.count_nonzero(std > 0)  # samples of groups with unequal rewards
    return total / valid.clamp_min(1)


@register_algorithm("gpg")
@dataclasses.dataclass(frozen=True)
class GPG(PolicyGradient):
    """GPG (arXiv 2504.02546): the plain policy gradient on mean-centred, batch-corrected advantages."""

    paper: ClassVar[str] = "Chu et al. 2025, GPG, arXiv 2504.02546"

    loss_agg: str = setting("token-mean", "The authors' code: the mean over the batch's tokens.")
    alpha_rule: Literal["valid-groups", "nonzero-rewards", "one"] = hyperparameter(
        "valid-groups", "The factor alpha on every advantage of a batch: 'valid-groups' = B / (B - M), M = "
        "samples of groups with all-equal rewards (GPG section 3.2 and the authors' code); "
        "'nonzero-rewards' = B / #nonzero rewards (verl); 'one' = no correction.")
    lone_baseline: LoneBaseline = lone_baseline_field()

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor | None = None) -> Tensor:
        centered = group_centered_advantages(rewards, group_ids, self.lone_baseline)  # [N]
        return centered * gradient_correction(rewards.to(centered.dtype), group_ids, self.alpha_rule)

    def surrogate(
        self, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        metrics = surrogate_metrics(self.log_ratio(logp, old_logp), mask, {})
        return -logp * advantages, ops.float_mask(mask), metrics
