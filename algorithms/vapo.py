"""VAPO: Value-model-based Augmented PPO.

Yue et al., "VAPO: Efficient and Reliable Reinforcement Learning for Advanced Reasoning Tasks",
arXiv 2504.05118 (2025). VC-PPO (algorithms/vc_ppo.py: value pretraining, lam_critic 1) plus:

1. Length-adaptive GAE: each response of length l (tokens) gets its own actor lambda,
   lam_actor = 1 - 1 / (alpha l), alpha = 0.05, so that the TD errors' weights sum to about alpha l,
   in proportion to the length (long responses bootstrap less, short ones more).
2. Clip-higher (DAPO): the ratio is clipped to [1 - 0.2, 1 + 0.28].
3. Token-level loss: token-mean over every response token of the batch.
4. Positive-example LM loss: mu * NLL of the correct responses of the batch is added to the policy loss,
   NLL = -sum of their tokens' log-probabilities / their number of tokens, mu = 0.1. It needs each
   response's correctness (`needs_correctness`; `auxiliary_loss`, which `policy_loss(..., correct=)` adds).
5. Group sampling: several samples per prompt (512 prompts x 16). That is the run's
   `samples_per_prompt`, not an algorithm field: GAE does not use groups.
6. The critic's learning rate above the actor's: 2e-6 vs 1e-6 (`critic_lr_scale` 2).

Choices where the paper is silent (no public implementation exists):
- l < 1 / alpha (20 tokens at alpha 0.05): the formula gives lambda < 0, which is no GAE (the weights
  (1 - lambda) lambda^k of the k-step returns would alternate in sign and exceed 1). Here lambda is
  clamped to [0, 1], so such a response gets the one-step TD advantage r_t + gamma V_{t+1} - V_t.
  The clamp continues the formula at l = 1 / alpha (where it reaches 0) and keeps its intent: the
  shorter the response, the more the advantage leans on the critic. `lam_alpha=None` turns the
  adaptive lambda off (then `lam_actor` applies to every response, as VC-PPO).
- The LM loss is normalised over the correct responses' tokens of each `policy_loss` call (the paper's
  formula over the batch); a trainer that splits a batch into micro-batches weighs them.
- value_pretrain_steps 50 and the learning rates are from the paper's training details; the other
  defaults (gamma 1, value clip 0.2, verl's whitening) as algorithms/ppo.py, whose differences from verl
  hold here too.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
from torch import Tensor

from fipo_bench import ops
from fipo_bench.algorithms.base import hyperparameter, setting
from fipo_bench.algorithms.vc_ppo import VCPPO
from fipo_bench.registry import register_algorithm


def length_adaptive_lambdas(lengths: Tensor, alpha: float) -> Tensor:
    """VAPO's actor lambda per response, 1 - 1 / (alpha l), clamped to [0, 1]: lengths[N] -> [N] float64
    (GAE casts it to its compute dtype)."""
    lengths = lengths.to(torch.float64)
    return (1.0 - 1.0 / (alpha * lengths.clamp_min(1))).clamp(0.0, 1.0)


@register_algorithm("vapo")
@dataclasses.dataclass(frozen=True)
class VAPO(VCPPO):
    """VC-PPO + length-adaptive GAE, clip-higher, token-level loss and a positive-example LM loss
    (arXiv 2504.05118)."""

    paper: ClassVar[str] = "Yue et al. 2025, VAPO, arXiv 2504.05118"

    lam_alpha: float | None = hyperparameter(
        0.05,
        "Length-adaptive GAE: a response of l tokens gets lam_actor = 1 - 1/(lam_alpha l), clamped to "
        "[0, 1] (None = lam_actor for all). VAPO section 3.2: alpha 0.05.",
    )
    lam_actor: float = hyperparameter(
        0.95, "GAE lambda of the policy's advantages where lam_alpha is None. VC-PPO: 0.95."
    )
    clip_high: float = setting(0.28, "VAPO (clip-higher, from DAPO): 0.28.")
    loss_agg: str = setting("token-mean", "VAPO's token-level loss: token-mean.")
    lm_loss_coef: float = hyperparameter(
        0.1,
        "Weight mu of the NLL of the batch's correct responses added to the policy loss (0 = off). "
        "VAPO's positive-example LM loss: 0.1.",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        prefix = type(self).__name__
        if self.lam_alpha is not None and not (self.lam_alpha > 0 and math.isfinite(self.lam_alpha)):
            raise ValueError(f"{prefix}.lam_alpha: expected None or a finite value > 0, got {self.lam_alpha}")
        if not (self.lm_loss_coef >= 0 and math.isfinite(self.lm_loss_coef)):
            raise ValueError(f"{prefix}.lm_loss_coef: expected a finite value >= 0, got {self.lm_loss_coef}")

    @property
    def needs_correctness(self) -> bool:
        return self.lm_loss_coef > 0

    def actor_lambdas(self, mask: Tensor) -> float | Tensor:
        if self.lam_alpha is None:
            return self.lam_actor
        return length_adaptive_lambdas(torch.count_nonzero(mask, dim=-1), self.lam_alpha)

    def auxiliary_loss(
        self, logp: Tensor, mask: Tensor, correct: Tensor | None
    ) -> tuple[Tensor, dict[str, Tensor]] | None:
        """lm_loss_coef x the positive-example LM loss (section 3.3), added to the policy loss."""
        if not self.needs_correctness:
            return None
        if correct is None:
            raise ValueError(
                f"{self.name}: lm_loss_coef = {self.lm_loss_coef} > 0 needs each response's "
                f"correctness: policy_loss(..., correct=correct) (or set lm_loss_coef=0)"
            )
        lm_loss = self.positive_lm_loss(logp, mask, correct)
        return self.lm_loss_coef * lm_loss, {"lm_loss": lm_loss.detach()}

    def positive_lm_loss(self, logp: Tensor, mask: Tensor, correct: Tensor) -> Tensor:
        """Mean negative log-probability over the tokens of the correct responses: logp[N, T], mask[N, T],
        correct[N] (0/1) -> 0-dim (0 when no response is correct)."""
        if correct.shape != logp.shape[:1]:
            raise ValueError(f"correct must be [N] with N = {logp.shape[0]}, got {tuple(correct.shape)}")
        positive = mask.bool() & correct.bool()[:, None]
        dtype = ops.compute_dtype(logp)
        return ops.masked_mean(
            -torch.where(positive, logp.to(dtype), torch.zeros((), dtype=dtype, device=logp.device)), positive
        )
