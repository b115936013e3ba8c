"""The zoo (Dr. GRPO, GSPO, CISPO, SAPO, GMPO, GPG, Clip-Cov, KL-Cov, RLOO, REINFORCE++(-baseline), OPO)
against naive per-token loops written from each paper's equations, hand-derived cases, invariances and
gradient checks. (Their agreement with verl's core_algos was measured outside the test suite: the
modules' docstrings list where the readings differ.)"""

import math
import pickle
import re

import pytest
import torch

from fipo_bench import ops
from fipo_bench.algorithms import get_algorithm, list_algorithms

ZOO = [
    "dr-grpo",
    "gspo",
    "cispo",
    "sapo",
    "gmpo",
    "gpg",
    "clip-cov",
    "kl-cov",
    "rloo",
    "reinforce++",
    "reinforce++-baseline",
    "opo",
]
LOSS_ZOO = ["dr-grpo", "gspo", "cispo", "sapo", "gmpo", "gpg", "clip-cov", "kl-cov"]  # their own losses


# The published settings (issue 11's table, each with its source in the field's documentation).
PUBLISHED = {
    "dr-grpo": {"loss_agg": "seq-mean-token-sum-norm", "max_tokens_norm": None, "kl_coef": 0.0},
    "gspo": {"clip_low": 3e-4, "clip_high": 4e-4, "loss_agg": "seq-mean-token-mean", "dual_clip": None},
    "cispo": {"clip_low": 1.0, "clip_high": 0.2, "loss_agg": "token-mean"},
    "sapo": {"tau_pos": 1.0, "tau_neg": 1.05, "loss_agg": "seq-mean-token-mean"},
    "gmpo": {"clip_low": 0.4, "clip_high": 0.4, "loss_agg": "seq-mean-token-mean"},
    "gpg": {"loss_agg": "token-mean", "alpha_rule": "valid-groups"},
    "clip-cov": {
        "cov_ratio": 2e-4,
        "cov_lb": 1.0,
        "cov_ub": 5.0,
        "clip_low": 1.0,
        "clip_high": 1.0,
        "dynamic_sampling": True,
    },
    "kl-cov": {"cov_ratio": 2e-3, "cov_kl_coef": 1.0, "dynamic_sampling": True},
    "rloo": {"loss_agg": "token-mean"},
    "reinforce++": {"gamma": 1.0, "unbiased_std": False},
    "reinforce++-baseline": {"unbiased_std": False},
    "opo": {"loss_agg": "token-mean"},
}


def test_every_zoo_algorithm_is_registered_with_its_paper_and_published_defaults():
    assert set(ZOO) == set(PUBLISHED) and set(ZOO) <= set(list_algorithms())
    for name in ZOO:
        alg = get_algorithm(name)
        assert "arXiv" in type(alg).paper and type(alg).__doc__
        assert not alg.needs_reference  # none of the published recipes uses a KL loss
        hp = alg.hyperparameters()
        assert {key: hp[key] for key in PUBLISHED[name]} == PUBLISHED[name], name
    for name in ("dr-grpo", "gspo", "clip-cov", "rloo", "reinforce++", "reinforce++-baseline", "opo"):
        # every PPO-style loss keeps the shared names, so one override works across algorithms
        assert {"clip_low", "clip_high", "dual_clip", "loss_agg"} <= set(
            get_algorithm(name).hyperparameters()
        )


# ---------------------------------------------------------------------------------------------------
# Inputs: float64, right padding with NaN garbage, an empty response, occasional extreme log-ratios.


def zoo_batch(seed, n=7, t=11, adv_scale=1.0, spikes=True):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(n, t, generator=g, dtype=torch.float64) * 3
    shift = torch.randn(n, t, generator=g, dtype=torch.float64) * 0.3
    if spikes:
        hit = torch.rand(n, t, generator=g) < 0.1
        values = torch.tensor([2.0, -2.0, 25.0, -25.0], dtype=torch.float64)
        shift = torch.where(hit, values[torch.randint(0, 4, (n, t), generator=g)], shift)
    lengths = torch.randint(1, t + 1, (n,), generator=g)
    lengths[1] = 0
    mask = torch.arange(t)[None] < lengths[:, None]
    logp = torch.where(mask, old + shift, float("nan"))
    advantages = torch.randn(n, generator=g, dtype=torch.float64) * adv_scale
    advantages[2] = 0.0
    return logp, old, advantages, mask


def rows_of(logp, old, advantages, mask):
    """Per row: the list of (logp, old_logp, advantage) of its response tokens, as Python floats."""
    out = []
    for i in range(mask.shape[0]):
        adv = advantages[i].tolist()
        out.append(
            [
                (logp[i, t].item(), old[i, t].item(), adv[t] if isinstance(adv, list) else adv)
                for t in range(mask.shape[1])
                if mask[i, t]
            ]
        )
    return out


