"""How far the sampler's log-probs are from the training forward's, in float32 and under bf16 autocast.

With recompute_old_logp=false the trainer uses the sampler's log-probs as old_logp, so on the first
update logp - old_logp is this gap instead of 0, and FIPO sums it into Future-KL over the following
tokens (half-life 32). One rollout batch of the tiny preset (16 prompts x 8 samples, its base model) is
sampled with the trainer's own `generate` and recomputed with its own old-log-prob pass, under each
dtype; printed: the gap per token, each side's distance from an exact float32 forward, and the FIPO
weights exp(Future-KL) that the gap alone gives on the first update (FIPO's default hyperparameters,
positive advantages), which would be exactly 1 with recomputation.

    OMP_NUM_THREADS=1 python benchmarks/logp_gap.py [--base DIR] [--batches 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def rollout_logp(base: Path, dtype: str, step: int):
    """(mask, sampler logp, recomputed logp, exact float32 logp) of one rollout batch."""
    from fipo_bench.algorithms import get_algorithm
    from fipo_bench.backends.local.trainer import LocalTrainer, Rollout
    from fipo_bench.config import build_config
    from fipo_bench.sampling import left_pad
    from fipo_bench.tasks import TaskData
    from fipo_bench.tiny import TinyTask

    cfg = build_config("tiny", options={"algos": "dapo"}, sets=[f"dtype={dtype}", "device=cpu"])
    task = TinyTask()
    problems = task.train_problems(cfg.rollout_batch_size * (step + 1))
    data = TaskData(train=problems, evals={}, prompt_text=lambda t: t, check=lambda r, g: [])
    trainer = LocalTrainer(cfg, get_algorithm("dapo"), 0, base, data)
    batch = problems[step * cfg.rollout_batch_size:(step + 1) * cfg.rollout_batch_size]
    prompts = [trainer.encode_prompt(p.problem) for p in batch for _ in range(cfg.samples_per_prompt)]
    (s,), _ = trainer.generate(prompts, max_new_tokens=cfg.max_response_length, temperature=cfg.temperature,
                               top_p=cfg.top_p, generator=trainer._generator("gap", step), chunk=len(prompts))
    prompt_ids, prompt_mask = left_pad(prompts, trainer.pad_id)
    rollout = Rollout(prompt_ids, prompt_mask, s.tokens, s.mask, s.logp, torch.zeros(len(prompts)),
                      torch.arange(len(prompts)) // cfg.samples_per_prompt)
    recomputed = trainer._forward_logp(trainer.model, rollout)
    trainer.autocast_dtype = None
    exact = trainer._forward_logp(trainer.model, rollout)
    return s.mask, s.logp, recomputed, exact


def describe(name: str, values: torch.Tensor, mask: torch.Tensor) -> str:
    v = values[mask.bool()].abs()
    return f"{name:34} mean |.| {v.mean():.2e}   p99 {v.quantile(0.99):.2e}   max {v.max():.2e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=None, help="HF checkpoint directory (default: the tiny base model)")
    parser.add_argument("--batches", type=int, default=2, help="rollout batches per dtype")
    args = parser.parse_args()

    from fipo_bench.algorithms import get_algorithm
    from fipo_bench.algorithms.fipo import influence_weights
    from fipo_bench.tiny import ensure_base_checkpoint

    base = Path(args.base) if args.base else ensure_base_checkpoint()
    fipo = get_algorithm("fipo")
    for dtype in ("float32", "bfloat16"):
        parts = [rollout_logp(base, dtype, step) for step in range(args.batches)]
        width = max(p[0].shape[1] for p in parts)
        mask, sampled, recomputed, exact = (
            torch.cat([torch.nn.functional.pad(p[i], (0, width - p[i].shape[1])) for p in parts])
            for i in range(4))
        gap = recomputed - sampled
        print(f"{dtype}: {int(mask.sum())} tokens in {mask.shape[0]} responses")
        print(describe("  training forward - sampler", gap, mask))
        print(describe("  sampler - exact float32", sampled - exact, mask))
        print(describe("  training forward - exact float32", recomputed - exact, mask))
        weights = influence_weights(
            gap.clamp(-20, 20), torch.ones_like(gap), mask.bool(), half_life=fipo.half_life,
            ratio_cap=fipo.dual_clip, weight_low=fipo.weight_low, weight_high=fipo.weight_high,
            safety_threshold=fipo.safety_threshold, mask_negative_only=fipo.mask_negative_only,
            safety_resets_weight=fipo.safety_resets_weight).influence_weight[mask.bool()]
        print(f"  FIPO first-update weight from the gap alone: mean {weights.mean():.4f}, "
              f"max {weights.max():.4f}, {(weights > 1.01).float().mean():.1%} of tokens > 1.01 "
              "(all 1 with recomputation)")


if __name__ == "__main__":
    main()
