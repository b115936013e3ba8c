"""VC-PPO: Value-Calibrated PPO.

Yuan et al., "What's Behind PPO's Collapse in Long-CoT? Value Optimization Holds the Secret",
arXiv 2503.01491 (2025). PPO with a critic (algorithms/ppo.py) plus two fixes of the value model:

1. Value pretraining: before the first policy update, the critic alone is trained on rollouts of the
   frozen initial policy with Monte-Carlo returns (lambda 1), so that its initial bias (a critic started
   from the policy or a reward model values early tokens wrongly, and GAE accumulates that bias over
   thousands of tokens) is gone when PPO starts.
2. Decoupled GAE: the critic's targets use lam_critic = 1.0 (unbiased with a sparse outcome reward, no
   decay of the reward over long responses), the policy's advantages lam_actor = 0.95 (lower variance).
Otherwise as the PPO module (gamma 1, clipped value loss, verl's whitening, no KL).

Differences from the paper and the reference code (no public implementation of VC-PPO exists; verl,
where its authors work, has one lambda for both):
- The paper trains the critic "until value loss and explained variance are low"; here a fixed number of
  steps, `value_pretrain_steps` = 50, the number VAPO (the same group's follow-up, arXiv 2504.05118)
  reports for its value pretraining. A backend logs the critic metrics of those steps, so whether 50 was
  enough is visible.
- critic_lr_scale 2: VAPO's setting (actor 1e-6, critic 2e-6); VC-PPO states no ratio.
- Everything listed in algorithms/ppo.py as a difference from verl holds here too.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from fipo_bench.algorithms.base import setting
from fipo_bench.algorithms.ppo import PPO
from fipo_bench.registry import register_algorithm


@register_algorithm("vc-ppo")
@dataclasses.dataclass(frozen=True)
class VCPPO(PPO):
    """PPO with value pretraining and decoupled GAE lambdas (arXiv 2503.01491)."""

    paper: ClassVar[str] = "Yuan et al. 2025, VC-PPO, arXiv 2503.01491"

    lam_actor: float = setting(0.95, "VC-PPO's decoupled GAE: 0.95.")
    lam_critic: float = setting(1.0, "VC-PPO's decoupled GAE: 1.0.")
    value_pretrain_steps: int = setting(
        50, "VC-PPO's value pretraining; 50 steps as VAPO (arXiv 2504.05118) reports."
    )
    critic_lr_scale: float = setting(2.0, "VAPO's setting (1e-6 and 2e-6); VC-PPO states none.")
