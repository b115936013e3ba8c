"""RLOO: REINFORCE Leave-One-Out.

Ahmadian et al., "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human
Feedback in LLMs", arXiv 2402.14740 (2024), section 3 (after Kool et al. 2019). Differences from GRPO:

1. Advantage: each sample's baseline is the mean reward of the OTHER samples of its group,
       A_i = r_i - 1/(G - 1) sum_{j != i} r_j = G / (G - 1) (r_i - mean_j r_j),
   an unbiased baseline (it does not depend on the sample itself), not divided by the std.
2. Token-mean aggregation and no KL loss term, as verl's RLOO recipe (whose KL sits in the reward).
The loss is GRPO's clipped surrogate, as in verl; the paper's REINFORCE update is its on-policy case
(one update per rollout batch: ratio 1, the clip never acts).

Reference code: verl's registered `rloo` estimator (the paper published none). Differences:
- A group of one sample: verl's `rloo` gives it its raw reward (verl's own `rloo_vectorized` gives 0);
  here its baseline is its own reward, advantage 0 (`lone_baseline="zero"` gives `rloo`'s).
- The paper (and verl's recipe) subtract a KL penalty from the reward; here rewards reach the
  estimator as they are, and a KL term is `kl_coef` in the loss (default 0, no reference model).
- verl's clipped loss always dual-clips negative advantages at clip_ratio_c = 3 (`dual_clip=3.0`).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch import Tensor

from fipo_bench import ops
from fipo_bench.algorithms.base import setting
from fipo_bench.algorithms.dr_grpo import LoneBaseline, lone_baseline_field, with_lone_baseline
from fipo_bench.algorithms.grpo import GRPO
from fipo_bench.registry import register_algorithm


def leave_one_out_advantages(rewards: Tensor, group_ids: Tensor, lone_baseline: str = "own") -> Tensor:
    """r_i - mean of the other rewards of its group: rewards[N], group_ids[N] -> [N]."""
    rewards = rewards.to(ops.compute_dtype(rewards))
    count = ops.group_sum(rewards.new_ones(rewards.shape), group_ids)  # [N] group sizes
    others = (ops.group_sum(rewards, group_ids) - rewards) / (count - 1).clamp_min(1)  # [N]
    return rewards - with_lone_baseline(others, rewards, group_ids, lone_baseline)


@register_algorithm("rloo")
@dataclasses.dataclass(frozen=True)
class RLOO(GRPO):
    """RLOO (arXiv 2402.14740): the leave-one-out baseline."""

    paper: ClassVar[str] = "Ahmadian et al. 2024, Back to Basics (RLOO), arXiv 2402.14740"

    kl_coef: float = setting(0.0, "RLOO puts its KL penalty in the reward instead (not modelled here).")
    loss_agg: str = setting("token-mean", "verl's default, used by its RLOO recipe.")
    lone_baseline: LoneBaseline = lone_baseline_field()

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor | None = None) -> Tensor:
        return leave_one_out_advantages(rewards, group_ids, self.lone_baseline)