def aggregate_naive(rows, mode, norm=None, width=None):
    """rows: per-row lists of token losses."""
    if mode == "token-mean":
        flat = [x for row in rows for x in row]
        return sum(flat) / max(len(flat), 1)
    per = {
        "seq-mean-token-mean": lambda r: sum(r) / len(r),
        "seq-mean-token-sum": sum,
        "seq-mean-token-sum-norm": lambda r: sum(r) / (width if norm is None else norm),
    }[mode]
    values = [per(r) for r in rows if r]
    return sum(values) / max(len(values), 1)


def clamp(x, lo, hi):
    return min(max(x, lo), hi)


def ppo_token(d, a, low, high, dual=None):
    r = math.exp(d)
    loss = max(-a * r, -a * clamp(r, 1 - low, 1 + high))
    return min(loss, -a * dual) if dual is not None and a < 0 else loss


def naive_covariances(rows):
    flat = [(lp, a) for row in rows for lp, _, a in row]
    mean_a = sum(a for _, a in flat) / len(flat)
    mean_lp = sum(lp for lp, _ in flat) / len(flat)
    return [[(a - mean_a) * (lp - mean_lp) for lp, _, a in row] for row in rows]


def naive_clip_cov_candidates(alg, rows):
    """Clip-Cov's candidates (i, t) in row-major order: covariance strictly inside (cov_lb, cov_ub), and
    not already cut by PPO's clip."""
    cov = naive_covariances(rows)
    return [
        (i, t)
        for i, row in enumerate(rows)
        for t, (lp, o, a) in enumerate(row)
        if alg.cov_lb < cov[i][t] < alg.cov_ub
        and not -a * clamp(math.exp(lp - o), 1 - alg.clip_low, 1 + alg.clip_high) > -a * math.exp(lp - o)
    ]


def naive_token_losses(alg, rows):
    """Per-row token losses of `alg` from its paper's equations, one token at a time."""
    name = alg.name
    if name == "gmpo":
        out = []
        for row in rows:
            if not row:
                out.append([])
                continue
            clipped = [
                min(lp - o, alg.clip_high) if a > 0 else max(lp - o, -alg.clip_low) if a < 0 else 0.0
                for lp, o, a in row
            ]
            mean_a = sum(a for _, _, a in row) / len(row)
            out.append([-mean_a * math.exp(sum(clipped) / len(row))] * len(row))
        return out
    if name == "gspo":
        out = []
        for row in rows:
            mean_d = sum(lp - o for lp, o, _ in row) / max(len(row), 1)
            out.append(
                [
                    ppo_token(min(mean_d, 10.0), a, alg.clip_low, alg.clip_high, alg.dual_clip)
                    for _, _, a in row
                ]
            )
        return out
    if name in ("clip-cov", "kl-cov"):
        cov = naive_covariances(rows)
        n = sum(len(r) for r in rows)
        positions = [(i, t) for i, row in enumerate(rows) for t in range(len(row))]
        if name == "kl-cov":
            k = max(1, int(n * alg.cov_ratio))
            chosen = set(sorted(positions, key=lambda p: -cov[p[0]][p[1]])[:k])
            return [
                [
                    -a * math.exp(lp - o) + (alg.cov_kl_coef * abs(lp - o) if (i, t) in chosen else 0.0)
                    for t, (lp, o, a) in enumerate(row)
                ]
                for i, row in enumerate(rows)
            ]
        candidates = naive_clip_cov_candidates(alg, rows)
        k = max(int(alg.cov_ratio * n), 1)
        seed = GLOBAL_SEED if alg.selection_seed is None else alg.selection_seed  # the reference's draw
        draw = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed))
        chosen = {candidates[j] for j in draw[:k].tolist()} if candidates else set()
        return [
            [
                0.0 if (i, t) in chosen else ppo_token(lp - o, a, alg.clip_low, alg.clip_high, alg.dual_clip)
                for t, (lp, o, a) in enumerate(row)
            ]
            for i, row in enumerate(rows)
        ]
    out = []
    for row in rows:
        losses = []
        for lp, o, a in row:
            d = clamp(lp - o, -20.0, 20.0)
            if name == "cispo":
                losses.append(-clamp(math.exp(d), 1 - alg.clip_low, 1 + alg.clip_high) * a * lp)
            elif name == "sapo":
                tau = alg.tau_pos if a > 0 else alg.tau_neg
                losses.append(-a * 4.0 / tau / (1.0 + math.exp(-tau * (math.exp(d) - 1.0))))
            elif name == "gpg":
                losses.append(-lp * a)
            else:  # the PPO surrogate of dr-grpo, rloo, opo, reinforce++
                losses.append(ppo_token(d, a, alg.clip_low, alg.clip_high, alg.dual_clip))
        out.append(losses)
    return out


GLOBAL_SEED = 11  # torch.manual_seed before a loss whose draw comes from torch's global generator

