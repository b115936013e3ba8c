"""What the critic costs in the local trainer: time per step and memory of ppo (a critic) vs grpo (none).

    python benchmarks/bench_critic.py [--steps 3] [--preset tiny] [--set field=value ...]

Both algorithms train `--steps` steps from the same base checkpoint in this process, one torch thread (as
a matrix run), alternating so that a machine's changing load hits both alike. Printed per algorithm: the
mean step time, the share of it the critic took (its values pass on the rollout and its updates:
`critic_time_s`), the time of one value-pretraining step, and the memory the critic adds: its weights,
gradients and AdamW moments (exact, from the tensors), and on CUDA the peak allocated memory.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fipo_bench.algorithms import get_algorithm
from fipo_bench.backends.local.trainer import LocalTrainer
from fipo_bench.config import build_config
from fipo_bench.tasks import load_task, prepare_base


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def model_state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Weights + gradients (one per weight) + the optimizer's state tensors."""
    params = list(model.parameters())
    moments = [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
    return 2 * tensor_bytes(params) + tensor_bytes(moments)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--set", action="append", default=[], dest="sets")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = build_config(args.preset, options={"algos": "grpo,ppo", "num_steps": args.steps}, sets=args.sets)
    base, task = prepare_base(cfg), load_task(cfg)
    trainers = {}
    for algo in ("grpo", "ppo"):
        alg = get_algorithm(algo, **cfg.algo_overrides.get(algo, {}))
        trainers[algo] = LocalTrainer(cfg, alg, 0, base, task)
    start = time.perf_counter()
    trainers["ppo"].alg = get_algorithm("ppo", value_pretrain_steps=1)
    trainers["ppo"].pretrain_critic()
    pretrain_s = time.perf_counter() - start
    trainers["ppo"].alg = get_algorithm("ppo", **cfg.algo_overrides.get("ppo", {}))
    rows: dict[str, list[dict]] = {algo: [] for algo in trainers}
    for step in range(1, args.steps + 1):
        for algo, trainer in trainers.items():
            if trainer.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            row = trainer.train_step(step)
            if trainer.device.type == "cuda":
                row["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
            rows[algo].append(row)
    device = trainers["grpo"].device
    print(f"{args.preset} preset, {args.steps} steps, device {device}, 1 torch thread")
    for algo, trainer in trainers.items():
        step_s = statistics.mean(r["step_time_s"] for r in rows[algo])
        line = f"{algo:5s} step {step_s:.3f} s"
        if trainer.critic is not None:
            critic_s = statistics.mean(r["critic_time_s"] for r in rows[algo])
            line += f" (critic {critic_s:.3f} s = {critic_s / step_s:.0%})"
            line += f"; one value-pretraining step {pretrain_s:.3f} s"
        if "peak_mb" in rows[algo][-1]:
            line += f"; peak CUDA memory {max(r['peak_mb'] for r in rows[algo]):.0f} MB"
        print(line)
    policy = model_state_bytes(trainers["ppo"].model, trainers["ppo"].optimizer)
    critic = model_state_bytes(trainers["ppo"].critic, trainers["ppo"].critic_optimizer)
    mean_step = {algo: statistics.mean(r["step_time_s"] for r in rows[algo]) for algo in rows}
    print(f"ppo / grpo step time: {mean_step['ppo'] / mean_step['grpo']:.2f}x")
    print(f"policy weights+grads+AdamW {policy / 2**20:.2f} MB; the critic adds {critic / 2**20:.2f} MB "
          f"({critic / policy:.2f}x the policy's)")


if __name__ == "__main__":
    main()
