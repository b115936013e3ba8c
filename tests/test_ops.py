"""fipo_bench.ops against hand-derived cases and naive loops."""

import math

import pytest
import torch

from fipo_bench import ops


def naive_discounted_reverse_cumsum(row: list[float], gamma: float) -> list[float]:
    """y_t = sum_{k >= t} gamma^(k - t) x_k, term by term."""
    return [sum(gamma ** (k - t) * row[k] for k in range(t, len(row))) for t in range(len(row))]


def quadratic_discounted_reverse_cumsum(
    values: torch.Tensor, gamma: float, block: int = 1024
) -> torch.Tensor:
    """The dense O(T^2) form y = x @ D^T with D[t, k] = gamma^(k - t) for k >= t, row blocks at a time."""
    length = values.shape[-1]
    positions = torch.arange(length, dtype=values.dtype)
    out = torch.empty_like(values)
    for start in range(0, length, block):
        lag = positions[None, :] - positions[start : start + block, None]  # [b, T]: k - t
        decay = torch.where(lag >= 0, gamma ** lag.clamp_min(0), 0.0)
        out[..., start : start + block] = values @ decay.T
    return out


def test_masked_sum_and_mean_ignore_masked_garbage():
    values = torch.tensor([[1.0, 2.0, float("nan")], [4.0, float("inf"), 6.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 1]])
    # kept: 1 + 2 + 4 + 6 = 13 over 4 tokens; per row: (1 + 2) / 2 and (4 + 6) / 2.
    assert ops.masked_sum(values, mask).item() == 13.0
    assert ops.masked_mean(values, mask).item() == 13.0 / 4
    assert ops.masked_mean(values, mask.bool(), dim=-1).tolist() == [1.5, 5.0]
    assert ops.masked_mean(values, torch.zeros_like(mask)).item() == 0.0  # empty mask: 0, not NaN


def test_group_mean_std_non_contiguous_groups_hand_derived():
    values = torch.tensor([1.0, 0.0, 0.0, 3.0, 5.0, 2.0, 1.0])
    group_ids = torch.tensor([7, 2, 7, 2, 9, 2, 7])
    mean, std = ops.group_mean_std(values, group_ids)
    # group 7 = {1, 0, 1}: mean 2/3, unbiased var = ((1/3)^2 * 2 + (2/3)^2) / 2 = 1/3.
    # group 2 = {0, 3, 2}: mean 5/3, var = ((5/3)^2 + (4/3)^2 + (1/3)^2) / 2 = (25 + 16 + 1) / 18 = 7/3.
    # group 9 = {5}: mean 5, std 0 (a group of one).
    expected_mean = [2 / 3, 5 / 3, 2 / 3, 5 / 3, 5.0, 5 / 3, 2 / 3]
    expected_std = [
        math.sqrt(1 / 3),
        math.sqrt(7 / 3),
        math.sqrt(1 / 3),
        math.sqrt(7 / 3),
        0.0,
        math.sqrt(7 / 3),
        math.sqrt(1 / 3),
    ]
    torch.testing.assert_close(mean, torch.tensor(expected_mean))
    torch.testing.assert_close(std, torch.tensor(expected_std))


def test_group_mean_std_matches_naive_loop():
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(50, generator=generator, dtype=torch.float64)
    group_ids = torch.randint(0, 12, (50,), generator=generator) * 3 - 5  # arbitrary, shuffled labels
    mean, std = ops.group_mean_std(values, group_ids)
    for i in range(50):
        members = [values[j].item() for j in range(50) if group_ids[j] == group_ids[i]]
        group_mean = sum(members) / len(members)
        variance = sum((m - group_mean) ** 2 for m in members) / max(len(members) - 1, 1)
        assert mean[i].item() == pytest.approx(group_mean, rel=1e-12)
        assert std[i].item() == pytest.approx(math.sqrt(variance), rel=1e-12, abs=1e-15)


