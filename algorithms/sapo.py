"""SAPO: Soft Adaptive Policy Optimization.

Gao et al. (Qwen), "Soft Adaptive Policy Optimization", arXiv 2511.20347 (2025). A hard clip zeroes the
gradient of every token outside its band, all at once; SAPO replaces it with a smooth gate that fades
off-policy tokens out gradually, and more strongly for negative advantages. Differences from GRPO:

1. No clip. Each token's surrogate is a sigmoid gate of its ratio r_t = exp(logp_t - old_logp_t):
       l_t = -f(r_t) A_t,   f(r) = sigmoid(tau (r - 1)) * 4 / tau,
   whose gradient weight 4 p (1 - p) (p = sigmoid(tau (r - 1))) is 1 on-policy (r = 1: the plain policy
   gradient) and decays smoothly as r moves away.
2. Asymmetric temperatures: tau = tau_pos where A > 0, tau_neg otherwise; tau_neg > tau_pos damps
   negative-advantage tokens faster (the paper's setting: 1.0 and 1.05).
3. seq-mean-token-mean aggregation; no KL term.

Reference code: verl's `sapo` loss (the paper published none). Differences:
- verl ignores `loss_agg_mode` and always takes seq-mean-token-mean; here `loss_agg` is honoured (its
  default is that mode).
- Log-ratios are clamped at +-20 before exp, as verl and GRPO here (the paper has no such guard).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
from torch import Tensor

from fipo_bench import ops
from fipo_bench.algorithms.base import hyperparameter, setting
from fipo_bench.algorithms.grpo import PolicyGradient, surrogate_metrics
from fipo_bench.registry import register_algorithm


def soft_gate(ratio: Tensor, tau: Tensor | float) -> Tensor:
    """SAPO's gate f(r) = sigmoid(tau (r - 1)) * 4 / tau, elementwise."""
    return torch.sigmoid(tau * (ratio - 1.0)) * (4.0 / tau)


@register_algorithm("sapo")
@dataclasses.dataclass(frozen=True)
class SAPO(PolicyGradient):
    """SAPO (arXiv 2511.20347): a temperature-controlled sigmoid gate instead of the hard clip."""

    paper: ClassVar[str] = "Gao et al. 2025, Soft Adaptive Policy Optimization, arXiv 2511.20347"

    tau_pos: float = hyperparameter(
        1.0, "Gate temperature for tokens with A > 0 (larger = sharper fade-out). SAPO: 1.0.")
    tau_neg: float = hyperparameter(
        1.05, "Gate temperature for tokens with A <= 0. SAPO: 1.05.")
    loss_agg: str = setting(
        "seq-mean-token-mean", "SAPO: the mean over each response's tokens, then over responses.")

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("tau_pos", "tau_neg"):
            value = getattr(self, key)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{type(self).__name__}.{key}: expected a finite temperature > 0, "
                                 f"got {value}")

    def surrogate(
        self, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        log_ratio = self.log_ratio(logp, old_logp)
        tau_pos, tau_neg = advantages.new_tensor(self.tau_pos), advantages.new_tensor(self.tau_neg)
        tau = torch.where(advantages > 0, tau_pos, tau_neg)  # [N, T]
        loss = -soft_gate(torch.exp(log_ratio), tau) * advantages
        return loss, ops.float_mask(mask), surrogate_metrics(log_ratio, mask, {})
