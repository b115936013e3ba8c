"""Future-KL speed, measured side by side in one run (a script, not a test):

- ours: `fipo_bench.ops.discounted_reverse_cumsum`, the linear chunked scan FIPO uses;
- quadratic: the reference implementation's formulation, F = x @ D^T with D[t, k] = gamma^(k - t),
  computed in blocks of 1024 rows (re-implemented here; its decay blocks are built per call, as there);
- floor: a plain reverse cumsum of the same tensor (flip, cumsum, flip), the memory-bound lower bound;
- and FIPO's whole policy_loss against DAPO's (forward, and forward + backward).

    python benchmarks/bench_future_kl.py [--threads 1] [--batch 4] [--clock wall|cpu]

Targets (issue 2): >= 500x faster than quadratic at T = 20480, within 5x of the floor, FIPO loss <= 1.5x DAPO.
Timings are minima over interleaved repeats, so a busy machine inflates them less and alike.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from fipo_bench import ops
from fipo_bench.algorithms import get_algorithm

LENGTHS = (1024, 4096, 16384, 20480)
GAMMA = 2.0 ** (-1.0 / 32.0)  # FIPO's half_life 32


def quadratic_future_kl(values: torch.Tensor, gamma: float, block: int = 1024) -> torch.Tensor:
    """O(T^2): each block of output positions t is values[:, t0:] @ (gamma^(k - t) for k >= t)^T."""
    length = values.shape[-1]
    positions = torch.arange(length, dtype=values.dtype, device=values.device)
    out = torch.empty_like(values)
    for start in range(0, length, block):
        stop = min(start + block, length)
        lag = positions[None, start:] - positions[start:stop, None]  # [b, T - t0]: k - t
        decay = torch.where(lag >= 0, torch.exp(lag.clamp_min(0) * math.log(gamma)), 0.0)
        out[:, start:stop] = values[:, start:] @ decay.T
    return out


def reverse_cumsum(values: torch.Tensor) -> torch.Tensor:
    return values.flip(-1).cumsum(-1).flip(-1)


def best_times(fns: dict, repeats: int, clock=time.perf_counter, min_seconds: float = 0.05) -> dict:
    """Minimum seconds per call of each function; rounds alternate between them, so a busy machine slows
    all of them alike."""
    calls, best = {}, {}
    for name, fn in fns.items():
        start = clock()
        fn()  # also the warm-up
        best[name] = clock() - start
        calls[name] = max(1, int(min_seconds / max(best[name], 1e-7)))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            for _ in range(calls[name]):
                fn()
            best[name] = min(best[name], (clock() - start) / calls[name])
    return best


def loss_inputs(batch: int, length: int):
    g = torch.Generator().manual_seed(length)
    old_logp = -torch.rand(batch, length, generator=g) * 3
    logp = (old_logp + torch.randn(batch, length, generator=g) * 0.3).requires_grad_(True)
    advantages = torch.randn(batch, generator=g)
    mask = torch.arange(length)[None, :] < torch.randint(length // 2, length + 1, (batch, 1), generator=g)
    return logp, old_logp, advantages, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: this thread's CPU time (with --threads 1, other processes on a busy "
                             "machine then distort it less)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    fipo, dapo = get_algorithm("fipo"), get_algorithm("dapo")

    header = (f"{'T':>6} | {'ours ms':>8} {'quadratic ms':>12} {'floor ms':>8} | {'quad/ours':>9} "
              f"{'ours/floor':>10} {'max rel err':>11} | {'FIPO/DAPO fwd':>13} {'fwd+bwd':>8}")
    print(f"B = {args.batch}, float32, half_life 32, torch {torch.__version__}, {args.threads} thread(s), "
          f"{args.clock} clock")
    print(header)
    print("-" * len(header))
    for length in LENGTHS:
        x = torch.randn(args.batch, length, generator=torch.Generator().manual_seed(0)) * 0.3
        scan = best_times({"ours": lambda x=x: ops.discounted_reverse_cumsum(x, GAMMA),
                           "floor": lambda x=x: reverse_cumsum(x)}, repeats=20, clock=clock)
        ours, floor = scan["ours"], scan["floor"]
        quadratic = best_times({"q": lambda x=x: quadratic_future_kl(x, GAMMA)}, 0, clock)["q"]  # one call
        reference = quadratic_future_kl(x, GAMMA)
        error = (ops.discounted_reverse_cumsum(x, GAMMA) - reference).abs().max() / reference.abs().max()

        logp, old_logp, advantages, mask = loss_inputs(args.batch, length)

        def forward(alg, logp=logp, old_logp=old_logp, advantages=advantages, mask=mask):
            with torch.no_grad():
                alg.policy_loss(logp, old_logp, advantages, mask)

        def forward_backward(alg, logp=logp, old_logp=old_logp, advantages=advantages, mask=mask):
            loss, _ = alg.policy_loss(logp, old_logp, advantages, mask)
            loss.backward()

        losses = best_times({"fipo": lambda: forward(fipo), "dapo": lambda: forward(dapo),
                             "fipo_both": lambda: forward_backward(fipo),
                             "dapo_both": lambda: forward_backward(dapo)}, repeats=10, clock=clock)
        fipo_fwd, dapo_fwd = losses["fipo"], losses["dapo"]
        fipo_both, dapo_both = losses["fipo_both"], losses["dapo_both"]
        print(f"{length:>6} | {ours * 1e3:>8.3f} {quadratic * 1e3:>12.2f} {floor * 1e3:>8.3f} | "
              f"{quadratic / ours:>8.0f}x {ours / floor:>9.2f}x {error.item():>11.1e} | "
              f"{fipo_fwd / dapo_fwd:>12.2f}x {fipo_both / dapo_both:>7.2f}x")


if __name__ == "__main__":
    main()
