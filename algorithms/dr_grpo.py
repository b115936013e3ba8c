"""Dr. GRPO: GRPO Done Right.

Liu et al., "Understanding R1-Zero-Like Training: A Critical Perspective", arXiv 2503.20783 (2025),
section 3.2. GRPO's two normalisations bias its updates: dividing a response's token losses by its
length shrinks the per-token penalty of long wrong answers (so they grow), and dividing advantages by
the group's std up-weights questions that are nearly always or never solved. Dr. GRPO drops both:

1. Advantage A_i = r_i - mean_j r_j over the group: no division by the std.
2. Loss: each response's token losses are summed and divided by one constant (the maximum response
   length), then averaged over responses ("seq-mean-token-sum-norm"), so a token weighs the same in a
   short and in a long response.
3. No KL term (the paper's runs use beta = 0).
The PPO clipped surrogate (clip 0.2) is GRPO's.

Reference code: the authors' oat (sail-sg/oat, critic_type "drgrpo": each response's token sum divided
by `generate_max_length`, then the mean over responses) and verl (`norm_adv_by_std_in_grpo=False`,
`loss_agg_mode="seq-mean-token-sum-norm"`). Where they differ, the default follows the authors:
- verl's "seq-mean-token-sum-norm" sums over responses without dividing by their number, so its loss
  and gradient are ours times the number of non-empty responses of the batch (one positive constant
  per batch); oat and this module take the mean.
- verl divides by the padded width of the batch unless `loss_scale_factor` is set; oat by the maximum
  generation length. `max_tokens_norm` None is the padded width (verl); the presets set it to the run's
  maximum response length (oat).
- A group of one sample: verl's group mean is 0 there, so its advantage is its raw reward; here its
  baseline is its own reward and its advantage 0, since one sample has nothing to be relative to
  (`lone_baseline="zero"` gives verl's; oat never forms such groups).
- verl's clipped loss always dual-clips negative advantages at clip_ratio_c = 3; oat does not
  (`dual_clip=3.0` gives verl's).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from fipo_bench import ops
from fipo_bench.algorithms.base import hyperparameter, setting
from fipo_bench.algorithms.grpo import GRPO
from fipo_bench.registry import register_algorithm

LoneBaseline = Literal["own", "zero"]


def lone_baseline_field() -> Any:
    """The `lone_baseline` hyperparameter of every estimator with a group baseline."""
    return hyperparameter(
        "own", "Baseline of a sample alone in its group: 'own' (its own reward, so advantage 0: one sample "
        "has nothing to be relative to) or 'zero' (its raw reward is its advantage, as verl's estimators). "
        "Not covered by the papers, whose groups all have several samples.")


def with_lone_baseline(baseline: Tensor, rewards: Tensor, group_ids: Tensor, lone_baseline: str) -> Tensor:
    """`baseline`[N] with the samples alone in their group given `lone_baseline` ('own' or 'zero')."""
    alone = ops.group_sum(torch.ones_like(rewards), group_ids) == 1  # [N]
    return torch.where(alone, rewards if lone_baseline == "own" else torch.zeros_like(rewards), baseline)


def group_centered_advantages(rewards: Tensor, group_ids: Tensor, lone_baseline: str = "own") -> Tensor:
    """r - group mean: rewards[N], group_ids[N] -> [N] (float32, or float64 for float64 rewards)."""
    rewards = rewards.to(ops.compute_dtype(rewards))
    mean, _ = ops.group_mean_std(rewards, group_ids)
    return rewards - with_lone_baseline(mean, rewards, group_ids, lone_baseline)


@register_algorithm("dr-grpo")
@dataclasses.dataclass(frozen=True)
class DrGRPO(GRPO):
    """Dr. GRPO (arXiv 2503.20783): GRPO without the std and length normalisations."""

    paper: ClassVar[str] = "Liu et al. 2025, Understanding R1-Zero-Like Training, arXiv 2503.20783"

    kl_coef: float = setting(0.0, "Dr. GRPO trains without it (beta = 0).")
    loss_agg: str = setting(
        "seq-mean-token-sum-norm", "Dr. GRPO section 3.2: each response's token sum over a constant, then "
        "the mean over responses.")
    max_tokens_norm: int | None = hyperparameter(
        None, "The constant a response's token sum is divided by (None = the padded width of the batch, "
        "as verl). Dr. GRPO (oat): the maximum generation length.")
    lone_baseline: LoneBaseline = lone_baseline_field()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_tokens_norm is not None and not self.max_tokens_norm > 0:
            raise ValueError(f"{type(self).__name__}.max_tokens_norm: expected None or a positive number of "
                             f"tokens, got {self.max_tokens_norm}")

    @property
    def num_tokens_norm(self) -> float | None:
        return self.max_tokens_norm

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor | None = None) -> Tensor:
        return group_centered_advantages(rewards, group_ids, self.lone_baseline)
