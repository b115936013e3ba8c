"""OPO: On-Policy RL with Optimal reward baseline.

Hao et al., "On-Policy RL with Optimal Reward Baseline", arXiv 2505.23585 (2025). Differences from GRPO:

1. Advantage: the variance-minimising baseline of the policy gradient, under the paper's assumption
   that a response's squared gradient norm grows with its length, is the length-weighted group mean:
       b = sum_j L_j r_j / sum_j L_j,   A_i = r_i - b    (L_j: response length in tokens),
   not divided by the std. The lengths come from the response mask (`advantages(..., mask=mask)`).
2. Exact on-policy training: one gradient update per rollout batch, so the PPO ratio is 1 and the clip
   never acts (a run setting: mini_batch_size = rollout_batch_size). No KL term.
3. Token-mean aggregation (verl's default).

Reference code: verl's registered `opo` estimator. Differences:
- A group of one sample: verl's baseline is 0 there, so its advantage is its raw reward; here its
  baseline is its own reward, advantage 0 (`lone_baseline="zero"` gives verl's).
- A group whose responses are all empty (sum of lengths 0): verl divides 0 by 0 (NaN); here the
  baseline is 0. Those responses carry no tokens, so the loss is the same.
- verl's clipped loss always dual-clips negative advantages at clip_ratio_c = 3 (`dual_clip=3.0`).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import Tensor

from fipo_bench import ops
from fipo_bench.algorithms.base import required_mask, setting
from fipo_bench.algorithms.dr_grpo import LoneBaseline, lone_baseline_field, with_lone_baseline
from fipo_bench.algorithms.grpo import GRPO
from fipo_bench.registry import register_algorithm


def length_weighted_advantages(
    rewards: Tensor, group_ids: Tensor, lengths: Tensor, lone_baseline: str = "own"
) -> Tensor:
    """r_i - sum_j L_j r_j / sum_j L_j over its group: rewards[N], group_ids[N], lengths[N] -> [N]."""
    rewards = rewards.to(ops.compute_dtype(rewards))
    lengths = lengths.to(rewards.dtype)
    total_length = ops.group_sum(lengths, group_ids)  # [N]
    weighted = ops.group_sum(lengths * rewards, group_ids)  # [N]
    baseline = torch.where(total_length > 0, weighted / total_length.clamp_min(1), 0.0)
    return rewards - with_lone_baseline(baseline, rewards, group_ids, lone_baseline)


@register_algorithm("opo")
@dataclasses.dataclass(frozen=True)
class OPO(GRPO):
    """OPO (arXiv 2505.23585): the length-weighted optimal baseline, on-policy."""

    paper: ClassVar[str] = "Hao et al. 2025, On-Policy RL with Optimal Reward Baseline, arXiv 2505.23585"

    kl_coef: float = setting(0.0, "OPO trains without KL regularisation.")
    loss_agg: str = setting("token-mean", "verl's default.")
    lone_baseline: LoneBaseline = lone_baseline_field()

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor | None = None) -> Tensor:
        lengths = torch.count_nonzero(required_mask(mask, self.name), dim=-1)  # [N]
        return length_weighted_advantages(rewards, group_ids, lengths, self.lone_baseline)
