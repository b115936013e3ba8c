"""REINFORCE++ and REINFORCE++-baseline.

Hu et al., "REINFORCE++: An Efficient RLHF Algorithm with Robustness to Both Prompt and Reward Models",
arXiv 2501.03262 (2025). No critic and no group-wise std: the return of the outcome reward is whitened
over every response token of the whole rollout batch. Differences from GRPO:

1. Returns: the outcome reward r_i sits on the last token of response i, and each token t gets its
   discounted return R_it = gamma^(L_i - 1 - t) r_i (gamma = 1: r_i on every token). With gamma < 1 the
   advantages are per token, [N, T]; they need the response mask (`advantages(..., mask=mask)`).
2. Whitening over the batch: A_it = (R_it - mean) / std, mean and std over all response tokens of the
   rollout batch (so long responses weigh more in them), instead of per-group statistics.
3. REINFORCE++-baseline first subtracts the group's mean reward (gamma fixed to 1), then whitens the
   same way: the group baseline removes the prompt's difficulty, the global whitening sets the scale.
4. Token-mean aggregation and the clipped surrogate (clip 0.2), no KL loss term.

Reference code: the authors' OpenRLHF (`reinforce`, `reinforce_baseline` estimators of
experience_maker.py) and verl (`reinforce_plus_plus`, `reinforce_plus_plus_baseline`). Differences,
the default following the authors:
- Whitening: OpenRLHF divides by the biased std sqrt(max(var, 1e-8)); verl by the Bessel-corrected
  sqrt(var + 1e-8) (`unbiased_std=True`). The two differ by one positive constant per batch,
  sqrt((n - 1) / n) for n response tokens. With a single response token verl raises; here the
  unbiased variance is 0 and the advantage 0.
- The paper and both frameworks' recipes subtract a per-token KL penalty from the reward; here rewards
  reach the estimator as they are, and a KL term is `kl_coef` in the loss (default 0).
- A group of one sample (baseline variant): verl's mean is 0 there, so its reward is whitened as is;
  OpenRLHF's groups always have n samples; here its baseline is its own reward (`lone_baseline="zero"`
  gives verl's).
- verl's clipped loss always dual-clips negative advantages at clip_ratio_c = 3; OpenRLHF's does not
  unless set (`dual_clip=3.0` gives verl's).
The discounted returns come from a linear-time scan (`ops.discounted_reverse_cumsum`); verl and
OpenRLHF loop over the tokens (the same sums, in another rounding order).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
from torch import Tensor

from fipo_bench import ops
from fipo_bench.algorithms.base import hyperparameter, required_mask, setting
from fipo_bench.algorithms.dr_grpo import LoneBaseline, group_centered_advantages, lone_baseline_field
from fipo_bench.algorithms.grpo import GRPO
from fipo_bench.registry import register_algorithm

PAPER = "Hu et al. 2025, REINFORCE++, arXiv 2501.03262"


def outcome_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """R_t = gamma^(L - 1 - t) r on each response's tokens, 0 on padding: rewards[N], mask[N, T] -> [N, T]."""
    keep = mask.bool()
    last = keep & (keep.flip(-1).cumsum(-1).flip(-1) == 1)  # [N, T]: the last response token of each row
    at_last = torch.where(last, rewards[:, None], rewards.new_zeros(()))
    return torch.where(keep, ops.discounted_reverse_cumsum(at_last, gamma), rewards.new_zeros(()))


def whitened_returns(rewards: Tensor, mask: Tensor, gamma: float, unbiased_std: bool) -> Tensor:
    """REINFORCE++'s advantages: outcome returns whitened over every response token of the batch. [N, T]."""
    rewards = rewards.to(ops.compute_dtype(rewards))
    return ops.masked_whiten(outcome_returns(rewards, mask, gamma), mask, unbiased_std)


@dataclasses.dataclass(frozen=True)
class _WhitenedReturns(GRPO):
    """The loss and whitening shared by both REINFORCE++ variants (not registered)."""

    paper: ClassVar[str] = PAPER

    kl_coef: float = setting(
        0.0, "REINFORCE++ puts its KL penalty in the reward instead (not modelled here).")
    loss_agg: str = setting("token-mean", "OpenRLHF's and verl's default.")
    unbiased_std: bool = hyperparameter(
        False, "Whiten with the Bessel-corrected std sqrt(var + 1e-8), as verl. The authors' OpenRLHF "
        "(default False): the biased std sqrt(max(var, 1e-8)).")


@register_algorithm("reinforce++")
@dataclasses.dataclass(frozen=True)
class ReinforcePlusPlus(_WhitenedReturns):
    """REINFORCE++ (arXiv 2501.03262): discounted outcome returns, whitened over the batch."""

    gamma: float = hyperparameter(
        1.0, "Discount of the outcome reward per token before the end of the response (1 = every token gets "
        "the reward). REINFORCE++ and OpenRLHF: 1.0.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.gamma <= 1.0 or not math.isfinite(self.gamma):
            raise ValueError(f"{type(self).__name__}.gamma: expected 0 < gamma <= 1, got {self.gamma}")

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor | None = None) -> Tensor:
        return whitened_returns(rewards, required_mask(mask, self.name), self.gamma, self.unbiased_std)


@register_algorithm("reinforce++-baseline")
@dataclasses.dataclass(frozen=True)
class ReinforcePlusPlusBaseline(_WhitenedReturns):
    """REINFORCE++-baseline (arXiv 2501.03262): the group mean subtracted, then whitened over the batch."""

    lone_baseline: LoneBaseline = lone_baseline_field()

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor | None = None) -> Tensor:
        centered = group_centered_advantages(rewards, group_ids, self.lone_baseline)  # [N]
        return whitened_returns(centered, required_mask(mask, self.name), 1.0, self.unbiased_std)
