"""GRPO, DAPO and FIPO against hand-derived cases, naive per-token loops, and invariances."""

import math
import subprocess
import sys
import textwrap

import pytest
import torch

from fipo_bench import ops
from fipo_bench.algorithms import get_algorithm
from fipo_bench.algorithms.fipo import influence_weights
from fipo_bench.algorithms.grpo import clipped_surrogate

# ---------------------------------------------------------------------------------------------------
# Naive references: one token at a time, plain Python floats, written from DESIGN.md's equations.


def naive_token_losses(logp, old_logp, advantages, mask, alg, ref_logp=None):
    """Per-sequence lists of (token loss, kept) for any of the three algorithms, plus FIPO's weights."""
    fipo = hasattr(alg, "half_life")
    c = alg.dual_clip
    rows, weights_out = [], []
    for i in range(len(logp)):
        length = len(logp[i])
        adv = [advantages[i][t] if isinstance(advantages[i], list) else advantages[i] for t in range(length)]
        d = [min(max(logp[i][t] - old_logp[i][t], -20.0), 20.0) if mask[i][t] else 0.0 for t in range(length)]
        r = [math.exp(x) for x in d]
        weights = [1.0] * length
        if fipo:
            gamma = 2.0 ** (-1.0 / alg.half_life)
            future_kl_mask = []
            for k in range(length):
                within_cap = c is None or r[k] <= c  # d <= ln c
                if alg.mask_negative_only:
                    within_cap = within_cap or adv[k] >= 0
                future_kl_mask.append(bool(mask[i][k]) and within_cap)
            for t in range(length):
                future = sum(gamma ** (k - t) * d[k] for k in range(t, length) if future_kl_mask[k])
                w = min(max(math.exp(future), alg.weight_low), alg.weight_high)
                if adv[t] < 0 and r[t] > alg.safety_threshold:
                    w = 1.0 if alg.safety_resets_weight else min(max(w, 0.8), 1.0)
                weights[t] = w
        losses, dual_count = [], 0
        for t in range(length):
            a = adv[t] * weights[t]
            clipped = min(max(r[t], 1 - alg.clip_low), 1 + alg.clip_high)
            loss = max(-a * r[t], -a * clipped)
            if c is not None and a < 0 and loss > -a * c:
                loss = -a * c
                dual_count += bool(mask[i][t])
            if ref_logp is not None and mask[i][t]:
                x = min(max(ref_logp[i][t] - logp[i][t], -20.0), 20.0)
                loss += alg.kl_coef * (math.exp(x) - x - 1)
            losses.append(loss)
        keep = not (
            fipo and alg.max_dual_clipped_tokens is not None and dual_count > alg.max_dual_clipped_tokens
        )
        rows.append([(losses[t], bool(mask[i][t]) and keep) for t in range(length)])
        weights_out.append(weights)
    return rows, weights_out


def naive_loss(rows, loss_agg):
    kept = [[loss for loss, keep in row if keep] for row in rows]
    if loss_agg == "token-mean":
        flat = [loss for row in kept for loss in row]
        return sum(flat) / max(len(flat), 1)
    per_sequence = [sum(row) / len(row) for row in kept if row]
    assert loss_agg == "seq-mean-token-mean"
    return sum(per_sequence) / max(len(per_sequence), 1)


def naive_surrogate_metrics(logp, old_logp, advantages, mask, alg):
    """ppo_kl and the clip fractions over the real tokens, one token at a time."""
    tokens = []
    for i in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            if mask[i, t]:
                d = min(max(logp[i, t].item() - old_logp[i, t].item(), -20.0), 20.0)
                a = (advantages[i, t] if advantages.dim() == 2 else advantages[i]).item()
                tokens.append((d, math.exp(d), a))
    count = max(len(tokens), 1)
    return {
        "ppo_kl": sum(-d for d, _, _ in tokens) / count,
        "clip_frac_high": sum(a > 0 and r > 1 + alg.clip_high for _, r, a in tokens) / count,
        "clip_frac_low": sum(a < 0 and r < 1 - alg.clip_low for _, r, a in tokens) / count,
    }


