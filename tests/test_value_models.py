"""The value-model baselines (algorithms/ppo.py, vc_ppo.py, vapo.py) against naive references.

The references below are written token by token from the definitions (GAE's recursion, verl's
masked_whiten arithmetic, the clipped value loss); the vectorised code must agree in float64. (Agreement
with verl's own `compute_gae_advantage_return` / `compute_value_loss` was measured outside the suite,
see algorithms/ppo.py.)
"""

from __future__ import annotations

import math

import pytest
import torch

from fipo_bench import ops
from fipo_bench.algorithms import get_algorithm, list_algorithms
from fipo_bench.algorithms.ppo import CRITIC_METRICS, critic_metrics, explained_variance
from fipo_bench.algorithms.vapo import length_adaptive_lambdas

CRITIC_ALGORITHMS = ("ppo", "vc-ppo", "vapo")
F64 = torch.float64


# -- naive references ----------------------------------------------------------------------------------------


def naive_scan(values, decay):
    """y_t = x_t + d_t y_{t+1}, one token at a time."""
    out = torch.zeros_like(values)
    for row in range(values.shape[0]):
        carry = 0.0
        for t in reversed(range(values.shape[1])):
            carry = float(values[row, t]) + float(decay[row, t]) * carry
            out[row, t] = carry
    return out


def naive_gae(rewards, values, mask, gamma, lams):
    """GAE of each row over its response tokens only (the masked positions, in order), reward on the last."""
    advantages = torch.zeros_like(values)
    for row in range(values.shape[0]):
        positions = [t for t in range(values.shape[1]) if mask[row, t]]
        lam = float(lams[row]) if isinstance(lams, torch.Tensor) else lams
        running, next_value = 0.0, 0.0
        for k in reversed(range(len(positions))):
            t = positions[k]
            reward = float(rewards[row]) if k == len(positions) - 1 else 0.0
            delta = reward + gamma * next_value - float(values[row, t])
            running = delta + gamma * lam * running
            advantages[row, t] = running
            next_value = float(values[row, t])
    return advantages


def naive_verl_whiten(values, mask):
    """verl's masked_whiten in plain floats: means over (count + 1e-8), Bessel factor, rsqrt(var + 1e-8)."""
    items = [
        float(values[i, t]) for i in range(values.shape[0]) for t in range(values.shape[1]) if mask[i, t]
    ]
    n = len(items)
    mean = sum(items) / (n + 1e-8)
    var = sum((x - mean) ** 2 for x in items) / (n + 1e-8) * (n / (n - 1))
    scale = 1.0 / math.sqrt(var + 1e-8)
    return torch.where(mask.bool(), (values - mean) * scale, torch.zeros((), dtype=values.dtype))


def naive_value_loss(values, old_values, returns, mask, clip, agg):
    rows = []
    for i in range(values.shape[0]):
        terms = []
        for t in range(values.shape[1]):
            if not mask[i, t]:
                continue
            v, old, ret = float(values[i, t]), float(old_values[i, t]), float(returns[i, t])
            clipped = min(max(v, old - clip), old + clip)
            terms.append(max((v - ret) ** 2, (clipped - ret) ** 2))
        rows.append(terms)
    if agg == "token-mean":
        flat = [x for terms in rows for x in terms]
        return 0.5 * sum(flat) / len(flat)
    means = [sum(terms) / (len(terms) + 1e-8) for terms in rows if terms]
    return 0.5 * sum(means) / len(means)


