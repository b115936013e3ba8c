"""Every registered algorithm's advantages, shaped rewards, token losses, loss and metrics on fixed
random float64 inputs, written to a file, so that two revisions can be compared exactly (a refactor of
the algorithm layer must change no number).

    python benchmarks/algorithm_outputs.py OUT.pt                 # in each checkout (its own venv)
    python benchmarks/algorithm_outputs.py --diff BEFORE.pt AFTER.pt

Hyperparameters are compared too, under their current names (RENAMED maps the old ones).
"""

from __future__ import annotations

import argparse
import sys

import torch

RENAMED = {"decay_rate": "half_life"}  # FIPO's Future-KL half-life, renamed after 0.1.0: written out, not
# read from FIPO.renamed_hyperparameters, because a checkout from before the rename lacks that attribute


def outputs() -> dict[str, tuple]:
    from fipo_bench.algorithms import get_algorithm, list_algorithms

    n, t = 12, 40
    generator = torch.Generator().manual_seed(1)
    rewards = torch.randint(0, 2, (n,), generator=generator).float()
    groups = torch.arange(n) // 4
    lengths = torch.randint(5, t + 1, (n,), generator=generator)
    mask = (torch.arange(t)[None] < lengths[:, None]).float()
    old_logp = -torch.rand(n, t, generator=generator, dtype=torch.float64) * 3
    logp = old_logp + torch.randn(n, t, generator=generator, dtype=torch.float64) * 0.5
    ref_logp = old_logp + torch.randn(n, t, generator=generator, dtype=torch.float64) * 0.2
    values = torch.rand(n, t, generator=generator, dtype=torch.float64)  # a critic's, for those with one
    results = {}
    for name in list_algorithms():
        if name.startswith("test-"):  # registered by the test suite
            continue
        settings = {"selection_seed": 3} if name == "clip-cov" else {}  # clip-cov's random draw
        if "overlong_buffer" in get_algorithm(name).hyperparameters():
            settings["overlong_buffer"] = 16  # shorter than these responses' maximum length
        algorithm = get_algorithm(name, **settings)
        if algorithm.needs_critic:  # advantages from the critic's values; its returns and loss too
            advantages, returns, _ = algorithm.critic_rollout(rewards.double(), values, mask.bool())
            value_loss, _ = algorithm.value_loss(values + 0.1, values, returns, mask.bool())
            critic = (returns.tolist(), value_loss.item())
        else:
            advantages, critic = algorithm.advantages(rewards, groups, mask=mask).double(), ()
        ref = ref_logp if algorithm.needs_reference else None
        token_loss, loss_mask, _ = algorithm.token_loss(logp, old_logp, advantages, mask, ref)
        correct = {"correct": rewards > 0} if algorithm.needs_correctness else {}  # VAPO's LM loss
        loss, metrics = algorithm.policy_loss(logp, old_logp, advantages, mask, ref, **correct)
        hyperparameters = {RENAMED.get(k, k): v for k, v in algorithm.hyperparameters().items()}
        results[name] = (
            advantages.tolist(), algorithm.shape_rewards(rewards, lengths, t).tolist(), token_loss.tolist(),
            loss_mask.tolist(), loss.item(), sorted(metrics.items()), sorted(hyperparameters.items()),
            *critic,
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?")
    parser.add_argument("--diff", nargs=2, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.diff:
        before, after = (torch.load(path) for path in args.diff)
        changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
        print(f"{len(before)} algorithms before, {len(after)} after; differing: {changed or 'none'}")
        return 1 if changed else 0
    if args.out is None:
        parser.error("give an output file or --diff BEFORE AFTER")
    results = outputs()
    torch.save(results, args.out)
    print(f"{len(results)} algorithms written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