def random_batch(seed, n, t, spike_prob=0.15, token_advantages=False):
    """Random inputs with trailing padding and occasional extreme ratios (to hit every rule)."""
    g = torch.Generator().manual_seed(seed)
    old_logp = -torch.rand(n, t, generator=g, dtype=torch.float64) * 3
    shift = torch.randn(n, t, generator=g, dtype=torch.float64) * 0.3
    spikes = torch.rand(n, t, generator=g) < spike_prob
    spike_values = torch.tensor([math.log(20.0), math.log(4.0), math.log(0.05), 25.0], dtype=torch.float64)
    shift = torch.where(spikes, spike_values[torch.randint(0, 4, (n, t), generator=g)], shift)
    logp = old_logp + shift
    lengths = torch.randint(1, t + 1, (n,), generator=g)
    mask = torch.arange(t)[None, :] < lengths[:, None]
    logp = torch.where(mask, logp, torch.tensor(float("nan"), dtype=torch.float64))  # padding is garbage
    shape = (n, t) if token_advantages else (n,)
    advantages = torch.randn(shape, generator=g, dtype=torch.float64)
    advantages = torch.where(torch.rand(shape, generator=g) < 0.1, 0.0, advantages)  # A = 0 is a boundary
    ref_logp = old_logp + torch.randn(n, t, generator=g, dtype=torch.float64) * 0.2
    return logp, old_logp, advantages, mask, ref_logp


ALGORITHM_SETTINGS = [
    ("grpo", {}),
    ("grpo", {"clip_high": 0.28, "dual_clip": 3.0}),
    ("dapo", {}),
    ("fipo", {}),
    ("fipo-7b", {}),
    ("fipo", {"half_life": 2.0, "weight_low": 0.7, "safety_threshold": 3.0}),
    ("fipo-7b", {"mask_negative_only": True, "safety_resets_weight": True, "half_life": 4.0}),
    ("fipo", {"loss_agg": "seq-mean-token-mean", "dual_clip": None, "max_dual_clipped_tokens": None}),
]


@pytest.mark.parametrize(("name", "overrides"), ALGORITHM_SETTINGS)
def test_losses_match_naive_per_token_loops(name, overrides):
    alg = get_algorithm(name, **overrides)
    rules_hit = {"dual": 0, "drop": 0, "safety": 0, "masked": 0, "weight_clip": 0}
    for seed, (n, t, token_advantages) in enumerate(
        [(3, 7, False), (4, 40, False), (5, 23, True), (2, 64, True)]
    ):
        logp, old_logp, advantages, mask, ref_logp = random_batch(
            seed, n, t, token_advantages=token_advantages
        )
        ref = ref_logp if alg.needs_reference else None
        loss, metrics = alg.policy_loss(logp, old_logp, advantages, mask, ref)
        rows, weights = naive_token_losses(
            logp.tolist(),
            old_logp.tolist(),
            advantages.tolist(),
            mask.tolist(),
            alg,
            None if ref is None else ref.tolist(),
        )
        # float64 inputs are computed in float64, so the naive float64 loop agrees to rounding.
        assert loss.dtype == torch.float64
        assert loss.item() == pytest.approx(naive_loss(rows, alg.loss_agg), rel=1e-11, abs=1e-12)
        token_loss, loss_mask, _ = alg.token_loss(logp, old_logp, advantages, mask, ref)
        expected_mask = torch.tensor([[keep for _, keep in row] for row in rows])
        assert torch.equal(loss_mask.bool(), expected_mask)
        expected_tokens = torch.tensor(
            [[value if keep else 0.0 for value, keep in row] for row in rows], dtype=torch.float64
        )
        torch.testing.assert_close(token_loss, expected_tokens, rtol=1e-11, atol=1e-12)
        if hasattr(alg, "half_life"):
            log_ratio = torch.where(mask, (logp - old_logp).clamp(-20, 20), 0.0).float()
            full_advantages = (
                advantages.float() if token_advantages else advantages.float()[:, None].expand(n, t)
            )
            computed = influence_weights(
                log_ratio,
                full_advantages,
                mask,
                half_life=alg.half_life,
                ratio_cap=alg.dual_clip,
                weight_low=alg.weight_low,
                weight_high=alg.weight_high,
                safety_threshold=alg.safety_threshold,
                mask_negative_only=alg.mask_negative_only,
                safety_resets_weight=alg.safety_resets_weight,
            )
            expected_weights = torch.tensor(weights, dtype=torch.float32)
            torch.testing.assert_close(
                torch.where(mask, computed.influence_weight, 1.0), expected_weights, rtol=1e-5, atol=1e-6
            )
            real_weights = expected_weights[mask]
            assert metrics["weight_min"] == pytest.approx(real_weights.min().item(), rel=1e-5)
            assert metrics["weight_max"] == pytest.approx(real_weights.max().item(), rel=1e-5)
            assert metrics["weight_mean"] == pytest.approx(real_weights.mean().item(), rel=1e-5)
            rules_hit["safety"] += metrics["safety_frac"] > 0
            rules_hit["masked"] += metrics["future_kl_masked_frac"] > 0
            rules_hit["drop"] += metrics["dropped_seq_frac"] > 0
            rules_hit["weight_clip"] += metrics["weight_clip_frac_high"] > 0
        rules_hit["dual"] += metrics["dual_clip_frac"] > 0
        for key, value in naive_surrogate_metrics(logp, old_logp, advantages, mask, alg).items():
            assert metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    # The random batches must actually exercise the rules the settings switch on.
    if alg.dual_clip is not None:
        assert rules_hit["dual"] > 0
    if hasattr(alg, "half_life"):
        assert rules_hit["safety"] > 0 and rules_hit["weight_clip"] > 0
        if alg.dual_clip is not None:
            assert rules_hit["masked"] > 0 and rules_hit["drop"] > 0