def ragged_case(lengths, width, seed, garbage=float("nan")):
    """rewards[N], values[N, T] (garbage on padding), mask[N, T] bool with the given response lengths."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    values = torch.randn(len(lengths), width, generator=g, dtype=F64)
    values = torch.where(mask, values, torch.full((), garbage, dtype=F64))
    rewards = torch.randint(0, 2, (len(lengths),), generator=g).to(F64) * 1.5 - 0.5
    return rewards, values, mask


CASES = [([5, 1, 12, 8], 12, 0), ([1, 3], 4, 1), ([40, 3, 17, 29, 1, 40], 41, 2), ([64, 64, 2], 64, 3)]


# -- the scan ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [1, 2, 3, 7, 64, 100])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_linear_reverse_scan_matches_the_loop(width, dtype):
    g = torch.Generator().manual_seed(width)
    values = torch.randn(3, width, generator=g, dtype=F64)
    decay = torch.rand(3, width, generator=g, dtype=F64)
    decay[0, ::3] = 0.0  # a zero decay cuts the recurrence
    decay[1] = 1.0  # plain reverse cumsum
    got = ops.linear_reverse_scan(values.to(dtype), decay.to(dtype))
    assert got.dtype == dtype
    tol = 1e-12 if dtype == F64 else 1e-4
    torch.testing.assert_close(got.double(), naive_scan(values, decay), rtol=tol, atol=tol)


def test_linear_reverse_scan_takes_one_decay_per_row():
    values = torch.randn(4, 9, dtype=F64)
    per_row = torch.tensor([0.0, 0.5, 0.9, 1.0], dtype=F64)
    got = ops.linear_reverse_scan(values, per_row[:, None])
    torch.testing.assert_close(got, naive_scan(values, per_row[:, None].expand(4, 9)), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[0], values[0])  # decay 0: y = x
    torch.testing.assert_close(got[3], values[3].flip(-1).cumsum(-1).flip(-1), rtol=1e-12, atol=1e-12)


# -- GAE, whitening, returns ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("lengths", "width", "seed"), CASES)
@pytest.mark.parametrize(
    ("gamma", "lam_actor", "lam_critic"),
    [(1.0, 1.0, 1.0), (1.0, 0.95, 1.0), (0.99, 0.9, 0.8), (0.9, 0.0, 0.5)],
)
def test_advantages_and_returns_match_the_naive_gae_and_verls_whitening(
    lengths, width, seed, gamma, lam_actor, lam_critic
):
    rewards, values, mask = ragged_case(lengths, width, seed)
    alg = get_algorithm(
        "ppo",
        gamma=gamma,
        lam_actor=lam_actor,
        lam_critic=lam_critic,
        value_clip=0.2,
        value_loss_agg="token-mean",
    )
    advantages, returns = alg.advantages_and_returns(rewards, values, mask)
    assert advantages.dtype == returns.dtype == F64
    clean = torch.where(mask, values, torch.zeros((), dtype=F64))
    expected_returns = naive_gae(rewards, clean, mask, gamma, lam_critic) + clean
    torch.testing.assert_close(returns, torch.where(mask, expected_returns, 0.0), rtol=1e-12, atol=1e-12)
    expected = naive_verl_whiten(naive_gae(rewards, clean, mask, gamma, lam_actor), mask)
    torch.testing.assert_close(advantages, expected, rtol=1e-12, atol=1e-12)
    assert torch.isfinite(advantages).all() and torch.isfinite(returns).all()  # NaN padding never read
    # What the backends call: the same tensors, and the metrics of the raw (unwhitened) advantages
    rollout_advantages, rollout_returns, metrics = alg.critic_rollout(rewards, values, mask)
    assert torch.equal(rollout_advantages, advantages) and torch.equal(rollout_returns, returns)
    raw = naive_gae(rewards, clean, mask, gamma, lam_actor)
    assert metrics == pytest.approx(critic_metrics(values, returns, raw, mask), rel=1e-12)


def test_gamma_lambda_one_gives_reward_minus_value_and_monte_carlo_returns():
    # ORZ's setting, derived by hand: A_t = r - V_t (the deltas telescope), R_t = r on every token.
    rewards, values, mask = ragged_case([6, 2, 4], 6, seed=5)
    alg = get_algorithm("ppo")
    raw, returns = alg.gae(rewards, values, mask)
    clean = torch.where(mask, values, torch.zeros((), dtype=F64))
    torch.testing.assert_close(raw, torch.where(mask, rewards[:, None] - clean, 0.0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        returns, torch.where(mask, rewards[:, None].expand_as(clean), 0.0), rtol=1e-12, atol=1e-12
    )


def test_lambda_zero_is_the_one_step_td_error():
    rewards = torch.tensor([2.0], dtype=F64)
    values = torch.tensor([[0.5, 1.0, -1.0]], dtype=F64)
    mask = torch.ones(1, 3, dtype=torch.bool)
    raw, _ = get_algorithm("ppo", gamma=0.5, lam_actor=0.0).gae(rewards, values, mask)
    # delta_0 = 0 + 0.5 * 1.0 - 0.5, delta_1 = 0 + 0.5 * (-1) - 1, delta_2 = 2 - (-1)
    torch.testing.assert_close(raw, torch.tensor([[0.0, -1.5, 3.0]], dtype=F64))


def test_tokens_outside_the_mask_are_skipped_like_verl():
    # A hole inside a response (an observation token): its value is never read, the recursion passes it.
    rewards = torch.tensor([1.0], dtype=F64)
    values = torch.tensor([[0.2, 99.0, 0.7, float("inf")]], dtype=F64)
    mask = torch.tensor([[True, False, True, False]])
    raw, returns = get_algorithm("ppo", gamma=0.9, lam_actor=0.5, lam_critic=0.5).gae(rewards, values, mask)
    delta_2 = 1.0 - 0.7
    delta_0 = 0.9 * 0.7 - 0.2
    expected = torch.tensor([[delta_0 + 0.45 * delta_2, 0.0, delta_2, 0.0]], dtype=F64)
    torch.testing.assert_close(raw, expected, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(returns, torch.tensor([[expected[0, 0] + 0.2, 0.0, 1.0, 0.0]], dtype=F64))


def test_padding_width_does_not_change_anything():
    rewards, values, mask = ragged_case([5, 3], 5, seed=7)
    wide_values = torch.cat([values, torch.full((2, 4), 1e30, dtype=F64)], dim=1)
    wide_mask = torch.cat([mask, torch.zeros(2, 4, dtype=torch.bool)], dim=1)
    for name in CRITIC_ALGORITHMS:
        alg = get_algorithm(name)
        narrow = alg.advantages_and_returns(rewards, values, mask)
        wide = alg.advantages_and_returns(rewards, wide_values, wide_mask)
        for a, b in zip(narrow, wide, strict=True):
            torch.testing.assert_close(b[:, :5], a, rtol=0, atol=1e-15)
            assert (b[:, 5:] == 0).all()


def test_single_response_token_gives_zero_advantage_not_an_error():
    # verl's masked_whiten raises on one token (Bessel correction by 0); here the variance is 0.
    advantages, returns = get_algorithm("ppo").advantages_and_returns(
        torch.tensor([1.0], dtype=F64), torch.tensor([[0.3]], dtype=F64), torch.ones(1, 1, dtype=torch.bool)
    )
    assert advantages.item() == 0.0 and returns.item() == 1.0


def test_float32_inputs_compute_in_float32():
    rewards, values, mask = ragged_case([4, 2], 4, seed=8, garbage=0.0)
    advantages, returns = get_algorithm("vapo").advantages_and_returns(rewards.float(), values.float(), mask)
    assert advantages.dtype == returns.dtype == torch.float32
    expected, _ = get_algorithm("vapo").advantages_and_returns(rewards, values, mask)
    torch.testing.assert_close(advantages.double(), expected, rtol=1e-5, atol=1e-5)


def test_masked_whiten_count_eps_is_verls_arithmetic():
    values = torch.randn(3, 5, dtype=F64)
    mask = torch.rand(3, 5) > 0.3
    mask[0, :2] = True
    torch.testing.assert_close(
        ops.masked_whiten(values, mask, unbiased=True, count_eps=1e-8),
        naive_verl_whiten(values, mask),
        rtol=1e-14,
        atol=1e-14,
    )


# -- decoupled and length-adaptive lambdas -------------------------------------------------------------------


def test_vc_ppo_decouples_the_lambdas():
    rewards, values, mask = ragged_case([9, 4, 7], 9, seed=11)
    alg = get_algorithm("vc-ppo")
    assert (alg.lam_actor, alg.lam_critic, alg.value_pretrain_steps) == (0.95, 1.0, 50)
    advantages, returns = alg.advantages_and_returns(rewards, values, mask)
    actor_only = get_algorithm("ppo", lam_actor=0.95, lam_critic=0.95)
    critic_only = get_algorithm("ppo", lam_actor=1.0, lam_critic=1.0)
    torch.testing.assert_close(advantages, actor_only.advantages_and_returns(rewards, values, mask)[0])
    torch.testing.assert_close(returns, critic_only.advantages_and_returns(rewards, values, mask)[1])


def test_length_adaptive_lambdas_by_hand():
    lengths = torch.tensor([1, 10, 20, 40, 100, 1000])
    expected = torch.tensor([0.0, 0.0, 0.0, 0.5, 0.8, 0.98], dtype=F64)  # l < 20 -> clamped to 0
    torch.testing.assert_close(length_adaptive_lambdas(lengths, 0.05), expected, rtol=1e-14, atol=1e-14)


def test_vapo_gives_each_response_its_own_lambda():
    rewards, values, mask = ragged_case([60, 25, 8, 40], 60, seed=13)
    alg = get_algorithm("vapo")
    assert (alg.gamma, alg.lam_critic, alg.lam_alpha) == (1.0, 1.0, 0.05)
    raw, returns = alg.gae(rewards, values, mask)
    clean = torch.where(mask, values, torch.zeros((), dtype=F64))
    lams = [1 - 1 / (0.05 * 60), 1 - 1 / (0.05 * 25), 0.0, 1 - 1 / (0.05 * 40)]
    torch.testing.assert_close(
        raw, naive_gae(rewards, clean, mask, 1.0, torch.tensor(lams, dtype=F64)), rtol=1e-12, atol=1e-12
    )
    torch.testing.assert_close(
        returns, torch.where(mask, rewards[:, None].expand_as(clean), 0.0), rtol=1e-12, atol=1e-12
    )
    no_adaptive = get_algorithm("vapo", lam_alpha=None, lam_actor=0.95)
    torch.testing.assert_close(
        no_adaptive.advantages_and_returns(rewards, values, mask)[0],
        get_algorithm("vc-ppo").advantages_and_returns(rewards, values, mask)[0],
    )


# -- value loss ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lengths", "width", "seed"), CASES)
@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean"])
@pytest.mark.parametrize("clip", [0.2, 0.5])
def test_value_loss_matches_the_naive_clipped_loss(lengths, width, seed, agg, clip):
    rewards, old_values, mask = ragged_case(lengths, width, seed, garbage=float("inf"))
    g = torch.Generator().manual_seed(seed + 100)
    values = old_values + 0.4 * torch.randn(old_values.shape, generator=g, dtype=F64)
    _, returns = get_algorithm("ppo").advantages_and_returns(rewards, old_values, mask)
    alg = get_algorithm("ppo", gamma=1.0, lam_actor=1.0, lam_critic=1.0, value_clip=clip, value_loss_agg=agg)
    loss, metrics = alg.value_loss(values, old_values, returns, mask)
    assert loss.dtype == F64
    expected = naive_value_loss(values, old_values, returns, mask, clip, agg)
    assert loss.item() == pytest.approx(expected, rel=1e-13, abs=1e-15)
    assert metrics["value_loss"] == pytest.approx(expected, rel=1e-6)
    moved = (values - old_values).abs() > clip
    clipped_larger = (
        mask
        & moved
        & (
            (torch.clamp(values, old_values - clip, old_values + clip) - returns) ** 2
            > (values - returns) ** 2
        )
    )
    assert metrics["value_clip_frac"] == pytest.approx(
        clipped_larger.sum().item() / mask.sum().item(), rel=1e-6
    )


def test_value_loss_gradient_by_hand():
    # token 0: inside the clip range -> d/dV 0.5 (V - R)^2 = V - R; token 1: moved past the clip range away
    # from the return -> the clipped (constant) term is larger, no gradient; token 2: padding.
    old = torch.tensor([[0.0, 0.0, 5.0]], dtype=F64)
    values = torch.tensor([[0.1, -0.5, 7.0]], dtype=F64, requires_grad=True)
    returns = torch.tensor([[1.0, 1.0, 0.0]], dtype=F64)
    mask = torch.tensor([[True, True, False]])
    loss, metrics = get_algorithm("ppo", value_clip=0.2).value_loss(values, old, returns, mask)
    # token 1: unclipped (-1.5)^2 = 2.25, clipped (-0.2 - 1)^2 = 1.44 -> the unclipped term counts
    assert loss.item() == pytest.approx(0.5 * (0.81 + 2.25) / 2)
    loss.backward()
    torch.testing.assert_close(values.grad, torch.tensor([[-0.9 / 2, -1.5 / 2, 0.0]], dtype=F64))
    assert metrics["value_clip_frac"] == 0.0
    values2 = torch.tensor(
        [[0.1, 0.5]], dtype=F64, requires_grad=True
    )  # token 1 clipped to 0.2: larger error?
    loss2, metrics2 = get_algorithm("ppo", value_clip=0.2).value_loss(
        values2, torch.zeros(1, 2, dtype=F64), torch.tensor([[1.0, 1.0]], dtype=F64), torch.ones(1, 2)
    )
    loss2.backward()
    # token 1: unclipped 0.25, clipped (0.2 - 1)^2 = 0.64 -> the clipped term, constant: zero gradient
    assert values2.grad[0, 1].item() == 0.0 and metrics2["value_clip_frac"] == 0.5


def test_value_clip_none_is_the_plain_squared_error():
    values, old, returns = torch.randn(3, 2, 4, dtype=F64).unbind(0)
    mask = torch.ones(2, 4, dtype=torch.bool)
    loss, metrics = get_algorithm("ppo", value_clip=None).value_loss(values, old, returns, mask)
    assert loss.item() == pytest.approx(0.5 * ((values - returns) ** 2).mean().item(), rel=1e-14)
    assert metrics["value_clip_frac"] == 0.0


# -- VAPO's positive-example LM loss -------------------------------------------------------------------------


def test_vapo_adds_the_nll_of_correct_responses():
    alg = get_algorithm("vapo")
    assert alg.needs_correctness and not get_algorithm("ppo").needs_correctness
    logp = torch.tensor([[-1.0, -2.0, -9.0], [-0.5, -0.5, -0.5]], dtype=F64, requires_grad=True)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    advantages = torch.zeros(2, 3, dtype=F64)  # the surrogate is 0, only the LM term remains
    correct = torch.tensor([1.0, 0.0])
    loss, metrics = alg.policy_loss(logp, logp.detach(), advantages, mask, correct=correct)
    assert metrics["lm_loss"] == pytest.approx(1.5)  # (1 + 2) / 2 tokens of the correct response
    assert loss.item() == pytest.approx(0.1 * 1.5)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.05, -0.05, 0.0], [0.0, 0.0, 0.0]], dtype=F64))
    with pytest.raises(ValueError, match="correct"):
        alg.policy_loss(logp, logp.detach(), advantages, mask)
    off, off_metrics = get_algorithm("vapo", lm_loss_coef=0.0).policy_loss(
        logp, logp.detach(), advantages, mask
    )
    assert off.item() == 0.0 and "lm_loss" not in off_metrics


def test_vapo_clips_higher_with_a_token_mean():
    alg = get_algorithm("vapo")
    assert (alg.clip_low, alg.clip_high, alg.loss_agg, alg.kl_coef) == (0.2, 0.28, "token-mean", 0.0)


# -- the contract --------------------------------------------------------------------------------------------


def test_needs_critic_exactly_for_the_value_model_algorithms():
    for name in list_algorithms():
        assert get_algorithm(name).needs_critic == (name in CRITIC_ALGORITHMS), name


@pytest.mark.parametrize("name", CRITIC_ALGORITHMS)
def test_pinned_keywords_and_validation(name):
    alg = get_algorithm(
        name, gamma=1, lam_actor=0.9, lam_critic=1, value_clip=0.5, value_loss_agg="seq-mean-token-mean"
    )
    assert (alg.gamma, alg.lam_actor, alg.lam_critic, alg.value_clip) == (1.0, 0.9, 1.0, 0.5)
    for bad in (
        {"lam_actor": 1.5},
        {"lam_critic": -0.1},
        {"gamma": 2.0},
        {"value_clip": 0.0},
        {"value_loss_agg": "sum"},
        {"critic_lr_scale": 0.0},
        {"value_pretrain_steps": -1},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            get_algorithm(name, **bad)
    with pytest.raises(TypeError, match="advantages_and_returns"):
        alg.advantages(torch.zeros(2), torch.zeros(2))


def test_recipe_defaults():
    ppo, vc, vapo = (get_algorithm(n) for n in CRITIC_ALGORITHMS)
    assert (ppo.gamma, ppo.lam_actor, ppo.lam_critic, ppo.kl_coef, ppo.value_clip) == (
        1.0,
        1.0,
        1.0,
        0.0,
        0.2,
    )
    assert (ppo.critic_lr_scale, vc.critic_lr_scale, vapo.critic_lr_scale) == (5.0, 2.0, 2.0)
    assert (ppo.value_pretrain_steps, vapo.value_pretrain_steps) == (0, 50)
    with pytest.raises(ValueError, match="lam_alpha"):
        get_algorithm("vapo", lam_alpha=0.0)


# -- metrics -------------------------------------------------------------------------------------------------


def test_critic_metrics_by_hand():
    mask = torch.tensor([[True, True, False], [True, False, False]])
    returns = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]], dtype=F64)
    raw = torch.tensor([[1.0, 2.0, 50.0], [3.0, 0.0, 0.0]], dtype=F64)
    perfect = critic_metrics(returns, returns, raw, mask)
    assert set(perfect) <= set(CRITIC_METRICS) and perfect["explained_variance"] == pytest.approx(1.0)
    assert perfect["advantage_raw_mean"] == pytest.approx(2.0) and perfect[
        "advantage_raw_std"
    ] == pytest.approx(1.0)
    flat_returns = torch.ones_like(returns)  # nothing to explain: 0, not NaN (a run stops on NaN metrics)
    assert explained_variance(raw, flat_returns, mask).item() == 0.0
    rounded = flat_returns + 1e-7 * torch.randn_like(flat_returns)  # constant up to float32 rounding
    assert explained_variance(raw.float(), rounded.float(), mask).item() == 0.0
    constant = torch.full_like(returns, 2.0 / 3.0)
    assert explained_variance(constant, returns, mask).item() == pytest.approx(0.0, abs=1e-12)
    metrics = critic_metrics(constant, returns, raw, mask)
    assert metrics["value_mean"] == pytest.approx(2 / 3) and metrics["return_mean"] == pytest.approx(2 / 3)
    _, loss_metrics = get_algorithm("ppo").value_loss(constant, constant, returns, mask)
    assert set(loss_metrics) | set(metrics) == set(CRITIC_METRICS)


def test_local_backend_plans_critic_algorithms():
    # The local trainer trains their critic (tests/test_critic.py): the plan keeps them, no refusal.
    from fipo_bench.backends.local.matrix import plan_matrix
    from fipo_bench.config import RunConfig

    plan = plan_matrix(RunConfig(run_name="t", algos=("grpo", "vapo")))
    assert plan.algorithms["vapo"].needs_critic and not plan.algorithms["grpo"].needs_critic