LOSS_SETTINGS = [
    ("dr-grpo", {}),
    ("dr-grpo", {"max_tokens_norm": 16, "dual_clip": 3.0}),
    ("gspo", {}),
    ("gspo", {"clip_low": 0.2, "clip_high": 0.28, "dual_clip": 3.0, "loss_agg": "token-mean"}),
    ("cispo", {}),
    ("cispo", {"clip_low": 0.2, "clip_high": 0.5}),
    ("sapo", {}),
    ("sapo", {"tau_pos": 0.5, "tau_neg": 2.0, "loss_agg": "token-mean"}),
    ("gmpo", {}),
    ("gmpo", {"clip_low": 0.1, "clip_high": 0.8, "loss_agg": "seq-mean-token-sum"}),
    ("gpg", {}),
    ("clip-cov", {}),
    ("clip-cov", {"cov_ratio": 0.2, "clip_low": 0.2, "clip_high": 0.2, "selection_seed": 5}),
    ("clip-cov", {"cov_ratio": 0.5, "cov_lb": -1.0, "cov_ub": 0.5, "dual_clip": 3.0}),
    ("kl-cov", {}),
    ("kl-cov", {"cov_ratio": 0.1, "cov_kl_coef": 0.3}),
    ("rloo", {"dual_clip": 3.0}),
]


