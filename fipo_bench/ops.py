"""Tensor ops shared by every algorithm: masked reductions, per-group statistics, whitening, loss
aggregation, the linear-time discounted reverse scan behind FIPO's Future-KL and REINFORCE++'s returns, and
the reverse scan of a linear recurrence behind GAE.

Conventions: `mask[N, T]` marks response tokens (bool or 0/1 float); values outside it are ignored even
when they are inf/NaN. Aggregation modes follow verl's names (`loss_agg_mode`); "seq-mean-token-sum-norm"
is Dr. GRPO's constant-length normalisation (Liu et al. 2025, arXiv 2503.20783). Math runs in float32,
or in float64 when an input is float64 (`compute_dtype`).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

AGGREGATION_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")

# The in-chunk scan multiplies by gamma^-i; chunks are sized so that factor stays <= 2^32, far from
# float32's 2^128 limit and far enough from its subnormal range that small values keep their precision.
_CHUNK_DYNAMIC_RANGE_LOG2 = 32.0


def compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    """float64 if any of `tensors` is float64, else float32 (bf16/fp16/fp32 inputs are computed in it)."""
    wide = any(t is not None and t.dtype == torch.float64 for t in tensors)
    return torch.float64 if wide else torch.float32


def masked_sum(values: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Sum of `values` where `mask` is set (over `dim`, or everything)."""
    kept = torch.where(mask.bool(), values, torch.zeros((), dtype=values.dtype, device=values.device))
    return kept.sum() if dim is None else kept.sum(dim)


def float_mask(mask: Tensor) -> Tensor:
    """`mask` (bool or 0/1) as float32 0/1. Through uint8: PyTorch's CPU cast from bool straight to float is
    not vectorised and several times slower."""
    return mask.bool().view(torch.uint8).float()


def masked_fractions(flags: dict[str, Tensor], mask: Tensor) -> dict[str, Tensor]:
    """Fraction of the `mask` entries where each bool flag (of mask's shape) is set; 0 if the mask is empty.

    All flags are counted in one reduction. (An int32 sum: several times faster on CPU than count_nonzero,
    which widens to int64; exact below 2^31 entries.)
    """
    if not flags:
        return {}
    mask = mask.bool()
    counts = (torch.stack(list(flags.values())) & mask).flatten(1).sum(-1, dtype=torch.int32)  # [K]
    total = mask.sum(dtype=torch.int32).clamp_min(1)
    return dict(zip(flags, (counts / total).unbind(), strict=True))


def masked_mean(values: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of `values` where `mask` is set; 0 where nothing is set."""
    count = torch.count_nonzero(mask, dim=dim)
    return masked_sum(values, mask, dim) / count.clamp_min(1)


def group_mean_std(values: Tensor, group_ids: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and unbiased std of each sample's group, broadcast back to the samples.

    values[N], group_ids[N] (any integer labels, groups need not be contiguous) -> (mean[N], std[N]).
    A group of one has std 0.
    """
    if values.shape != group_ids.shape or values.dim() != 1:
        raise ValueError(f"values and group_ids must both be [N]; got {tuple(values.shape)} and "
                         f"{tuple(group_ids.shape)}")
    _, group_of, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)  # [N], [G]
    counts = counts.to(values.dtype)
    zeros = values.new_zeros(counts.shape[0])  # [G]
    mean = zeros.index_add(0, group_of, values) / counts  # [G]
    centered = values - mean[group_of]  # [N]; two passes, so large offsets do not cancel digits
    var = zeros.index_add(0, group_of, centered * centered) / (counts - 1).clamp_min(1)  # [G]
    return mean[group_of], var.sqrt()[group_of]


def group_sum(values: Tensor, group_ids: Tensor) -> Tensor:
    """Sum of `values` over each sample's group, broadcast back: values[N], group_ids[N] -> [N]."""
    if values.shape != group_ids.shape or values.dim() != 1:
        raise ValueError(f"values and group_ids must both be [N]; got {tuple(values.shape)} and "
                         f"{tuple(group_ids.shape)}")
    _, group_of, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)  # [N], [G]
    return values.new_zeros(counts.shape[0]).index_add(0, group_of, values)[group_of]


def masked_var(values: Tensor, mask: Tensor, unbiased: bool = False) -> Tensor:
    """Variance of the `mask` entries of the whole tensor, 0-dim: biased, or Bessel-corrected (then over
    max(count - 1, 1)); 0 where nothing is set."""
    keep = mask.bool()
    count = torch.count_nonzero(keep)
    centered = torch.where(keep, values - masked_mean(values, keep), values.new_zeros(()))
    return (centered * centered).sum() / ((count - 1) if unbiased else count).clamp_min(1)


