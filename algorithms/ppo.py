"""PPO with a learned critic and GAE, as Open-Reasoner-Zero trains it.

Hu et al., "Open-Reasoner-Zero: An Open Source Approach to Scaling Up Reinforcement Learning on the Base
Model", arXiv 2503.24290 (2025); PPO: Schulman et al. 2017 (arXiv 1707.06347); GAE: Schulman et al. 2016
(arXiv 1506.02438). How it differs from GRPO:

1. A value model V (the critic, trained beside the policy) predicts each token's expected return. The
   outcome reward r sits on the last response token; per token, delta_t = r_t + gamma V_{t+1} - V_t
   (V past the last token = 0), and the advantage is GAE, A_t = sum_k (gamma lam)^k delta_{t+k}.
   ORZ: gamma = lam = 1, so A_t = r - V_t (each token's reward-to-go minus its own value).
2. The advantages are whitened over all response tokens of the rollout batch (no groups); the critic's
   targets are the returns R_t = A_t + V_t before whitening (GAE with `lam_critic`; with lam 1, R_t = r).
3. The critic minimises the clipped value loss 0.5 max((V - R)^2, (clip(V, V_old +- value_clip) - R)^2).
4. No KL term (ORZ sets both KL coefficients to 0), symmetric clip 0.2, value clip 0.2, critic learning
   rate 5x the actor's (ORZ's config.py: 1e-6 and 5e-6).

Reference code: verl's `compute_gae_advantage_return`, `masked_whiten` and `compute_value_loss`
(volcengine/verl, verl/trainer/ppo/core_algos.py, verl/utils/torch_functional.py). The outputs agree with
them on every response token to float64 rounding (measured outside the repository, 5 cases x 4 (gamma,
lambda) settings: max |difference| 1.3e-15 for advantages, 2.0e-15 for returns, 0 for the value loss in
both aggregations, on random values, ragged masks, a length-1 response and padding filled with values of
order 1e6; VAPO's per-response lambdas against verl run row by row: 4.4e-16). Differences:
- Padding: verl's advantages after whitening are nonzero on padding, and its returns there are the
  padding's values; here both are 0 outside the mask. Values outside the mask are never read, so
  inf/NaN in padding stay out (verl multiplies them by 0 and propagates NaN).
- verl's GAE is a Python loop over the T tokens; here a log-depth scan (`ops.linear_reverse_scan`, the
  same sums in another rounding order), which also takes a lambda per response (VAPO).
- verl uses one lambda for advantages and returns; here `lam_critic` (returns) and `lam_actor`
  (advantages) are separate, as VC-PPO decouples them; with lam_actor == lam_critic they are verl's.
- A batch with a single response token: verl's `masked_whiten` raises (Bessel correction by 0); here the
  variance is taken as 0, so the whitened advantage is 0.
- ORZ's code (and OpenRLHF's) whitens with the biased std; the whitening here follows verl, as the
  pinned contract says (the two differ by a constant factor sqrt((n - 1) / n) per batch).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
from torch import Tensor

from fipo_bench import ops
from fipo_bench.algorithms.base import hyperparameter, metric_floats, setting
from fipo_bench.algorithms.grpo import GRPO
from fipo_bench.registry import register_algorithm

PAPER = "Hu et al. 2025, Open-Reasoner-Zero, arXiv 2503.24290"

# verl's masked_mean divides by (count + 1e-8); the whitening adds it too, so it agrees to rounding
VERL_COUNT_EPS = 1e-8

# The names every backend with a critic reports (the local trainer adds critic_grad_norm and critic_lr):
# the report's value-model plots read exactly these.
CRITIC_METRICS = (
    "value_loss",
    "value_clip_frac",
    "explained_variance",
    "value_mean",
    "return_mean",
    "advantage_raw_mean",
    "advantage_raw_std",
)


def last_token_rewards(rewards: Tensor, mask: Tensor) -> Tensor:
    """rewards[N] placed on the last response token of each row (0 elsewhere): -> [N, T]."""
    keep = mask.bool()
    last = keep & (keep.flip(-1).cumsum(-1).flip(-1) == 1)
    return torch.where(last, rewards[:, None], rewards.new_zeros(()))


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float | Tensor) -> Tensor:
    """Generalised advantage estimates of an outcome reward: rewards[N], values[N, T], mask[N, T], lam a float
    or one lambda per response [N] -> advantages[N, T] (0 outside the mask; not whitened).

    Tokens outside the mask are skipped, as verl does: a token's "next" value and advantage are those of
    the next masked token of its row, and values outside the mask are never read.
        delta_t = r_t + gamma V_next(t) - V_t,   A_t = delta_t + gamma lam A_next(t)
    """
    keep = mask.bool()
    zero = values.new_zeros(())
    values = torch.where(keep, values, zero)
    carry = (~keep).to(values.dtype)  # 1 where a token is skipped: the scan carries through it
    # V at the first masked token at or after t, then shifted by one: the value of the next masked token
    value_ahead = ops.linear_reverse_scan(values, carry)
    next_values = torch.nn.functional.pad(value_ahead[..., 1:], (0, 1))
    deltas = torch.where(keep, last_token_rewards(rewards, keep) + gamma * next_values - values, zero)
    lam = torch.as_tensor(lam, dtype=values.dtype, device=values.device)
    decay = torch.where(keep, gamma * (lam[:, None] if lam.dim() == 1 else lam), values.new_ones(()))
    return torch.where(keep, ops.linear_reverse_scan(deltas, decay), zero)


def value_loss_terms(
    values: Tensor, old_values: Tensor, returns: Tensor, value_clip: float | None
) -> tuple[Tensor, Tensor]:
    """The clipped value loss per token before the 0.5 and the aggregation, and where the clipped error is
    the larger one (verl's `vf_clipfrac` flag): [N, T] each.
        max((V - R)^2, (clip(V, V_old - c, V_old + c) - R)^2)
    """
    unclipped = (values - returns) ** 2
    if value_clip is None:
        return unclipped, torch.zeros_like(unclipped, dtype=torch.bool)
    clipped = (torch.clamp(values, old_values - value_clip, old_values + value_clip) - returns) ** 2
    return torch.maximum(unclipped, clipped), clipped > unclipped


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """1 - Var(R - V) / Var(R) over the masked tokens (biased variances); 0-dim. 0 when the returns do not
    vary beyond rounding (Var(R) <= machine epsilon x mean(R^2 + V^2): a batch whose rewards are all equal
    has nothing to explain, and -inf or NaN there would stop a run, whose metrics must be finite)."""
    keep = mask.bool()
    var_returns, var_error = ops.masked_var(returns, keep), ops.masked_var(returns - values, keep)
    scale = ops.masked_mean(returns * returns + values * values, keep)
    varies = var_returns > torch.finfo(var_returns.dtype).eps * scale
    explained = 1.0 - var_error / torch.where(varies, var_returns, torch.ones_like(var_returns))
    return torch.where(varies, explained, torch.zeros_like(explained))


def critic_metrics(values: Tensor, returns: Tensor, raw_advantages: Tensor, mask: Tensor) -> dict[str, float]:
    """The rollout-side CRITIC_METRICS (the value loss and clip fraction come from `value_loss`):
    values, returns, advantages before whitening, mask [N, T] -> floats."""
    keep = mask.bool()
    dtype = ops.compute_dtype(values, returns, raw_advantages)
    values, returns, raw_advantages = (t.detach().to(dtype) for t in (values, returns, raw_advantages))
    return metric_floats(
        {
            "explained_variance": explained_variance(values, returns, keep),
            "value_mean": ops.masked_mean(values, keep),
            "return_mean": ops.masked_mean(returns, keep),
            "advantage_raw_mean": ops.masked_mean(raw_advantages, keep),
            "advantage_raw_std": ops.masked_var(raw_advantages, keep, unbiased=True).sqrt(),
        }
    )


@register_algorithm("ppo")
@dataclasses.dataclass(frozen=True)
class PPO(GRPO):
    """PPO with a critic and GAE, Open-Reasoner-Zero's recipe (arXiv 2503.24290).

    The contract beyond `base.Algorithm` (backends with a critic call these; `needs_critic` is True):

        advantages_and_returns(rewards[N], values[N, T], mask[N, T]) -> (advantages[N, T], returns[N, T])
        critic_rollout(rewards, values, mask) -> (advantages, returns, the rollout-side CRITIC_METRICS)
        value_loss(values[N, T], old_values[N, T], returns[N, T], mask[N, T]) -> (loss, metrics)
    Backends call critic_rollout (GAE once for the advantages and the metrics every backend reports
    under the same names) and value_loss.
    """

    paper: ClassVar[str] = PAPER
    needs_critic: ClassVar[bool] = True

    gamma: float = hyperparameter(
        1.0, "Discount per token in GAE and the returns. ORZ section 2.2 and config: 1."
    )
    lam_actor: float = hyperparameter(
        1.0, "GAE lambda of the policy's advantages. ORZ: 1 (so A_t = r - V_t)."
    )
    lam_critic: float = hyperparameter(
        1.0, "GAE lambda of the critic's targets (returns). ORZ: 1 (the Monte-Carlo return)."
    )
    value_clip: float | None = hyperparameter(
        0.2,
        "New values are clipped to old_values +- value_clip in the value loss (None = unclipped). ORZ's "
        "ppo_base_exp.py and OpenRLHF: 0.2 (verl's default: 0.5).",
    )
    value_loss_agg: str = hyperparameter(
        "token-mean",
        "How the per-token value losses are reduced (see fipo_bench.ops.aggregate). verl's and "
        "OpenRLHF's default: token-mean.",
    )
    critic_lr_scale: float = hyperparameter(
        5.0,
        "The critic's learning rate as a multiple of the actor's. ORZ's config.py: actor 1e-6, critic 5e-6.",
    )
    value_pretrain_steps: int = hyperparameter(
        0,
        "Critic-only steps on rollouts of the frozen initial policy before the first policy update. "
        "ORZ: none.",
    )
    kl_coef: float = setting(0.0, "ORZ's config.py: init_kl_coef 0 and kl_loss_coef 0.")
    loss_agg: str = setting("token-mean", "OpenRLHF's default, on which ORZ's trainer is built.")

    def __post_init__(self) -> None:
        super().__post_init__()
        prefix = type(self).__name__
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"{prefix}.gamma: expected 0 <= gamma <= 1, got {self.gamma}")
        for key in ("lam_actor", "lam_critic"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"{prefix}.{key}: expected 0 <= {key} <= 1, got {getattr(self, key)}")
        if self.value_clip is not None and not (self.value_clip > 0 and math.isfinite(self.value_clip)):
            raise ValueError(
                f"{prefix}.value_clip: expected None or a finite value > 0, got {self.value_clip}"
            )
        if self.value_loss_agg not in ops.AGGREGATION_MODES:
            raise ValueError(
                f"{prefix}.value_loss_agg: expected one of {', '.join(ops.AGGREGATION_MODES)}, "
                f"got {self.value_loss_agg!r}"
            )
        if not (self.critic_lr_scale > 0 and math.isfinite(self.critic_lr_scale)):
            raise ValueError(
                f"{prefix}.critic_lr_scale: expected a finite value > 0, got {self.critic_lr_scale}"
            )
        if self.value_pretrain_steps < 0:
            raise ValueError(f"{prefix}.value_pretrain_steps: expected >= 0, got {self.value_pretrain_steps}")

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor | None = None) -> Tensor:
        raise TypeError(
            f"{self.name} learns a critic (needs_critic): its advantages come from "
            f"advantages_and_returns(rewards, values, mask) with the critic's values"
        )

    def actor_lambdas(self, mask: Tensor) -> float | Tensor:
        """The GAE lambda of each response's advantages: a float, or [N] (VAPO: length-adaptive)."""
        return self.lam_actor

    def gae(self, rewards: Tensor, values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(advantages before whitening, returns) [N, T] each, 0 outside the mask (see below)."""
        if values.dim() != 2 or mask.shape != values.shape or rewards.shape != values.shape[:1]:
            raise ValueError(
                f"expected rewards [N], values [N, T] and mask [N, T]; got {tuple(rewards.shape)}, "
                f"{tuple(values.shape)} and {tuple(mask.shape)}"
            )
        dtype = ops.compute_dtype(rewards, values)
        rewards, values = rewards.detach().to(dtype), values.detach().to(dtype)
        lam_actor = self.actor_lambdas(mask)
        advantages = gae(rewards, values, mask, self.gamma, lam_actor)
        if not isinstance(lam_actor, Tensor) and lam_actor == self.lam_critic:  # PPO's 1 and 1: one scan
            critic_advantages = advantages
        else:
            critic_advantages = gae(rewards, values, mask, self.gamma, self.lam_critic)
        returns = torch.where(mask.bool(), critic_advantages + values, values.new_zeros(()))
        return advantages, returns

    def advantages_and_returns(self, rewards: Tensor, values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """rewards[N] (outcome reward, put on each response's last token), values[N, T] (the critic's, at
        rollout), mask[N, T] -> (advantages[N, T]: GAE with the actor's lambda, whitened over the batch's
        response tokens as verl's masked_whiten; returns[N, T]: GAE with lam_critic plus the values, not
        whitened). Both 0 outside the mask; float32, or float64 for float64 inputs."""
        advantages, returns = self.gae(rewards, values, mask)
        return ops.masked_whiten(advantages, mask, unbiased=True, count_eps=VERL_COUNT_EPS), returns

    def critic_rollout(
        self, rewards: Tensor, values: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, float]]:
        """advantages_and_returns plus the rollout-side critic_metrics from the same GAE: backends call it."""
        raw_advantages, returns = self.gae(rewards, values, mask)
        advantages = ops.masked_whiten(raw_advantages, mask, unbiased=True, count_eps=VERL_COUNT_EPS)
        return advantages, returns, critic_metrics(values, returns, raw_advantages, mask)

    def value_loss(
        self, values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        """The critic's loss: values[N, T] (being trained), old_values[N, T] (at rollout), returns[N, T],
        mask[N, T] -> (0-dim loss, {"value_loss", "value_clip_frac"}).
            0.5 * agg(max((V - R)^2, (clip(V, V_old - c, V_old + c) - R)^2))
        """
        for key, tensor in {"old_values": old_values, "returns": returns, "mask": mask}.items():
            if tensor.shape != values.shape or values.dim() != 2:
                raise ValueError(
                    f"values must be [N, T] and {key} of its shape; got {tuple(values.shape)} and "
                    f"{tuple(tensor.shape)}"
                )
        keep = mask.bool()
        dtype = ops.compute_dtype(values, old_values, returns)
        zero = torch.zeros((), dtype=dtype, device=values.device)
        clean_values, clean_old, clean_returns = (
            torch.where(keep, t.to(dtype), zero) for t in (values, old_values.detach(), returns.detach())
        )
        per_token, clipped = value_loss_terms(clean_values, clean_old, clean_returns, self.value_clip)
        loss = 0.5 * ops.aggregate(per_token, keep, self.value_loss_agg, count_eps=VERL_COUNT_EPS)
        metrics = {"value_loss": loss.detach(), **ops.masked_fractions({"value_clip_frac": clipped}, keep)}
        return loss, metric_floats(metrics)