@pytest.mark.parametrize(("name", "overrides"), LOSS_SETTINGS)
def test_losses_match_naive_per_token_loops(name, overrides):
    detached = penalized = 0
    for seed, token_advantages in ((0, False), (1, False), (2, True), (3, False)):
        logp, old, advantages, mask = zoo_batch(seed, adv_scale=3.0)
        if token_advantages:
            advantages = advantages[:, None] * (
                1 + torch.rand(mask.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
            )
        alg = get_algorithm(name, **overrides)  # fresh: Clip-Cov's draw starts from selection_seed
        torch.manual_seed(GLOBAL_SEED)  # or, by default, from torch's global generator
        loss, metrics = alg.policy_loss(logp, old, advantages, mask)
        rows = naive_token_losses(alg, rows_of(logp, old, advantages, mask))
        assert loss.dtype == torch.float64
        expected = aggregate_naive(rows, alg.loss_agg, alg.num_tokens_norm, mask.shape[1])
        assert loss.item() == pytest.approx(expected, rel=1e-10, abs=1e-12)
        torch.manual_seed(GLOBAL_SEED)
        token_loss, loss_mask, _ = get_algorithm(name, **overrides).token_loss(logp, old, advantages, mask)
        flat = torch.tensor([x for row in rows for x in row], dtype=torch.float64)
        torch.testing.assert_close(token_loss[mask], flat, rtol=1e-10, atol=1e-12)
        assert torch.equal(loss_mask.bool(), mask)
        detached += metrics.get("cov_detached_frac", 0.0) > 0
        penalized += metrics.get("cov_penalized_frac", 0.0) > 0
    if name == "clip-cov":
        assert detached > 0  # the random batches do reach the covariance rule
    if name == "kl-cov":
        assert penalized == 4


# ---------------------------------------------------------------------------------------------------
# Advantage estimators against naive loops, with groups of one, all-equal groups and empty responses.


def estimator_case(seed, n=14):
    g = torch.Generator().manual_seed(seed)
    group_ids = torch.randint(0, 4, (n,), generator=g) * 10
    group_ids[-1], group_ids[-2] = 97, 98  # two groups of one
    rewards = torch.randint(0, 2, (n,), generator=g).double() * 2 - 1
    rewards[group_ids == group_ids[0]] = 1.0  # one group with all-equal rewards
    lengths = torch.randint(0, 9, (n,), generator=g)
    mask = torch.arange(9)[None] < lengths[:, None]
    return rewards, group_ids, mask, lengths


def naive_group_advantages(name, rewards, group_ids, lengths, lone_baseline, alpha_rule="valid-groups"):
    r, gid, lens = rewards.tolist(), group_ids.tolist(), lengths.tolist()
    members = {g: [j for j in range(len(r)) if gid[j] == g] for g in set(gid)}
    out = []
    for i in range(len(r)):
        group = members[gid[i]]
        if len(group) == 1:
            out.append(0.0 if lone_baseline == "own" else r[i])
            continue
        if name == "rloo":
            baseline = sum(r[j] for j in group if j != i) / (len(group) - 1)
        elif name == "opo":
            total = sum(lens[j] for j in group)
            baseline = sum(lens[j] * r[j] for j in group) / total if total else 0.0
        else:
            baseline = sum(r[j] for j in group) / len(group)
        out.append(r[i] - baseline)
    if name == "gpg":
        valid = sum(len(g) for g in members.values() if len({r[j] for j in g}) > 1)
        alpha = {
            "valid-groups": len(r) / max(valid, 1),
            "one": 1.0,
            "nonzero-rewards": len(r) / max(sum(x != 0 for x in r), 1),
        }[alpha_rule]
        out = [alpha * x for x in out]
    return torch.tensor(out, dtype=torch.float64)


def naive_whitened(values_per_row, lengths, gamma, unbiased):
    """REINFORCE++: gamma^(L - 1 - t) v on each token, whitened over every token of the batch."""
    returns = [
        [gamma ** (length - 1 - t) * v for t in range(length)]
        for v, length in zip(values_per_row, lengths, strict=True)
    ]
    flat = [x for row in returns for x in row]
    mean = sum(flat) / len(flat)
    var = sum((x - mean) ** 2 for x in flat) / (len(flat) - 1 if unbiased else len(flat))
    std = math.sqrt(var + 1e-8) if unbiased else math.sqrt(max(var, 1e-8))
    width = max(lengths)
    return torch.tensor(
        [[(row[t] - mean) / std if t < len(row) else 0.0 for t in range(width)] for row in returns],
        dtype=torch.float64,
    )


@pytest.mark.parametrize("lone_baseline", ["own", "zero"])
@pytest.mark.parametrize("name", ["dr-grpo", "rloo", "opo", "gpg"])
def test_group_baselines_match_naive_loops(name, lone_baseline):
    for seed in range(4):
        rewards, group_ids, mask, lengths = estimator_case(seed)
        rules = ("valid-groups", "nonzero-rewards", "one") if name == "gpg" else (None,)
        for rule in rules:
            extra = {"alpha_rule": rule} if rule else {}
            alg = get_algorithm(name, lone_baseline=lone_baseline, **extra)
            got = alg.advantages(rewards, group_ids, mask=mask)
            expected = naive_group_advantages(name, rewards, group_ids, lengths, lone_baseline, rule)
            assert got.shape == (len(rewards),) and got.dtype == torch.float64
            torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("unbiased_std", [False, True])
@pytest.mark.parametrize("gamma", [1.0, 0.9, 0.5])
def test_reinforce_plus_plus_matches_naive_loops(gamma, unbiased_std):
    for seed in range(3):
        rewards, group_ids, mask, lengths = estimator_case(seed)
        got = get_algorithm("reinforce++", gamma=gamma, unbiased_std=unbiased_std).advantages(
            rewards, group_ids, mask=mask
        )
        expected = naive_whitened(rewards.tolist(), lengths.tolist(), gamma, unbiased_std)
        torch.testing.assert_close(got[:, : expected.shape[1]], expected, rtol=1e-10, atol=1e-12)
        assert (got[~mask] == 0).all()
        if gamma == 1.0:
            baseline = get_algorithm("reinforce++-baseline", unbiased_std=unbiased_std)
            centered = naive_group_advantages("dr-grpo", rewards, group_ids, lengths, "own")
            expected = naive_whitened(centered.tolist(), lengths.tolist(), 1.0, unbiased_std)
            got = baseline.advantages(rewards, group_ids, mask=mask)
            torch.testing.assert_close(got[:, : expected.shape[1]], expected, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------------
# Hand-derived cases.


def test_estimators_hand_derived():
    # RLOO, group {1, 0, 0, 1}: the others' mean is 1/3 for a 1 and 2/3 for a 0 -> +-2/3. Group {2}: alone.
    rewards, groups = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0]), torch.tensor([0, 0, 0, 0, 1])
    rloo = get_algorithm("rloo").advantages(rewards, groups)
    torch.testing.assert_close(rloo, torch.tensor([2 / 3, -2 / 3, -2 / 3, 2 / 3, 0.0]))
    torch.testing.assert_close(
        get_algorithm("rloo", lone_baseline="zero").advantages(rewards, groups)[4], torch.tensor(2.0)
    )
    # Dr. GRPO: r - mean = +-0.5, no std.
    torch.testing.assert_close(
        get_algorithm("dr-grpo").advantages(rewards, groups), torch.tensor([0.5, -0.5, -0.5, 0.5, 0.0])
    )
    # OPO, lengths [2, 6], rewards [1, 0]: b = (2 * 1 + 6 * 0) / 8 = 0.25 -> [0.75, -0.25].
    mask = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    opo = get_algorithm("opo").advantages(torch.tensor([1.0, 0.0]), torch.tensor([3, 3]), mask=mask)
    torch.testing.assert_close(opo, torch.tensor([0.75, -0.25]))
    # GPG, groups {1, 0} and {1, 1}: B = 4, M = 2 -> alpha = 2: [1, -1, 0, 0]. verl's rule: 3 nonzero
    # rewards -> alpha = 4 / 3.
    rewards, groups = torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([0, 0, 1, 1])
    torch.testing.assert_close(
        get_algorithm("gpg").advantages(rewards, groups), torch.tensor([1.0, -1, 0, 0])
    )
    torch.testing.assert_close(
        get_algorithm("gpg", alpha_rule="nonzero-rewards").advantages(rewards, groups),
        torch.tensor([2 / 3, -2 / 3, 0, 0]),
    )
    # REINFORCE++, gamma 0.5: a 2-token response with r = 1 -> returns [0.5, 1]; a 1-token one with r = 0
    # -> [0]. Tokens [0.5, 1, 0]: mean 0.5, biased var 1/6 -> [0, 0.5 sqrt 6, -0.5 sqrt 6]; unbiased var
    # 1/4 -> [0, 1, -1] (up to the 1e-8).
    mask = torch.tensor([[1, 1], [1, 0]])
    rf = get_algorithm("reinforce++", gamma=0.5).advantages(
        torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), mask=mask
    )
    h = 0.5 * math.sqrt(6)
    torch.testing.assert_close(rf, torch.tensor([[0.0, h], [-h, 0.0]]))
    rf = get_algorithm("reinforce++", gamma=0.5, unbiased_std=True).advantages(
        torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), mask=mask
    )
    torch.testing.assert_close(rf, torch.tensor([[0.0, 1.0], [-1.0, 0.0]]))