def masked_whiten(values: Tensor, mask: Tensor, unbiased: bool, count_eps: float = 0.0) -> Tensor:
    """(values - mean) / std over the `mask` entries of the whole tensor, 0 outside the mask.

    unbiased=False: biased variance, std = sqrt(max(var, 1e-8)) (OpenRLHF's advantage whitening);
    unbiased=True: Bessel-corrected variance, std = sqrt(var + 1e-8) (verl's `masked_whiten`). With fewer
    than two entries the result is 0 (verl raises). count_eps is added to the entry
    count in both means, as verl's `masked_mean` adds 1e-8 (pass 1e-8 to agree with verl to rounding; the
    difference is a relative 1e-8 / count).
    """
    keep = mask.bool()
    count = torch.count_nonzero(keep).to(values.dtype)  # in values' dtype, so count_eps is not rounded away
    mean = masked_sum(values, keep) / (count.clamp_min(1) + count_eps)
    centered = torch.where(keep, values - mean, values.new_zeros(()))
    if unbiased:
        squares = (centered * centered).sum()
        if count_eps:  # verl: mean of squares over (count + eps), times the Bessel factor count / (count - 1)
            var = squares / (count + count_eps) * (count / (count - 1).clamp_min(1))
        else:
            var = squares / (count - 1).clamp_min(1)
        # a single entry whitens to 0 (with count_eps its mean would not be exactly itself)
        scale = torch.where(count > 1, torch.rsqrt(var + 1e-8), 0.0)
    else:
        var = (centered * centered).sum() / (count.clamp_min(1) + count_eps)
        scale = torch.rsqrt(var.clamp_min(1e-8))
    return centered * scale


def aggregate(values: Tensor, mask: Tensor, mode: str, num_tokens_norm: float | None = None,
              count_eps: float = 0.0) -> Tensor:
    """Reduce per-token `values[N, T]` over `mask[N, T]` to a 0-dim loss.

    - "token-mean": mean over every masked token of the batch (DAPO).
    - "seq-mean-token-mean": mean over each sequence's tokens, then over sequences (GRPO).
    - "seq-mean-token-sum": sum over each sequence's tokens, then mean over sequences.
    - "seq-mean-token-sum-norm": token sum divided by the constant `num_tokens_norm` (default T, which
      padding changes: pass the maximum response length to make it constant), then mean over sequences.
    Sequence means count only sequences with at least one masked token. count_eps is added to each
    sequence's token count in "seq-mean-token-mean" (verl's agg_loss adds 1e-8).
    """
    if values.shape != mask.shape or values.dim() != 2:
        raise ValueError(f"values and mask must both be [N, T]; got {tuple(values.shape)} and "
                         f"{tuple(mask.shape)}")
    if mode == "token-mean":
        return masked_mean(values, mask)
    token_sum = masked_sum(values, mask, dim=-1)  # [N]
    token_count = torch.count_nonzero(mask, dim=-1)  # [N]
    if mode == "seq-mean-token-mean":
        per_sequence = token_sum / (token_count.to(values.dtype).clamp_min(1) + count_eps)
    elif mode == "seq-mean-token-sum":
        per_sequence = token_sum
    elif mode == "seq-mean-token-sum-norm":
        per_sequence = token_sum / _tokens_norm(values.shape[-1], num_tokens_norm)
    else:
        raise ValueError(f"unknown loss aggregation mode {mode!r}; expected one of "
                         f"{', '.join(AGGREGATION_MODES)}")
    return masked_mean(per_sequence, token_count > 0)


def seq_mean_token_mean_scale(mask: Tensor, mode: str, num_tokens_norm: float | None = None) -> Tensor:
    """Per-sequence factors [N, 1] with aggregate(v * factor, mask, "seq-mean-token-mean") ==
    aggregate(v, mask, mode), for the sequence-mean modes: a backend that reduces only by token-mean or
    seq-mean-token-mean (OpenRLHF) expresses the token-sum modes with them."""
    if mode == "seq-mean-token-mean":
        return torch.ones(mask.shape[0], 1, device=mask.device)
    token_count = torch.count_nonzero(mask, dim=-1).float()[:, None]  # [N, 1]
    if mode == "seq-mean-token-sum":
        return token_count
    if mode == "seq-mean-token-sum-norm":
        return token_count / _tokens_norm(mask.shape[-1], num_tokens_norm)
    raise ValueError(f"{mode!r} is not a sequence-mean aggregation; expected seq-mean-token-mean, "
                     f"seq-mean-token-sum or seq-mean-token-sum-norm")


def _tokens_norm(width: int, num_tokens_norm: float | None) -> float:
    """The divisor of "seq-mean-token-sum-norm": num_tokens_norm, or the padded width (1 if there are no
    columns, where every sum is 0)."""
    if num_tokens_norm is None:
        return max(width, 1)
    if not num_tokens_norm > 0:
        raise ValueError(f"num_tokens_norm must be > 0, got {num_tokens_norm}")
    return num_tokens_norm