# ---------------------------------------------------------------------------------------------------
# Hand-derived cases.


def test_grpo_advantages_hand_derived():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 5.0, 1.0, 1.0, 0.0])
    group_ids = torch.tensor([2, 9, 2, 9, 4, 6, 6, 6])
    advantages = get_algorithm("grpo").advantages(rewards, group_ids)
    # groups 2 and 9 = {1, 0}: mean 0.5, unbiased std sqrt(0.5) -> +-0.5 / (sqrt(0.5) + 1e-6).
    # group 4 = {5}: a group of one -> 0.  group 6 = {1, 1, 0}: mean 2/3, std sqrt(1/3) ->
    # (1/3) / (sqrt(1/3) + 1e-6) twice and (-2/3) / (sqrt(1/3) + 1e-6).
    half = 0.5 / (math.sqrt(0.5) + 1e-6)
    third = 1 / 3 / (math.sqrt(1 / 3) + 1e-6)
    expected = torch.tensor([half, -half, -half, half, 0.0, third, third, -2 * third])
    torch.testing.assert_close(advantages, expected)
    for name in ("dapo", "fipo"):  # same advantage
        torch.testing.assert_close(get_algorithm(name).advantages(rewards, group_ids), expected)


def test_grpo_loss_hand_derived():
    ln = math.log
    # Sequence 0: A = 1, log-ratios d = [ln 1.5, 0], ref - logp = [0, ln 2].
    #   token 0: r = 1.5 > 1.2 -> max(-1.5, -1.2) = -1.2;  k3 = e^0 - 0 - 1 = 0.
    #   token 1: r = 1 -> -1;  k3 = 2 - ln 2 - 1 = 0.3068528.  loss = -1 + 0.04 * 0.3068528.
    #   sequence mean = (-1.2 - 1 + 0.04 * 0.3068528) / 2 = -1.0938629.
    # Sequence 1: A = -2, one real token with r = 0.5 (then padding): max(1.0, 2 * 0.8) = 1.6.
    # seq-mean-token-mean = (-1.0938629 + 1.6) / 2 = 0.2530685.
    logp = torch.tensor([[-1.0, -2.0], [-1.0, float("nan")]])
    old_logp = torch.tensor([[-1.0 - ln(1.5), -2.0], [-1.0 - ln(0.5), 0.0]])
    ref_logp = torch.tensor([[-1.0, -2.0 + ln(2.0)], [-1.0, 0.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    loss, metrics = get_algorithm("grpo").policy_loss(
        logp, old_logp, torch.tensor([1.0, -2.0]), mask, ref_logp
    )
    k3 = 1 - ln(2)
    assert loss.item() == pytest.approx(((-1.2 - 1 + 0.04 * k3) / 2 + 1.6) / 2, rel=1e-6)
    assert metrics["kl"] == pytest.approx(k3 / 3, rel=1e-6)
    assert metrics["ppo_kl"] == pytest.approx((-ln(1.5) + ln(2)) / 3, rel=1e-6)  # mean of old - new
    assert metrics["clip_frac_high"] == pytest.approx(1 / 3) and metrics["clip_frac_low"] == pytest.approx(
        1 / 3
    )
    with pytest.raises(ValueError, match="needs ref_logp"):
        get_algorithm("grpo").policy_loss(logp, old_logp, torch.tensor([1.0, -2.0]), mask)


# Shared by the DAPO and FIPO hand cases (half_life 1 -> gamma = 1/2; 7B weights [0.8, 1.2], safety 3).
HAND_D = [[0.1, -0.2, 0.4], [math.log(20), math.log(4), math.log(0.5)], [math.log(20), math.log(30), 0.0]]
HAND_MASK = torch.tensor([[1, 1, 1], [1, 1, 1], [1, 1, 0]])
HAND_ADVANTAGES = torch.tensor([1.0, -1.0, -1.0])


def _hand_inputs():
    old_logp = torch.full((3, 3), -2.0)
    return old_logp + torch.tensor(HAND_D), old_logp, HAND_ADVANTAGES, HAND_MASK


def test_dapo_loss_hand_derived():
    # clip [0.8, 1.28], dual clip 10, token-mean over the 8 real tokens, no weights, no drop.
    # seq 0 (A = 1):  r = [e^0.1, e^-0.2, e^0.4]   -> [-e^0.1, -e^-0.2, max(-1.4918, -1.28) = -1.28]
    # seq 1 (A = -1): r = [20, 4, 0.5]             -> [min(20, 10) = 10, 4, max(0.5, 0.8) = 0.8]
    # seq 2 (A = -1): r = [20, 30]                 -> [10, 10]
    expected = (-math.exp(0.1) - math.exp(-0.2) - 1.28 + 10 + 4 + 0.8 + 10 + 10) / 8
    loss, metrics = get_algorithm("dapo").policy_loss(*_hand_inputs())
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["dual_clip_frac"] == pytest.approx(3 / 8)


def test_fipo_loss_hand_derived():
    # gamma = 1/2, c = 10 (ln c = 2.3026), weights clamped to [0.8, 1.2], safety threshold 3.
    # seq 0 (A = 1), d = [0.1, -0.2, 0.4]: F = [0.1 + 0/2, -0.2 + 0.4/2, 0.4] = [0.1, 0, 0.4]
    #   w = [e^0.1, 1, 1.2 (e^0.4 = 1.49 clamped)]
    #   l0 = -e^0.1 * e^0.1 = -e^0.2 (r inside the clip); l1 = -e^-0.2
    #   l2 = max(-1.2 e^0.4, -1.2 * 1.28) = -1.536
    # seq 1 (A = -1), d = [ln 20, ln 4, ln 0.5]: token 0 has r = 20 > c, so it is left out of F:
    #   F2 = ln 0.5, F1 = ln 4 + ln(0.5) / 2 = 1.5 ln 2, F0 = F1 / 2 = 0.75 ln 2
    #   exp(F) = [1.68, 2.83, 0.5] -> clamped [1.2, 1.2, 0.8]; tokens 0 and 1 have A < 0 and r > 3, so the
    #   safety rule clamps them to [0.8, 1]: w = [1, 1, 0.8].
    #   l0 = min(max(20, 1.28), 10) = 10 (dual clip, 1 token: kept); l1 = 4; l2 = 0.8 * max(0.5, 0.8) = 0.64
    # seq 2 (A = -1), r = [20, 30]: two dual-clipped tokens -> the whole sequence is dropped.
    # token-mean over the 6 kept tokens.
    expected = (-math.exp(0.2) - math.exp(-0.2) - 1.536 + 10 + 4 + 0.64) / 6
    fipo = get_algorithm("fipo-7b", half_life=1)
    loss, metrics = fipo.policy_loss(*_hand_inputs())
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["dropped_seq_frac"] == pytest.approx(1 / 3)
    assert metrics["future_kl_masked_frac"] == pytest.approx(3 / 8)  # r > 10: seq 1 token 0, seq 2 tokens 0-1
    assert metrics["safety_frac"] == pytest.approx(4 / 8)  # seq 1 tokens 0-1, seq 2 tokens 0-1
    assert metrics["weight_max"] == pytest.approx(1.2) and metrics["weight_min"] == pytest.approx(0.8)
    _, loss_mask, _ = fipo.token_loss(*_hand_inputs())
    assert loss_mask.tolist() == [[1, 1, 1], [1, 1, 1], [0, 0, 0]]


def test_dapo_shape_rewards_and_keep_group():
    dapo = get_algorithm("dapo", overlong_buffer=4)
    rewards = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0])
    lengths = torch.tensor([10, 16, 17, 18, 20])
    # L_max = 20, buffer 4: no penalty up to 16, then -(L - 16) / 4: 17 -> -0.25, 18 -> -0.5, 20 -> -1.
    expected = torch.tensor([1.0, 1.0, -0.25, 0.5, -1.0])
    torch.testing.assert_close(dapo.shape_rewards(rewards, lengths, 20), expected)
    half = get_algorithm("dapo", overlong_buffer=4, overlong_factor=0.5)
    torch.testing.assert_close(
        half.shape_rewards(rewards, lengths, 20), torch.tensor([1.0, 1.0, -0.125, 0.75, -0.5])
    )
    assert torch.equal(get_algorithm("grpo").shape_rewards(rewards, lengths, 20), rewards)
    assert torch.equal(
        get_algorithm("dapo", overlong_buffer=None).shape_rewards(rewards, lengths, 20), rewards
    )
    with pytest.raises(
        ValueError, match="overlong_buffer = 4096 must be smaller than the maximum response length 512"
    ):
        get_algorithm("dapo").shape_rewards(rewards, lengths, 512)

    for name in ("dapo", "fipo"):
        alg = get_algorithm(name)
        assert not alg.keep_group(torch.tensor([0, 0, 0])) and not alg.keep_group(torch.tensor([1.0, 1.0]))
        assert alg.keep_group(torch.tensor([0, 1, 0])) and alg.keep_group([1, 0])
    assert get_algorithm("grpo").keep_group(torch.tensor([1, 1, 1]))
    assert get_algorithm("dapo", dynamic_sampling=False).keep_group(torch.tensor([0, 0]))


# ---------------------------------------------------------------------------------------------------
# Invariances.


def _loss_and_grad(alg, logp, old_logp, advantages, mask, ref_logp=None):
    logp = logp.clone().requires_grad_(True)
    loss, _ = alg.policy_loss(logp, old_logp, advantages, mask, ref_logp)
    loss.backward()
    return loss.detach(), torch.where(mask, logp.grad, 0.0)


def test_fipo_equals_dapo_on_the_first_minibatch():
    _, old_logp, advantages, mask, _ = random_batch(10, 6, 50, token_advantages=True)
    for name in ("fipo", "fipo-7b"):
        fipo_loss, fipo_grad = _loss_and_grad(get_algorithm(name), old_logp, old_logp, advantages, mask)
        dapo_loss, dapo_grad = _loss_and_grad(get_algorithm("dapo"), old_logp, old_logp, advantages, mask)
        torch.testing.assert_close(fipo_loss, dapo_loss)
        torch.testing.assert_close(fipo_grad, dapo_grad)


def test_dapo_reduces_to_grpo_without_kl():
    logp, old_logp, advantages, mask, ref_logp = random_batch(11, 5, 30)
    dapo = get_algorithm("dapo", clip_high=0.2, dual_clip=None, loss_agg="seq-mean-token-mean")
    dapo_loss, dapo_grad = _loss_and_grad(dapo, logp, old_logp, advantages, mask)
    grpo_loss, grpo_grad = _loss_and_grad(
        get_algorithm("grpo", kl_coef=0), logp, old_logp, advantages, mask, ref_logp
    )
    torch.testing.assert_close(dapo_loss, grpo_loss)
    torch.testing.assert_close(dapo_grad, grpo_grad)


@pytest.mark.parametrize("loss_agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
@pytest.mark.parametrize("name", ["grpo", "dapo", "fipo", "fipo-7b"])
def test_padding_changes_no_loss(name, loss_agg):
    alg = get_algorithm(name, loss_agg=loss_agg)
    logp, old_logp, advantages, mask, ref_logp = random_batch(12, 4, 20, token_advantages=True)
    loss, metrics = alg.policy_loss(logp, old_logp, advantages, mask, ref_logp)

    def pad(tensor, value):  # 9 more padded positions and one fully padded sequence
        wider = torch.nn.functional.pad(tensor, (0, 9), value=value)
        return torch.cat([wider, torch.full_like(wider[:1], value)])

    padded_loss, padded_metrics = alg.policy_loss(
        pad(logp, float("nan")),
        pad(old_logp, float("inf")),
        pad(advantages, float("nan")),
        pad(mask, False),
        pad(ref_logp, -float("inf")),
    )
    assert padded_loss.item() == pytest.approx(loss.item(), rel=1e-6, abs=1e-7)
    assert padded_metrics.keys() == metrics.keys()
    for key in metrics:
        if key != "dropped_seq_frac":  # fractions of sequences, not of tokens
            assert padded_metrics[key] == pytest.approx(metrics[key], rel=1e-6, abs=1e-7), key


def test_shifting_a_group_reward_leaves_grpo_advantages_unchanged():
    g = torch.Generator().manual_seed(13)
    rewards = torch.randint(0, 2, (24,), generator=g).double()
    group_ids = torch.randint(0, 5, (24,), generator=g)
    shifted = torch.where(group_ids == group_ids[0], rewards + 7.25, rewards)
    grpo = get_algorithm("grpo")
    torch.testing.assert_close(grpo.advantages(shifted, group_ids), grpo.advantages(rewards, group_ids))


def test_no_gradient_flows_through_the_fipo_weight():
    logp, old_logp, advantages, mask, _ = random_batch(14, 4, 30, token_advantages=True)
    fipo = get_algorithm("fipo-7b", half_life=4)
    _, grad = _loss_and_grad(fipo, logp, old_logp, advantages, mask)
    # The same loss with the weights computed beforehand, as constants.
    log_ratio = torch.where(mask, (logp - old_logp).clamp(-20, 20), 0.0).float()
    weights = influence_weights(
        log_ratio,
        torch.where(mask, advantages, 0.0).float(),
        mask,
        half_life=4.0,
        ratio_cap=10.0,
        weight_low=0.8,
        weight_high=1.2,
        safety_threshold=3.0,
        mask_negative_only=False,
        safety_resets_weight=False,
    ).influence_weight
    assert not weights.requires_grad
    _, loss_mask, _ = fipo.token_loss(logp, old_logp, advantages, mask)
    constant_logp = logp.clone().float().requires_grad_(True)
    ratio = torch.exp(torch.where(mask, (constant_logp - old_logp.float()).clamp(-20, 20), 0.0))
    token_loss, _ = clipped_surrogate(
        ratio, torch.where(mask, advantages, 0.0).float() * weights, 0.2, 0.28, 10.0
    )
    ops.aggregate(token_loss, loss_mask, "token-mean").backward()
    torch.testing.assert_close(grad, torch.where(mask, constant_logp.grad, 0.0).double())
    assert grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------
# Inputs and the contract.


@pytest.mark.parametrize("name", ["grpo", "dapo", "fipo"])
def test_bf16_inputs_compute_in_float32(name):
    alg = get_algorithm(name)
    logp, old_logp, advantages, mask, ref_logp = random_batch(15, 3, 25)
    low = [x.bfloat16() for x in (logp, old_logp, advantages, ref_logp)]
    leaf = low[0].clone().requires_grad_(True)
    loss, _ = alg.policy_loss(leaf, low[1], low[2], mask, low[3])
    expected, _ = alg.policy_loss(*(x.float() for x in low[:3]), mask, low[3].float())
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert leaf.grad.dtype == torch.bfloat16 and torch.isfinite(leaf.grad).all()


def test_token_loss_contract_for_backends_with_their_own_normalisation():
    logp, old_logp, advantages, mask, ref_logp = random_batch(16, 4, 40)
    for name in ("grpo", "dapo", "fipo"):
        alg = get_algorithm(name)
        token_loss, loss_mask, metrics = alg.token_loss(logp, old_logp, advantages, mask, ref_logp)
        # float64 inputs are computed in float64; the loss mask is float32 0/1 either way
        assert token_loss.dtype == torch.float64 and loss_mask.dtype == torch.float32
        assert token_loss.shape == loss_mask.shape
        low = alg.token_loss(logp.float(), old_logp.float(), advantages.float(), mask, ref_logp.float())[0]
        assert low.dtype == torch.float32
        assert torch.isfinite(token_loss).all() and torch.equal(token_loss, token_loss * loss_mask)
        assert all(value.dim() == 0 for value in metrics.values())
        loss, _ = alg.policy_loss(logp, old_logp, advantages, mask, ref_logp)
        torch.testing.assert_close(loss, ops.aggregate(token_loss, loss_mask, alg.loss_agg))
    _, fipo_metrics = get_algorithm("fipo").policy_loss(logp, old_logp, advantages, mask)
    assert {
        "ppo_kl",
        "clip_frac_high",
        "clip_frac_low",
        "weight_mean",
        "weight_min",
        "weight_max",
        "weight_clip_frac_high",
        "weight_clip_frac_low",
        "future_kl_masked_frac",
        "dropped_seq_frac",
    } <= set(fipo_metrics)
    with pytest.raises(ValueError, match=r"advantages must be \[N\] or \[N, T\]"):
        get_algorithm("dapo").policy_loss(logp, old_logp, advantages[:2], mask)
    with pytest.raises(ValueError, match="old_logp must have logp's shape"):
        get_algorithm("dapo").policy_loss(logp, old_logp[:, :3], advantages, mask)


@pytest.mark.parametrize("shape", [(2, 0), (0, 5), (3, 4)])
@pytest.mark.parametrize("name", ["grpo", "dapo", "fipo"])
def test_empty_batches_give_zero_loss_and_finite_metrics(name, shape):
    logp = torch.zeros(shape, requires_grad=True)
    mask = torch.zeros(shape, dtype=torch.bool)  # (3, 4): padding only
    loss, metrics = get_algorithm(name).policy_loss(
        logp, torch.zeros(shape), torch.ones(shape[0]), mask, logp.detach()
    )
    assert loss.item() == 0.0 and all(value == 0.0 for value in metrics.values())
    loss.backward()


def test_algorithms_import_without_heavy_dependencies():
    script = textwrap.dedent("""
        import sys
        BLOCKED = {"transformers", "ray", "vllm", "openrlhf", "deepspeed", "flash_attn"}

        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"blocked: {name}")
                return None

        sys.meta_path.insert(0, Blocker())
        import torch
        from fipo_bench.algorithms import get_algorithm, list_algorithms
        assert {"grpo", "dapo", "fipo", "fipo-7b"} <= set(list_algorithms())
        alg = get_algorithm("fipo")
        loss, _ = alg.policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2), torch.ones(2, 3))
        assert not any(name.split(".")[0] in BLOCKED for name in sys.modules)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