def test_losses_hand_derived():
    ln = math.log
    one = torch.ones(1, 2, dtype=torch.bool)
    # CISPO: token ratios [2, 0.5] -> weights clip(., 0, 1.2) = [1.2, 0.5]; A = 1, logp = [-1, -2]:
    # token-mean of -w A logp = (1.2 + 1.0) / 2.
    logp = torch.tensor([[-1.0, -2.0]])
    old = logp - torch.tensor([[ln(2.0), ln(0.5)]])
    loss, metrics = get_algorithm("cispo").policy_loss(logp, old, torch.tensor([1.0]), one)
    assert loss.item() == pytest.approx(1.1) and metrics["clip_frac_high"] == 0.5
    # GMPO: d = [0.6, -0.2], A = 1: d' = [min(0.6, 0.4), -0.2] -> mean 0.1 -> loss -e^0.1; A = -1: d' = d
    # (-0.2 > -0.4) -> mean 0.2 -> +e^0.2.
    old = logp - torch.tensor([[0.6, -0.2]])
    gmpo = get_algorithm("gmpo")
    assert gmpo.policy_loss(logp, old, torch.tensor([1.0]), one)[0].item() == pytest.approx(-math.exp(0.1))
    assert gmpo.policy_loss(logp, old, torch.tensor([-1.0]), one)[0].item() == pytest.approx(math.exp(0.2))
    # GSPO: d = [0.1, -0.3] -> s = e^-0.1 = 0.905 on both tokens, below 1 - 3e-4. A = 1: the unclipped
    # -s is larger (pessimistic) -> -0.905; A = -1: max(s, 1 - 3e-4) = 0.9997.
    old = logp - torch.tensor([[0.1, -0.3]])
    gspo = get_algorithm("gspo")
    assert gspo.policy_loss(logp, old, torch.tensor([1.0]), one)[0].item() == pytest.approx(-math.exp(-0.1))
    assert gspo.policy_loss(logp, old, torch.tensor([-1.0]), one)[0].item() == pytest.approx(1 - 3e-4)
    # SAPO: r = 1 -> gate 4 sigmoid(0) / tau = 2 / tau: A = 1 -> -2; A = -1 (tau 1.05) -> 2 / 1.05.
    sapo = get_algorithm("sapo")
    assert sapo.policy_loss(logp, logp, torch.tensor([1.0]), one)[0].item() == pytest.approx(-2.0)
    assert sapo.policy_loss(logp, logp, torch.tensor([-1.0]), one)[0].item() == pytest.approx(2 / 1.05)
    # Dr. GRPO: on-policy token losses -A = [-1, -1] and [2]: token sums / 4 -> [-0.5, 0.5], mean 0.
    logp2 = torch.tensor([[-1.0, -2.0], [-1.0, 0.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    dr = get_algorithm("dr-grpo", max_tokens_norm=4)
    assert dr.policy_loss(logp2, logp2, torch.tensor([1.0, -2.0]), mask)[0].item() == pytest.approx(0.0)
    assert dr.policy_loss(logp2, logp2, torch.tensor([1.0, 2.0]), mask)[0].item() == pytest.approx(-0.5)
    # KL-Cov: the single top-covariance token gets + |d|. Tokens (A, logp): (1, -1), (1, -2), (-1, -1);
    # means 1/3, -4/3: cov = (2/3)(1/3), (2/3)(-2/3), (-4/3)(1/3) -> the first. d = 0.5 there.
    logp3 = torch.tensor([[-1.0, -2.0], [-1.0, 0.0]])
    old3 = logp3 - torch.tensor([[0.5, 0.0], [0.0, 0.0]])
    loss, _ = get_algorithm("kl-cov", cov_ratio=0.01).policy_loss(
        logp3, old3, torch.tensor([1.0, -1.0]), mask
    )
    assert loss.item() == pytest.approx((-math.exp(0.5) + 0.5 - 1 + 1) / 3)


# ---------------------------------------------------------------------------------------------------
# Invariances.


def _grad(alg, logp, old, advantages, mask):
    leaf = torch.where(mask, logp, 0.0).clone().requires_grad_(True)
    loss, _ = alg.policy_loss(leaf, old, advantages, mask)
    loss.backward()
    return loss.detach(), leaf.grad


@pytest.mark.parametrize("name", ZOO)
def test_padding_changes_nothing(name):
    overrides = {"dr-grpo": {"max_tokens_norm": 12}, "clip-cov": {"selection_seed": 0}}.get(name, {})
    # (clip-cov: the same draw in both calls, whatever torch's global generator did before this test)
    logp, old, advantages, mask = zoo_batch(4, adv_scale=3.0)
    rewards = advantages.sign()
    groups = torch.arange(len(rewards)) // 3
    loss, metrics = get_algorithm(name, **overrides).policy_loss(logp, old, advantages, mask)
    adv = get_algorithm(name, **overrides).advantages(rewards, groups, mask=mask)

    def pad(tensor, value):  # 5 more padded positions and one fully padded response
        wider = torch.nn.functional.pad(tensor, (0, 5), value=value) if tensor.dim() == 2 else tensor
        return torch.cat([wider, torch.full_like(wider[:1], value)])

    padded_loss, padded_metrics = get_algorithm(name, **overrides).policy_loss(
        pad(logp, float("nan")), pad(old, float("inf")), pad(advantages, float("nan")), pad(mask, False)
    )
    assert padded_loss.item() == pytest.approx(loss.item(), rel=1e-12, abs=1e-12)
    for key, value in metrics.items():
        assert padded_metrics[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    padded_adv = get_algorithm(name, **overrides).advantages(
        torch.cat([rewards, rewards.new_ones(1)]),
        torch.cat([groups, groups.new_tensor([99])]),
        mask=pad(mask, False),
    )
    if adv.dim() == 2:
        torch.testing.assert_close(padded_adv[:-1, : mask.shape[1]], adv)
    elif name != "gpg":  # GPG's alpha counts samples: the extra lone one is in M (B / (B - M) grows)
        torch.testing.assert_close(padded_adv[:-1], adv)


@pytest.mark.parametrize("name", ["rloo", "dr-grpo", "opo", "gpg", "reinforce++-baseline"])
def test_shifting_a_groups_rewards_leaves_group_baselined_advantages_unchanged(name):
    rewards, group_ids, mask, _ = estimator_case(5)
    shifted = torch.where(group_ids == group_ids[3], rewards + 7.25, rewards)
    alg = get_algorithm(name)
    torch.testing.assert_close(
        alg.advantages(shifted, group_ids, mask=mask), alg.advantages(rewards, group_ids, mask=mask)
    )


def test_gspo_on_single_token_responses_is_ppo_with_its_clip():
    g = torch.Generator().manual_seed(6)
    old = -torch.rand(9, 1, generator=g, dtype=torch.float64)
    logp = (
        old
        + torch.tensor([-0.3, -1e-4, -2e-4, -3.5e-4, 0.0, 2e-4, 3.9e-4, 4.1e-4, 0.3], dtype=torch.float64)[
            :, None
        ]
    )
    mask = torch.ones(9, 1, dtype=torch.bool)
    grpo = get_algorithm("grpo", clip_low=3e-4, clip_high=4e-4, kl_coef=0.0)
    for advantages in (torch.ones(9, dtype=torch.float64), -torch.ones(9, dtype=torch.float64)):
        gspo_loss, gspo_grad = _grad(get_algorithm("gspo"), logp, old, advantages, mask)
        ppo_loss, ppo_grad = _grad(grpo, logp, old, advantages, mask)
        torch.testing.assert_close(gspo_loss, ppo_loss)
        torch.testing.assert_close(gspo_grad, ppo_grad)
        assert (gspo_grad == 0).any() and (gspo_grad != 0).any()  # both sides of the clip


@pytest.mark.parametrize(
    ("name", "loss_agg"),
    [
        ("cispo", "token-mean"),
        ("sapo", "seq-mean-token-mean"),
        ("gmpo", "seq-mean-token-mean"),
        ("gspo", "seq-mean-token-mean"),
        ("gpg", "token-mean"),
        ("kl-cov", "token-mean"),
    ],
)
def test_on_policy_every_ratio_loss_has_the_policy_gradient(name, loss_agg):
    """logp == old_logp (the first update after a rollout): the gradient is the plain policy gradient
    -A grad(logp) under the algorithm's aggregation, as GRPO's with its clip inactive."""
    logp, _, advantages, mask = zoo_batch(7, spikes=False)
    logp = torch.where(mask, logp, 0.0)
    _, grad = _grad(get_algorithm(name), logp, logp, advantages, mask)
    _, expected = _grad(get_algorithm("grpo", kl_coef=0.0, loss_agg=loss_agg), logp, logp, advantages, mask)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-14)


def test_cispo_gradient_flows_through_every_token_with_the_clipped_weight():
    logp, old, advantages, mask = zoo_batch(8)
    logp = torch.where(mask, logp, 0.0)
    cispo = get_algorithm("cispo", clip_low=0.2, clip_high=0.2)
    _, grad = _grad(cispo, logp, old, advantages, mask)
    weight = torch.exp((logp - old).clamp(-20, 20)).clamp(0.8, 1.2)
    expected = torch.where(mask, -weight * advantages[:, None] / mask.sum(), 0.0)
    torch.testing.assert_close(grad, expected)
    assert (grad[mask & (advantages[:, None] != 0)] != 0).all()  # clipped tokens still learn


def test_dr_grpo_divides_by_one_constant_and_verls_sum_is_a_multiple():
    logp, old, advantages, mask = zoo_batch(9)
    base = get_algorithm("dr-grpo", max_tokens_norm=20)
    summed = get_algorithm("dr-grpo", loss_agg="seq-mean-token-sum")
    loss, grad = _grad(base, logp, old, advantages, mask)
    sum_loss, sum_grad = _grad(summed, logp, old, advantages, mask)
    torch.testing.assert_close(loss * 20, sum_loss)
    torch.testing.assert_close(grad * 20, sum_grad)
    # Without a constant the divisor is the padded width.
    width_loss, _ = _grad(get_algorithm("dr-grpo"), logp, old, advantages, mask)
    torch.testing.assert_close(width_loss * mask.shape[1], sum_loss)


def test_reinforce_plus_plus_whitening_has_zero_mean_and_unit_std_over_tokens():
    rewards, group_ids, mask, _ = estimator_case(10)
    for name in ("reinforce++", "reinforce++-baseline"):
        adv = get_algorithm(name).advantages(rewards, group_ids, mask=mask)[mask]
        assert adv.mean().item() == pytest.approx(0.0, abs=1e-12)
        assert adv.pow(2).mean().item() == pytest.approx(1.0, rel=1e-6)
    constant = get_algorithm("reinforce++").advantages(rewards, group_ids, mask=mask)
    assert (torch.where(mask, constant - constant[:, :1], 0.0) == 0).all()  # gamma = 1: one value a row


@pytest.mark.parametrize("name", ["gspo", "sapo", "gmpo", "kl-cov", "dr-grpo", "gpg", "cispo"])
def test_gradcheck_float64(name):
    g = torch.Generator().manual_seed(11)
    old = -torch.rand(3, 5, generator=g, dtype=torch.float64) - 0.5
    step = 1e-4 if name == "gspo" else 0.1  # GSPO: inside its narrow clip band
    logp = (old + step * torch.randn(3, 5, generator=g, dtype=torch.float64)).requires_grad_(True)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    advantages = torch.tensor([1.5, -0.7, 0.4], dtype=torch.float64)
    alg = get_algorithm(name, **({"cov_ratio": 0.2} if name == "kl-cov" else {}))
    if name == "cispo":  # the weight is a constant by design: check against the loss with it frozen
        weight = torch.exp(logp.detach() - old).clamp(0.0, 1.2)
        reference = lambda x: ops.aggregate(-weight * advantages[:, None] * x, mask, "token-mean")  # noqa: E731
        assert torch.autograd.gradcheck(reference, (logp,))
        torch.testing.assert_close(
            torch.autograd.grad(alg.policy_loss(logp, old, advantages, mask)[0], logp)[0],
            torch.autograd.grad(reference(logp), logp)[0],
        )
        return
    assert torch.autograd.gradcheck(lambda x: alg.policy_loss(x, old, advantages, mask)[0], (logp,))


# ---------------------------------------------------------------------------------------------------
# Clip-Cov's random draw.


def test_clip_cov_default_draw_is_the_reference_draw_from_torchs_global_generator():
    # The 7B recipe (1 token of 32 detached) on 4 x 8 tokens with log-ratios spread over [-3, 3]: several
    # tokens are candidates, so which one is detached depends on the draw. The reference (verl) takes
    # torch.randperm of the row-major candidates from torch's global generator, right after the caller's
    # torch.manual_seed: the default does the same (an own generator seeded 0 did not, for seeds != 0).
    g = torch.Generator().manual_seed(7)
    logp = -torch.rand(4, 8, generator=g, dtype=torch.float64) * 3
    old = logp - (torch.rand(4, 8, generator=g, dtype=torch.float64) * 6 - 3)
    advantages = torch.tensor([2.5, -1.5, 1.0, -2.0], dtype=torch.float64)
    mask = torch.ones(4, 8, dtype=torch.bool)
    candidates = naive_clip_cov_candidates(get_algorithm("clip-cov"), rows_of(logp, old, advantages, mask))
    assert len(candidates) >= 3
    chosen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        token_loss, _, metrics = get_algorithm("clip-cov").token_loss(logp, old, advantages, mask)
        torch.manual_seed(seed)
        expected = candidates[int(torch.randperm(len(candidates))[0])]
        assert (token_loss == 0).nonzero().tolist() == [list(expected)], seed
        assert metrics["cov_detached_frac"] == 1 / 32
        chosen.add(expected)
    assert len(chosen) > 1  # the seed decides


def test_clip_cov_draw_is_seeded_per_instance_and_equals_the_global_generators():
    logp, old, advantages, mask = zoo_batch(12, adv_scale=3.0)
    settings = {"cov_ratio": 0.1, "clip_low": 0.2, "clip_high": 0.2}

    def detached(alg):
        token_loss, _, _ = alg.token_loss(logp, old, advantages, mask)
        return (token_loss == 0) & mask & (advantages[:, None] != 0)

    first = detached(get_algorithm("clip-cov", selection_seed=3, **settings))
    assert first.any()
    assert torch.equal(detached(get_algorithm("clip-cov", selection_seed=3, **settings)), first)
    alg = get_algorithm("clip-cov", selection_seed=3, **settings)
    detached(alg)
    copy = pickle.loads(pickle.dumps(alg))  # the generator's state travels with the instance
    assert torch.equal(detached(copy), detached(alg))
    # selection_seed None draws from torch's global generator, as the reference code: the same draw.
    torch.manual_seed(3)
    assert torch.equal(detached(get_algorithm("clip-cov", selection_seed=None, **settings)), first)
    others = [detached(get_algorithm("clip-cov", selection_seed=s, **settings)) for s in range(4, 10)]
    assert any(not torch.equal(o, first) for o in others)  # the draw is random
    assert all(o.sum() == first.sum() for o in others)  # of a fixed size


# ---------------------------------------------------------------------------------------------------
# The contract.


def test_estimators_that_need_the_mask_say_so():
    rewards, groups = torch.tensor([1.0, 0.0]), torch.tensor([0, 0])
    for name in ("reinforce++", "reinforce++-baseline", "opo"):
        with pytest.raises(ValueError, match=re.escape(f"{name}.advantages needs the response mask")):
            get_algorithm(name).advantages(rewards, groups)
    with pytest.raises(ValueError, match=r"DrGRPO.lone_baseline: expected one of 'own', 'zero', got 'self'"):
        get_algorithm("dr-grpo").__class__(lone_baseline="self")


@pytest.mark.parametrize("name", ZOO)
def test_token_loss_contract_dtypes_and_empty_batches(name):
    logp, old, advantages, mask = zoo_batch(13)
    alg = get_algorithm(name)
    torch.manual_seed(GLOBAL_SEED)  # the same draw in both calls (Clip-Cov's, from the global generator)
    token_loss, loss_mask, metrics = alg.token_loss(logp, old, advantages, mask)
    assert token_loss.dtype == torch.float64 and loss_mask.dtype == torch.float32
    assert torch.isfinite(token_loss).all() and torch.equal(token_loss, token_loss * loss_mask)
    assert all(value.dim() == 0 for value in metrics.values())
    torch.manual_seed(GLOBAL_SEED)
    loss, _ = get_algorithm(name).policy_loss(logp, old, advantages, mask)
    torch.testing.assert_close(loss, ops.aggregate(token_loss, loss_mask, alg.loss_agg, alg.num_tokens_norm))
    low = get_algorithm(name).policy_loss(logp.bfloat16(), old.bfloat16(), advantages.bfloat16(), mask)[0]
    assert low.dtype == torch.float32
    for shape in ((2, 0), (0, 5), (3, 4)):
        empty = torch.zeros(shape, requires_grad=True)
        loss, metrics = get_algorithm(name).policy_loss(
            empty, torch.zeros(shape), torch.ones(shape[0]), torch.zeros(shape, dtype=torch.bool)
        )
        assert loss.item() == 0.0 and all(value == 0.0 for value in metrics.values())
        loss.backward()


def test_local_trainer_hands_the_mask_to_the_estimator_and_keeps_per_token_advantages():
    """The local backend's score and advantage phases (no model needed): alg.advantages gets the response
    mask, and per-token advantages follow the rows when a sub-batch is trimmed to its longest response."""
    from fipo_bench.backends.local.trainer import Group, LocalTrainer
    from fipo_bench.config import build_config

    trainer = LocalTrainer.__new__(LocalTrainer)  # only what score and estimate_advantages read
    trainer.cfg = build_config(
        "tiny", options={"algos": "reinforce++"}, sets=["recompute_old_logp=false", "samples_per_prompt=2"]
    )
    trainer.alg = get_algorithm("reinforce++", gamma=0.5)
    trainer.pad_id, trainer.device, trainer.critic = 0, torch.device("cpu"), None

    def group(lengths, correct):
        width = max(lengths)
        mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).float()
        return Group(prompt_ids=torch.ones(2, 3, dtype=torch.long), prompt_mask=torch.ones(2, 3),
                     response_ids=torch.ones(2, width, dtype=torch.long), mask=mask, logp=-mask,
                     correct=torch.tensor(correct), lengths=torch.tensor(lengths))

    rollout = trainer.score([group([3, 1], [True, False]), group([2, 5], [False, True])])
    trainer.estimate_advantages(rollout)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
    expected = trainer.alg.advantages(torch.tensor([1.0, -1, -1, 1]), torch.tensor([0, 0, 1, 1]), mask=mask)
    torch.testing.assert_close(rollout.advantages, expected)
    part = rollout.rows(torch.tensor([0, 2]))
    assert part.advantages.shape == part.mask.shape == (2, 3)
    torch.testing.assert_close(part.advantages, expected[[0, 2], :3])
