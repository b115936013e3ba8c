"""GSPO: Group Sequence Policy Optimization.

Zheng et al. (Qwen), "Group Sequence Policy Optimization", arXiv 2507.18071 (2025). A token-level
importance ratio corrects a distribution it sampled once, so its noise grows with the response and
destabilises long (and mixture-of-experts) training. GSPO weighs and clips whole responses instead.
Differences from GRPO:

1. The ratio is the response's length-normalised likelihood ratio (a geometric mean of token ratios):
       s_i = exp(mean_t (log pi_theta(y_it) - log pi_old(y_it)))
   in the paper's GSPO-token form, which keeps per-token advantages possible with the same value and,
   for advantages constant over a response, the same gradient:
       s_it = sg(s_i) * pi_theta(y_it) / sg(pi_theta(y_it))   (sg = stop-gradient)
2. The clip acts on s_it, with a much narrower range: [1 - 3e-4, 1 + 4e-4] (section 5.1).
3. seq-mean-token-mean aggregation; no KL term (beta = 0, per the authors in verl PR 2775).
On a single-token response s = r and GSPO is PPO with that clip.

Reference code: verl's `gspo` loss (the paper published none). Differences:
- verl ignores `loss_agg_mode` and always takes seq-mean-token-mean; here `loss_agg` is honoured (its
  default is that mode).
- Numerical guards as verl's: log s_it is clamped at 10 before exp (no gradient flows through a response
  whose mean log-ratio exceeds 10), and the token log-ratios are NOT clamped at +-20 first (GRPO here
  clamps them), so the mean is the paper's. The paper has neither guard.
- `dual_clip` (off by default, as in verl and the paper) caps the loss on negative advantages at
  -A * dual_clip, with s in place of the token ratio.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import Tensor

from fipo_bench import ops
from fipo_bench.algorithms.base import hyperparameter, setting
from fipo_bench.algorithms.grpo import GRPO, clip_flags, clipped_surrogate, surrogate_metrics
from fipo_bench.registry import register_algorithm

SEQUENCE_LOG_RATIO_CAP = 10.0  # verl's clamp of log s_it before exp


def sequence_log_ratio(logp: Tensor, old_logp: Tensor, mask: Tensor) -> Tensor:
    """log s_it = sg(mean_t (logp - old_logp)) + logp - sg(logp), clamped at 10: [N, T] -> [N, T].

    Its value is the response's mean log-ratio on every token; its gradient is that of logp.
    """
    tokens = torch.count_nonzero(mask, dim=-1).clamp_min(1)  # [N]
    mean = ops.masked_sum(logp - old_logp, mask, dim=-1) / tokens  # [N]
    return (mean.detach()[:, None] + logp - logp.detach()).clamp(max=SEQUENCE_LOG_RATIO_CAP)


@register_algorithm("gspo")
@dataclasses.dataclass(frozen=True)
class GSPO(GRPO):
    """GSPO (arXiv 2507.18071): the sequence-level, length-normalised ratio, clipped narrowly."""

    paper: ClassVar[str] = "Zheng et al. 2025, Group Sequence Policy Optimization, arXiv 2507.18071"
    log_ratio_limit: ClassVar[float | None] = None  # as verl: the mean takes the raw token log-ratios

    clip_low: float = hyperparameter(
        3e-4, "The sequence ratio is clipped below at 1 - clip_low. GSPO section 5.1: 3e-4.")
    clip_high: float = hyperparameter(
        4e-4, "The sequence ratio is clipped above at 1 + clip_high. GSPO section 5.1: 4e-4.")
    kl_coef: float = setting(0.0, "GSPO trains without it.")
    loss_agg: str = setting(
        "seq-mean-token-mean", "GSPO: the mean over each response's tokens, then over responses.")

    def surrogate(
        self, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        log_ratio = sequence_log_ratio(logp, old_logp, mask)  # [N, T]
        loss, dual_clipped = clipped_surrogate(
            torch.exp(log_ratio), advantages, self.clip_low, self.clip_high, self.dual_clip)
        flags = clip_flags(log_ratio, advantages, self.clip_low, self.clip_high, dual_clipped)
        metrics = surrogate_metrics(logp - old_logp, mask, flags)  # ppo_kl over tokens, clips over s
        return loss, ops.float_mask(mask), metrics