def discounted_reverse_cumsum(values: Tensor, gamma: float) -> Tensor:
    """y_t = sum_{k >= t} gamma^(k - t) * values_k along the last dimension, in O(T) work.

    values[..., T] -> y[..., T] (float32, or float64 for float64 input; lower precisions are upcast).

    Two levels. Inside chunks of C tokens, y is a rescaled reverse cumsum,
    y_{j,i} = gamma^-i * sum_{i' >= i} gamma^i' x_{j,i'}, with C small enough that gamma^-C <= 2^32, so
    nothing overflows at any T. (The one-shot form gamma^-t * cumsum(gamma^t x) overflows float32 once
    gamma^-T = 2^(T / tau) > 2^128, i.e. T > 4096 at tau = 32.) Across chunks, the value at each chunk's
    first token obeys Y_j = head_j + gamma^C * Y_{j+1}, solved for Y_{j+1} with an [n, n] decay matrix over
    the n = T / C chunks (entries gamma^(C k) <= 1 that underflow harmlessly to 0); each token then adds
    gamma^(C - i) * Y_{j+1}. Cost O(T + n^2) per row, with C = 1024 at FIPO's tau = 32.
    """
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
    x = values if values.dtype in (torch.float32, torch.float64) else values.float()
    length = x.shape[-1]
    if length == 0:
        return x.clone()
    log_gamma = math.log(gamma)
    if log_gamma == 0.0:
        chunk = length
    else:
        # + 1e-6: gamma = 2^(-1/32) is rounded, and without it C would be 1023, padding T = 1024 to 2 chunks
        chunk = max(1, min(length, int(_CHUNK_DYNAMIC_RANGE_LOG2 * math.log(2.0) / -log_gamma + 1e-6)))
    num_chunks = -(-length // chunk)
    if num_chunks * chunk != length:
        x = torch.nn.functional.pad(x, (0, num_chunks * chunk - length))  # trailing zeros add nothing
    blocks = x.unflatten(-1, (num_chunks, chunk))  # [..., n, C]
    up, down, carry, next_decay = _scan_constants(chunk, num_chunks, log_gamma, x.dtype, x.device)
    local = (blocks * up).flip(-1).cumsum(-1).flip(-1) * down  # [..., n, C], gamma^i x_i in [2^-32, 1] x_i
    if num_chunks > 1:
        heads = local[..., 0]  # [..., n]: each chunk's own discounted sum, seen from its first token
        next_start = heads @ next_decay  # [..., n]: Y_{j+1} = sum_{k > j} gamma^(C (k - j - 1)) head_k
        local = torch.addcmul(local, next_start[..., None], carry)
    return local.flatten(-2)[..., :length]


@functools.lru_cache(maxsize=64)
def _scan_constants(chunk: int, num_chunks: int, log_gamma: float, dtype: torch.dtype, device: torch.device):
    """gamma^i, gamma^-i, gamma^(C - i) for i < C; next-chunk decay matrix [n, n] = gamma^(C (k - j - 1)),
    k > j (row k = source chunk, column j = receiving chunk)."""
    with torch.inference_mode(False), torch.no_grad():  # cached tensors must work outside inference mode too
        position = torch.arange(chunk, dtype=dtype, device=device)
        lag = torch.arange(num_chunks, dtype=dtype, device=device)
        lag = lag[:, None] - lag[None, :] - 1  # [n, n]: k - j - 1
        next_decay = torch.where(lag >= 0, torch.exp(lag.clamp_min(0) * (chunk * log_gamma)), 0.0)
        return (torch.exp(position * log_gamma), torch.exp(-position * log_gamma),
                torch.exp((chunk - position) * log_gamma), next_decay)


def linear_reverse_scan(values: Tensor, decay: Tensor) -> Tensor:
    """y_t = values_t + decay_t * y_{t+1} along the last dimension, y past the end = 0.

    values[..., T], decay broadcastable to it (per token, per row or a scalar tensor; any values, 0
    included) -> y[..., T]. The recurrence of GAE (decay = gamma * lambda) with per-response lambdas.
    A log-depth (Hillis-Steele) scan: after the pass with stride s, y_t holds the recurrence over
    [t, t + 2s) and a_t the product of the decays there; ceil(log2 T) passes of O(N T) vectorised work,
    no division by a decay (so decay 0 and underflow are exact), no Python loop over tokens.
    """
    y = values if values.dtype in (torch.float32, torch.float64) else values.float()
    a = torch.broadcast_to(decay.to(y.dtype), y.shape)
    length = y.shape[-1]
    stride = 1
    while stride < length:
        y = torch.cat([torch.addcmul(y[..., :-stride], a[..., :-stride], y[..., stride:]),
                       y[..., -stride:]], dim=-1)
        a = torch.cat([a[..., :-stride] * a[..., stride:], a[..., -stride:]], dim=-1)
        stride *= 2
    return y