def test_aggregate_modes_hand_derived():
    values = torch.tensor([[1.0, 2.0, 3.0, 99.0], [4.0, 99.0, 99.0, 99.0], [99.0, 99.0, 99.0, 99.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    # kept tokens: row 0 = {1, 2, 3}, row 1 = {4}, row 2 = none (excluded from sequence means).
    # token-mean: (1 + 2 + 3 + 4) / 4 = 2.5
    # seq-mean-token-mean: (6/3 + 4/1) / 2 = 3.0
    # seq-mean-token-sum: (6 + 4) / 2 = 5.0
    # seq-mean-token-sum-norm with T = 4: (6/4 + 4/4) / 2 = 1.25; with norm 10: (0.6 + 0.4) / 2 = 0.5
    assert ops.aggregate(values, mask, "token-mean").item() == 2.5
    assert ops.aggregate(values, mask, "seq-mean-token-mean").item() == 3.0
    assert ops.aggregate(values, mask, "seq-mean-token-sum").item() == 5.0
    assert ops.aggregate(values, mask, "seq-mean-token-sum-norm").item() == 1.25
    assert ops.aggregate(values, mask, "seq-mean-token-sum-norm", num_tokens_norm=10).item() == pytest.approx(
        0.5
    )
    with pytest.raises(ValueError, match="unknown loss aggregation mode 'mean'.*token-mean"):
        ops.aggregate(values, mask, "mean")


@pytest.mark.parametrize("length", [1, 15, 16, 17, 33, 64, 100])
@pytest.mark.parametrize("half_life", [0.5, 3.0, 32.0])
def test_discounted_reverse_cumsum_matches_naive_loop(length, half_life):
    # half_life 0.5 gives chunks of 32 * 0.5 = 16 tokens, so lengths 15..100 cross 0 to 6 chunk boundaries.
    gamma = 2.0 ** (-1.0 / half_life)
    generator = torch.Generator().manual_seed(length)
    values = torch.randn(3, length, generator=generator, dtype=torch.float64)
    result = ops.discounted_reverse_cumsum(values, gamma)
    expected = torch.tensor(
        [naive_discounted_reverse_cumsum(row, gamma) for row in values.tolist()], dtype=torch.float64
    )
    torch.testing.assert_close(result, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("half_life", [0.25, 1.0, 32.0])
def test_discounted_reverse_cumsum_matches_quadratic_form_in_float64(half_life):
    # T = 3000 spans 3 chunks of 1024 at half_life 32 and 375 chunks of 8 at half_life 0.25.
    gamma = 2.0 ** (-1.0 / half_life)
    values = torch.randn(2, 3000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    result = ops.discounted_reverse_cumsum(values, gamma)
    torch.testing.assert_close(
        result, quadratic_discounted_reverse_cumsum(values, gamma), rtol=1e-6, atol=1e-12
    )


def test_discounted_reverse_cumsum_stable_at_32k_tokens_in_float32():
    # FIPO's inputs: log-ratios clamped to [-20, 20]; include runs of extreme values.
    length, gamma = 32768, 2.0 ** (-1.0 / 32.0)
    generator = torch.Generator().manual_seed(2)
    values64 = torch.randn(2, length, generator=generator, dtype=torch.float64) * 0.3
    values64[:, ::97] = 20.0
    values64[:, 5::131] = -20.0
    result = ops.discounted_reverse_cumsum(values64.float(), gamma)
    reference = ops.discounted_reverse_cumsum(values64, gamma)
    assert result.dtype == torch.float32 and torch.isfinite(result).all()
    # Error relative to the scan of |x| (each output's natural scale); float32 cumsums of 1024-token chunks.
    scale = ops.discounted_reverse_cumsum(values64.abs(), gamma)
    assert ((result.double() - reference).abs() / scale).max().item() < 1e-5
    # The one-shot rescaling gamma^-t * cumsum(gamma^t x) that the chunking avoids overflows here.
    positions = torch.arange(length, dtype=torch.float32)
    one_shot = (values64.float() * gamma**positions).flip(-1).cumsum(-1).flip(-1) * gamma ** (-positions)
    assert not torch.isfinite(one_shot).all()


def test_discounted_reverse_cumsum_edge_gammas_and_dtypes():
    values = torch.randn(2, 3, 40, generator=torch.Generator().manual_seed(3))
    # gamma = 1: a plain reverse cumsum; a vanishing gamma: the values themselves.
    torch.testing.assert_close(
        ops.discounted_reverse_cumsum(values, 1.0), values.flip(-1).cumsum(-1).flip(-1)
    )
    torch.testing.assert_close(ops.discounted_reverse_cumsum(values, 1e-30), values)
    # bf16 is computed (and returned) in float32, from the same bf16 values.
    low = values.bfloat16()
    result = ops.discounted_reverse_cumsum(low, 0.9)
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, ops.discounted_reverse_cumsum(low.float(), 0.9))
    assert ops.discounted_reverse_cumsum(torch.zeros(2, 0), 0.5).shape == (2, 0)
    with pytest.raises(ValueError, match="gamma"):
        ops.discounted_reverse_cumsum(values, 1.5)


def test_masked_fractions_hand_derived():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    flags = {
        "a": torch.tensor([[True, False, True], [True, True, True]]),
        "b": torch.zeros(2, 3, dtype=torch.bool),
    }
    # 3 masked tokens; "a" is set on 2 of them (the third True of row 0 and row 1's tail are padding).
    fractions = ops.masked_fractions(flags, mask)
    assert fractions["a"].item() == pytest.approx(2 / 3) and fractions["b"].item() == 0.0
    assert ops.masked_fractions(flags, torch.zeros_like(mask))["a"].item() == 0.0


def test_scan_constants_cached_in_inference_mode_still_work_with_autograd():
    with torch.inference_mode():
        ops.discounted_reverse_cumsum(torch.randn(2, 777), 0.99)  # fills the cache for this shape
    values = torch.randn(2, 777, requires_grad=True)
    ops.discounted_reverse_cumsum(values, 0.99).sum().backward()
    # d(sum_t y_t) / d x_k = sum_{t <= k} gamma^(k - t) = (1 - gamma^(k + 1)) / (1 - gamma)
    k = torch.arange(777, dtype=torch.float32)
    torch.testing.assert_close(
        values.grad, ((1 - 0.99 ** (k + 1)) / 0.01).expand(2, -1), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64, torch.float32])
def test_float_mask_equals_a_plain_cast(dtype):
    mask = torch.rand(7, 33, generator=torch.Generator().manual_seed(3)) < 0.6  # non-contiguous below
    mask = mask.to(dtype)[:, ::2]
    assert torch.equal(ops.float_mask(mask), mask.bool().float())
    assert ops.float_mask(mask).dtype == torch.float32


@pytest.mark.parametrize("unbiased", [False, True])
def test_masked_var_is_the_variance_of_the_selected_entries(unbiased):
    g = torch.Generator().manual_seed(0)
    values = torch.randn(4, 7, generator=g, dtype=torch.float64) * 1e6  # padding values must not leak in
    mask = torch.rand(4, 7, generator=g) < 0.6
    expected = values[mask].var(correction=1 if unbiased else 0)
    torch.testing.assert_close(ops.masked_var(values, mask, unbiased), expected, rtol=1e-12, atol=0)
    assert ops.masked_var(values, torch.zeros_like(mask), unbiased).item() == 0.0
    one = torch.zeros_like(mask)
    one[0, 0] = True
    assert ops.masked_var(values, one, unbiased).item() == 0.0
