"""CISPO: Clipped IS-weight Policy Optimization.

MiniMax, "MiniMax-M1: Scaling Test-Time Compute Efficiently with Lightning Attention",
arXiv 2506.13585 (2025), section 3.1. PPO's clip drops the gradient of every token whose ratio left the
band, and the rare tokens that steer reasoning ("However", "Recheck") are the ones whose ratio moves most,
so they stop learning after the first update. CISPO clips the importance weight instead and keeps every
token's gradient. Differences from GRPO:

1. REINFORCE with a clipped, stop-gradient importance weight:
       l_t = -sg(clip(r_t, 1 - eps_low, 1 + eps_high)) * A_t * log pi_theta(y_t)
   The clip bounds the weight's variance; sg keeps the gradient flowing through log pi for every token,
   clipped or not. The weight is clipped whatever the advantage's sign (PPO clips one side per sign).
2. No lower bound in practice: the paper sets eps_low large and tunes only eps_high (clip_low = 1 here:
   1 - clip_low = 0, and a ratio is always positive).
3. Token-mean aggregation over the batch; no KL term.

Reference code: verl's `cispo` loss (the paper published none); the values: the paper gives none for
eps_high, verl's CISPO example uses clip_ratio_high 0.2 (and clip_ratio_low 10, which like clip_low = 1
sets no lower bound). verl's loss and ours agree term by term (log-ratios clamped at +-20 before exp).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from torch import Tensor

from fipo_bench import ops
from fipo_bench.algorithms.base import hyperparameter, setting
from fipo_bench.algorithms.grpo import PolicyGradient, surrogate_metrics, validate_clip
from fipo_bench.registry import register_algorithm


@register_algorithm("cispo")
@dataclasses.dataclass(frozen=True)
class CISPO(PolicyGradient):
    """CISPO (arXiv 2506.13585): REINFORCE with a clipped, stop-gradient importance weight."""

    paper: ClassVar[str] = "MiniMax 2025, MiniMax-M1 (CISPO), arXiv 2506.13585"

    clip_low: float = hyperparameter(
        1.0, "The importance weight is clipped below at 1 - clip_low (1 = no lower bound). MiniMax-M1 "
        "section 3.1: no lower bound.")
    clip_high: float = hyperparameter(
        0.2, "The importance weight is clipped above at 1 + clip_high. The paper tunes it without giving "
        "a value; verl's CISPO example: 0.2.")
    loss_agg: str = setting(
        "token-mean", "MiniMax-M1: the sum over all tokens of the batch over their number.")

    def __post_init__(self) -> None:
        super().__post_init__()
        validate_clip(self)

    def surrogate(
        self, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        log_ratio = self.log_ratio(logp, old_logp)
        weight = log_ratio.exp().clamp(1.0 - self.clip_low, 1.0 + self.clip_high).detach()  # [N, T]
        low = math.log1p(-self.clip_low) if self.clip_low < 1.0 else -math.inf
        flags = {"clip_frac_high": log_ratio.detach() > math.log1p(self.clip_high),
                 "clip_frac_low": log_ratio.detach() < low}
        return -weight * advantages * logp, ops.float_mask(mask), surrogate_metrics(log_ratio, mask, flags)
