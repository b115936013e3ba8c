"""DAPO: Decoupled Clip and Dynamic sAmpling Policy Optimization.

Yu et al., "DAPO: An Open-Source LLM Reinforcement Learning System at Scale", arXiv 2503.14476 (2025).
Same group-normalised advantage as GRPO; four changes:

1. Clip-higher: the ratio is clipped to [1 - 0.2, 1 + 0.28], so low-probability tokens can grow more
   (against entropy collapse); the dual clip c = 10 caps the loss on negative advantages.
2. Dynamic sampling: groups whose samples are all correct or all wrong (zero advantage) are dropped
   and more are generated until the batch is full (filter on correctness, not on the shaped reward).
3. Token-level loss: token-mean over all response tokens of the batch, so long responses weigh per token.
4. Overlong reward shaping: a response of length L > L_max - L_buf gets
   min(0, -(L - (L_max - L_buf)) / L_buf) * factor added to its reward (-factor at L_max and beyond).
No KL term.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch import Tensor

from fipo_bench.algorithms.base import hyperparameter, setting
from fipo_bench.algorithms.grpo import GRPO
from fipo_bench.registry import register_algorithm


def overlong_penalty(response_lengths: Tensor, max_response_length: int, buffer: int, factor: float
                     ) -> Tensor:
    """DAPO's soft overlong punishment, in [-factor, 0]: response_lengths[N] -> [N] float."""
    excess = response_lengths.float() - (max_response_length - buffer)
    return (-excess / buffer).clamp(-1.0, 0.0) * factor


@register_algorithm("dapo")
@dataclasses.dataclass(frozen=True)
class DAPO(GRPO):
    """DAPO as published (arXiv 2503.14476), with the verl recipe's dual clip."""

    paper: ClassVar[str] = "Yu et al. 2025, DAPO, arXiv 2503.14476"

    clip_high: float = setting(0.28, "DAPO section 3.1 (clip-higher): 0.28.")
    dual_clip: float | None = setting(10.0, "Dual-clip PPO (Ye et al. 2020); DAPO's verl recipe: 10.")
    kl_coef: float = setting(0.0, "DAPO section 2.3 removes it.")
    loss_agg: str = setting("token-mean", "DAPO section 3.3: token-mean over the batch.")
    dynamic_sampling: bool = setting(True, "DAPO section 3.2.")
    overlong_buffer: int | None = hyperparameter(
        4096, "Length of the soft-punishment zone before the maximum response length, in tokens "
        "(None = off). DAPO section 3.4: 4096 at a 20480-token maximum.")
    overlong_factor: float = hyperparameter(
        1.0, "Penalty at the maximum length (scales the overlong punishment). DAPO section 3.4: 1.0.")

    def __post_init__(self) -> None:
        super().__post_init__()
        prefix = type(self).__name__
        if self.overlong_buffer is not None and not self.overlong_buffer > 0:
            raise ValueError(f"{prefix}.overlong_buffer: expected None or a positive number of tokens, "
                             f"got {self.overlong_buffer}")
        if not self.overlong_factor >= 0.0:
            raise ValueError(f"{prefix}.overlong_factor: expected >= 0, got {self.overlong_factor}")

    def shape_rewards(self, rewards: Tensor, response_lengths: Tensor, max_response_length: int) -> Tensor:
        if self.overlong_buffer is None:
            return rewards
        if self.overlong_buffer >= max_response_length:
            raise ValueError(f"{self.name}.overlong_buffer = {self.overlong_buffer} must be smaller than the "
                             f"maximum response length {max_response_length}; set overlong_buffer for this "
                             f"length (DAPO: 4096 of 20480) or None")
        penalty = overlong_penalty(
            response_lengths, max_response_length, self.overlong_buffer, self.overlong_factor)
        return rewards.float() + penalty
