"""FIPO: Future-KL Influenced Policy Optimization.

Qwen Pilot (Alibaba), "FIPO: Future-KL Influenced Policy Optimization", arXiv 2603.19835 (2026).
GRPO-style training gives every token of a response the same outcome advantage. FIPO re-weights each
token's advantage by how much the policy has moved, since the rollout, on the tokens that follow it
("Future-KL"), which turns the sparse outcome reward into a dense per-token signal. With it,
Qwen2.5-32B-Base on DAPO-Math-17k grows its chain of thought from ~4k to >10k tokens and reaches
AIME24 avg@32 of 56 (peak 58) against DAPO's 50.

How FIPO differs from DAPO (`dapo.py`; DAPO's own changes to GRPO are listed there):

1. A per-token weight on the advantage, computed inside the loss from the probability shift
       d_t = log pi_theta(y_t) - log pi_old(y_t),   r_t = exp(d_t)                             (eq. 1)
   summed, discounted, over the rest of the response (the Future-KL):
       F_t = sum_{k >= t} gamma^(k - t) M_k d_k,   M_k = [r_k <= c],   gamma = 2^(-1/tau)       (eq. 2)
   The Future-KL mask M_k leaves out the tokens whose ratio already exceeds the dual-clip constant c;
   tau is the half-life in tokens (`half_life`). On the first mini-batch after a rollout d = 0, so
   F = 0 and FIPO equals DAPO; it acts from the second mini-batch on. As everywhere here (and in verl),
   d_t is clamped to [-20, 20] before use, so that one wild token cannot overflow exp; the paper's
   eq. 1 has no clamp.
2. The influence weight and the re-weighted advantage:
       f_t = clamp(exp(F_t), f_low, f_high),   A~_t = A_t * stop_gradient(f_t)   (weight_low/high)
3. A safety rule for negative advantages whose ratio has already grown a lot:
       where A_t < 0 and r_t > safety_threshold:  f_t = clamp(f_t, 0.8, 1.0)
4. The clipped, dual-clipped surrogate on A~ (as DAPO), then every response with more than one token
   where A < 0 and the dual clip is active is dropped from the batch:
       l_t = max(-A~_t r_t, -A~_t clip(r_t, 1 - eps_low, 1 + eps_high))
       where A~_t < 0:  l_t = min(l_t, -A~_t c)
       loss = token-mean of l over the tokens of the kept responses;  no KL, no entropy bonus.

Where the paper and its reference code differ, the default follows the code and the paper is an option:
the code applies M_k to every token, the paper only to negative-advantage tokens
(`mask_negative_only`); the code clamps the weight to [0.8, 1.0] under the safety rule, the paper
resets it to 1 (`safety_resets_weight`). Defaults are the paper's Qwen2.5-32B run; "fipo-7b" registers
its Qwen2.5-7B-Math ablation winner (weight clip [0.8, 1.2], safety threshold 3).

The reference code computes F with a quadratic chunked matmul; here it is a linear-time scan
(`fipo_bench.ops.discounted_reverse_cumsum`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from fipo_bench import ops
from fipo_bench.algorithms.base import hyperparameter
from fipo_bench.algorithms.dapo import DAPO
from fipo_bench.algorithms.grpo import clip_flags, clipped_surrogate, surrogate_metrics
from fipo_bench.registry import register_algorithm, register_variant

SAFETY_WEIGHT_RANGE = (0.8, 1.0)  # the reference code's clamp under the safety rule (not a paper value)


class InfluenceWeights(NamedTuple):
    influence_weight: Tensor  # [N, T] f_t, no gradient
    future_kl: Tensor  # [N, T] F_t
    future_kl_mask: Tensor  # [N, T] bool: M_k (within the response mask), the tokens summed into F
    unsafe: Tensor  # [N, T] bool: where the safety rule replaced the weight


def future_kl(log_ratio: Tensor, future_kl_mask: Tensor, half_life: float) -> Tensor:
    """F_t = sum_{k >= t} 2^(-(k - t) / half_life) * M_k * log_ratio_k:  [N, T] -> [N, T]."""
    summed = torch.where(future_kl_mask, log_ratio, log_ratio.new_zeros(()))
    return ops.discounted_reverse_cumsum(summed, 2.0 ** (-1.0 / half_life))


def influence_weights(
    log_ratio: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    half_life: float,
    ratio_cap: float | None,
    weight_low: float,
    weight_high: float,
    safety_threshold: float,
    mask_negative_only: bool,
    safety_resets_weight: bool,
) -> InfluenceWeights:
    """FIPO's influence weights f_t (eqs. 1-2 and the safety rule), without gradient.

    log_ratio[N, T] (clamped logp - old_logp), advantages[N, T], mask[N, T] bool.
    """
    log_ratio = log_ratio.detach()
    future_kl_mask = mask
    if ratio_cap is not None:
        within_cap = log_ratio <= math.log(ratio_cap)  # r_t <= c
        if mask_negative_only:  # the paper: the cap leaves out negative-advantage tokens only
            within_cap = within_cap | (advantages >= 0)
        future_kl_mask = mask & within_cap
    future = future_kl(log_ratio, future_kl_mask, half_life)  # [N, T]
    weight = torch.exp(future).clamp_(weight_low, weight_high)  # exp may overflow to inf; the clamp bounds it
    unsafe = (advantages < 0) & (log_ratio > math.log(safety_threshold))  # r_t > safety_threshold
    safe_weight = 1.0 if safety_resets_weight else weight.clamp(*SAFETY_WEIGHT_RANGE)
    weight = torch.where(unsafe, safe_weight, weight)
    return InfluenceWeights(weight, future, future_kl_mask, unsafe)


def sequences_to_keep(dual_clipped: Tensor, mask: Tensor, max_dual_clipped_tokens: int | None) -> Tensor:
    """keep[N] bool: False for responses with more than `max_dual_clipped_tokens` dual-clipped tokens."""
    if max_dual_clipped_tokens is None:
        return torch.ones(mask.shape[0], dtype=torch.bool, device=mask.device)
    return torch.count_nonzero(dual_clipped & mask, dim=-1) <= max_dual_clipped_tokens


@register_algorithm("fipo")
@dataclasses.dataclass(frozen=True)
class FIPO(DAPO):
    """FIPO with the Qwen2.5-32B settings of arXiv 2603.19835 (on top of DAPO's recipe)."""

    paper: ClassVar[str] = "Qwen Pilot 2026, FIPO, arXiv 2603.19835"
    renamed_hyperparameters: ClassVar[dict[str, str]] = {"decay_rate": "half_life"}  # after fipo-bench 0.1.0

    half_life: float = hyperparameter(
        32.0, "Half-life tau of the Future-KL discount in tokens: gamma = 2^(-1/tau). FIPO eq. 2; 32 tokens.")
    weight_low: float = hyperparameter(
        1.0, "Lower bound of the influence weight exp(Future-KL). FIPO, Qwen2.5-32B run: 1.0 (7B: 0.8).")
    weight_high: float = hyperparameter(
        1.2, "Upper bound of the influence weight exp(Future-KL). FIPO: 1.2.")
    safety_threshold: float = hyperparameter(
        10.0, "Where A < 0 and the ratio exceeds this, the weight is clamped to [0.8, 1]. FIPO, 32B run: 10 "
        "(7B: 3).")
    mask_negative_only: bool = hyperparameter(
        False, "Exclude tokens with ratio > dual_clip from Future-KL only where A < 0. The paper's eq. 2 "
        "context; the reference code (default False) excludes them everywhere.")
    safety_resets_weight: bool = hyperparameter(
        False, "Under the safety rule, reset the weight to 1 instead of clamping it to [0.8, 1]. The paper "
        "resets; the reference code (default False) clamps.")
    max_dual_clipped_tokens: int | None = hyperparameter(
        1, "Responses with more dual-clipped negative-advantage tokens than this are dropped from the loss "
        "(None = keep all). FIPO reference code: 1.")

    def __post_init__(self) -> None:
        super().__post_init__()
        prefix = type(self).__name__
        if not (self.half_life > 0 and math.isfinite(self.half_life)):
            raise ValueError(f"{prefix}.half_life: expected a finite number of tokens > 0, "
                             f"got {self.half_life}")
        if not 0.0 < self.weight_low <= self.weight_high:
            raise ValueError(f"{prefix}.weight_low/weight_high: expected 0 < weight_low <= weight_high, got "
                             f"{self.weight_low} and {self.weight_high}")
        if not self.safety_threshold > 0:
            raise ValueError(f"{prefix}.safety_threshold: expected > 0, got {self.safety_threshold}")
        if self.max_dual_clipped_tokens is not None and self.max_dual_clipped_tokens < 0:
            raise ValueError(f"{prefix}.max_dual_clipped_tokens: expected None or >= 0, "
                             f"got {self.max_dual_clipped_tokens}")

    def surrogate(
        self, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        log_ratio = self.log_ratio(logp, old_logp)
        weights = influence_weights(
            log_ratio, advantages, mask, half_life=self.half_life, ratio_cap=self.dual_clip,
            weight_low=self.weight_low, weight_high=self.weight_high, safety_threshold=self.safety_threshold,
            mask_negative_only=self.mask_negative_only, safety_resets_weight=self.safety_resets_weight)
        loss, dual_clipped = clipped_surrogate(
            torch.exp(log_ratio), advantages * weights.influence_weight, self.clip_low, self.clip_high,
            self.dual_clip)
        keep = sequences_to_keep(dual_clipped, mask, self.max_dual_clipped_tokens)  # [N]

        flags = clip_flags(log_ratio, advantages, self.clip_low, self.clip_high, dual_clipped)
        metrics = surrogate_metrics(log_ratio, mask, {
            **flags,
            "weight_clip_frac_high": weights.future_kl > math.log(self.weight_high),
            "weight_clip_frac_low": weights.future_kl < math.log(self.weight_low),
            "safety_frac": weights.unsafe,
            "future_kl_masked_frac": ~weights.future_kl_mask,
        })
        token_mask = ops.float_mask(mask)  # [N, T]: for the weight statistics, the counts and the loss mask
        tokens_per_sequence = token_mask.sum(-1)  # [N]
        real_weights = weights.influence_weight * token_mask  # [N, T], 0 on padding
        weight_mean = real_weights.sum() / tokens_per_sequence.sum().clamp_min(1)
        # The mean of the real weights lies between their min and max, so it can stand in for padding (and
        # for an empty batch, where all three are 0). Exact: each token adds w + 0 or 0 + mean.
        filled = torch.addcmul(real_weights, 1.0 - token_mask, weight_mean).flatten()
        weight_min, weight_max = torch.aminmax(torch.cat([filled, weight_mean[None]]))
        metrics.update({
            "weight_mean": weight_mean, "weight_min": weight_min, "weight_max": weight_max,
            # Of the non-empty responses (a dropped one has a dual-clipped token, so it is never empty).
            "dropped_seq_frac": (
                torch.count_nonzero(~keep) / torch.count_nonzero(tokens_per_sequence).clamp_min(1)),
        })
        return loss, token_mask * keep.to(token_mask.dtype)[:, None], metrics


FIPO_7B = register_variant(
    "fipo-7b", FIPO,
    "FIPO with the settings of the paper's Qwen2.5-7B-Math ablation winner (arXiv 2603.19835): weight clip "
    "[0.8, 1.2], safety threshold 3.",
    weight_low=0.8, safety_threshold=3.0)
