"""GAE speed, measured side by side in one run (a script, not a test):

- ours: `PPO.gae` / `VAPO.gae` (advantages and returns; `ops.linear_reverse_scan`, a log-depth scan,
  one lambda per response for VAPO);
- loop: GAE as verl's `compute_gae_advantage_return` computes it, one Python step per token over the
  batch's columns (re-implemented here, returns included), with one lambda for all rows.

    python benchmarks/bench_gae.py [--threads 1] [--batch 64] [--lengths 1024,4096,16384]

Prints the time of each and the ratio loop / ours, and checks both give the same advantages (the
constant-lambda case). Timings are minima over interleaved repeats, so a busy machine inflates them less
and alike.
"""

from __future__ import annotations

import argparse
import time

import torch

from fipo_bench.algorithms import get_algorithm
from fipo_bench.algorithms.ppo import last_token_rewards


def loop_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """verl's token loop (skipping masked-out tokens as it does): -> (advantages, returns) [N, T]."""
    token_rewards = last_token_rewards(rewards, mask)
    mask = mask.to(values.dtype)
    next_values = torch.zeros_like(values[:, 0])
    last = torch.zeros_like(values[:, 0])
    out = []
    for t in reversed(range(values.shape[1])):
        delta = token_rewards[:, t] + gamma * next_values - values[:, t]
        running = delta + gamma * lam * last
        next_values = values[:, t] * mask[:, t] + (1 - mask[:, t]) * next_values
        last = running * mask[:, t] + (1 - mask[:, t]) * last
        out.append(last)
    advantages = torch.stack(out[::-1], dim=1)
    return advantages, advantages + values


def seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lengths", default="1024,4096,16384")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ppo, vapo = get_algorithm("ppo", lam_actor=0.95, lam_critic=1.0), get_algorithm("vapo")
    print(f"GAE, {args.batch} responses, float32, {args.threads} thread(s); min of {args.repeats} repeats")
    print(f"{'T':>7} {'loop (s)':>10} {'ppo (s)':>10} {'vapo (s)':>10} {'loop/ppo':>9} {'max |diff|':>11}")
    for length in map(int, args.lengths.split(",")):
        g = torch.Generator().manual_seed(length)
        lengths = torch.randint(length // 4, length + 1, (args.batch,), generator=g)
        mask = torch.arange(length)[None, :] < lengths[:, None]
        values = torch.randn(args.batch, length, generator=g)
        rewards = torch.randint(0, 2, (args.batch,), generator=g).float()
        ours, _ = ppo.gae(rewards, values, mask)
        reference, _ = loop_gae(rewards, torch.where(mask, values, 0.0), mask, 1.0, 0.95)
        diff = (ours - reference)[mask].abs().max().item()
        inputs = (rewards, values, mask)
        timings = {"loop": [], "ppo": [], "vapo": []}
        for _ in range(args.repeats):  # interleaved, so load changes hit all three alike
            timings["loop"].append(seconds(loop_gae, *inputs, 1.0, 0.95))
            timings["ppo"].append(seconds(ppo.gae, *inputs))
            timings["vapo"].append(seconds(vapo.gae, *inputs))
        loop_s, ppo_s, vapo_s = (min(timings[k]) for k in ("loop", "ppo", "vapo"))
        print(f"{length:>7} {loop_s:>10.4f} {ppo_s:>10.4f} {vapo_s:>10.4f} {loop_s / ppo_s:>8.1f}x "
              f"{diff:>11.2e}")


if __name__ == "__main__":
    main()
