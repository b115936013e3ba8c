"""GMPO: Geometric-Mean Policy Optimization.

Zhao et al., "Geometric-Mean Policy Optimization", arXiv 2507.20673 (2025). GRPO's arithmetic mean of
token ratios is pulled around by outlier tokens; a geometric mean is not, so GMPO can clip far more
widely and explore more. Differences from GRPO:

1. One objective per response, built from the geometric mean of its (clipped) token ratios:
       l_i = -A_i exp(mean_t d'_it),   d' = min(d, eps_high) where A > 0,  max(d, -eps_low) where A < 0
   with d = logp - old_logp. The clip acts token by token, in log space, on the pessimistic side.
2. A wider clip range: (-0.4, 0.4) in log space, i.e. ratios in [e^-0.4, e^0.4] = [0.67, 1.49].
3. The mean over responses (l_i is put on each of the response's tokens, so loss_agg
   "seq-mean-token-mean" averages the l_i; "token-mean" would weigh them by length); no KL term.

Reference code: the authors' (callsys/GMPO, train_zero_math_gmpo.py: `critic_type_modify gmpo`, one
response per micro-batch) and verl (`geo_mean` loss). Differences, the default following the authors:
- verl ignores `loss_agg_mode` and takes the mean over all rows of the batch, empty responses included;
  ours (and the authors') over the non-empty ones: one positive constant per batch.
- Where A = 0 verl's clip (through sign(A)) sets d' = 0, the authors' treats A = 0 as A > 0; with one
  advantage per response both give that response loss 0 and no gradient. Ours is verl's, which is also
  defined for per-token advantages.
- verl averages per-token advantages over the response; the authors' advantage is the response's
  scalar. The same for sequence-level advantages; ours is verl's for per-token ones.
- verl divides the sums over a response by (length + 1e-8); ours by the length.
- Log-ratios are not clamped at +-20 (GRPO here clamps them), as in both.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import Tensor

from fipo_bench import ops
from fipo_bench.algorithms.base import hyperparameter, setting
from fipo_bench.algorithms.grpo import PolicyGradient, surrogate_metrics
from fipo_bench.registry import register_algorithm


def geometric_mean_loss(
    log_ratio: Tensor, advantages: Tensor, mask: Tensor, clip_low: float, clip_high: float
) -> tuple[Tensor, Tensor]:
    """GMPO's per-response loss: log_ratio, advantages [N, T] (0 on padding), mask[N, T] bool ->
    (loss[N], clipped[N, T] bool: tokens where the clip replaced d)."""
    sign = torch.sign(advantages)  # the pessimistic side: min(d, bound) for A > 0, max for A < 0; 0 at A = 0
    clipped_d = sign * torch.minimum(sign * log_ratio, sign * log_ratio.clamp(-clip_low, clip_high))
    tokens = torch.count_nonzero(mask, dim=-1).clamp_min(1)  # [N]
    mean_log_ratio = ops.masked_sum(clipped_d, mask, dim=-1) / tokens  # [N]
    advantage = ops.masked_sum(advantages, mask, dim=-1) / tokens  # [N]
    clipped = ((advantages > 0) & (log_ratio > clip_high)) | ((advantages < 0) & (log_ratio < -clip_low))
    return -advantage * torch.exp(mean_log_ratio), clipped


@register_algorithm("gmpo")
@dataclasses.dataclass(frozen=True)
class GMPO(PolicyGradient):
    """GMPO (arXiv 2507.20673): the geometric mean of token ratios per response, clipped in log space."""

    paper: ClassVar[str] = "Zhao et al. 2025, Geometric-Mean Policy Optimization, arXiv 2507.20673"
    log_ratio_limit: ClassVar[float | None] = None  # as the reference code; the clip bounds the ratio

    clip_low: float = hyperparameter(
        0.4, "Token log-ratios of negative-advantage responses are clipped below at -clip_low (log space). "
        "GMPO: 0.4.")
    clip_high: float = hyperparameter(
        0.4, "Token log-ratios of positive-advantage responses are clipped above at clip_high (log space). "
        "GMPO: 0.4.")
    loss_agg: str = setting("seq-mean-token-mean", "GMPO: the mean of the per-response objectives.")

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("clip_low", "clip_high"):
            if not getattr(self, key) >= 0.0:
                raise ValueError(f"{type(self).__name__}.{key}: expected a log-space bound >= 0, "
                                 f"got {getattr(self, key)}")

    def surrogate(
        self, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        log_ratio = self.log_ratio(logp, old_logp)
        loss, clipped = geometric_mean_loss(log_ratio, advantages, mask, self.clip_low, self.clip_high)
        flags = {"clip_frac_high": clipped & (advantages > 0), "clip_frac_low": clipped & (advantages < 0)}
        metrics = surrogate_metrics(log_ratio, mask, flags)
        return loss[:, None].expand(mask.shape), ops.float_mask(mask), metrics
