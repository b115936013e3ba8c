"""Throughput of fipo-bench's local trainer vs Hugging Face TRL's GRPOTrainer, side by side in one run.

Three trainers on the same base model (the tiny preset's warmed-up checkpoint), task prompts, group size,
rollout batch, updates per rollout batch (2: the second is off-policy), max response length, sampling
(temperature 1, top-p 1), optimizer (AdamW, constant lr, no weight decay, grad clip 1) and loss
(DAPO's clip-higher token-mean surrogate: TRL loss_type="dapo", ours the "dapo" algorithm):

  ours, recompute   recompute_old_logp=true, the tiny preset's default ("equal work"): old_logp = the
                    sampling policy's log-probs under the training forward, as TRL's. The first update's
                    rows take them from that update's own forward (the policy has not moved yet: the same
                    values; TRL skips its pass the same way when every update is on-policy), so the no-grad
                    pass covers the later updates' rows only.
  ours, sampler     recompute_old_logp=false: old_logp = the sampler's own log-probs, no extra pass (equal
                    to the training forward's to float32 rounding on CPU; not under bf16: see
                    benchmarks/logp_gap.py and the tiny preset).
  TRL               GRPOTrainer recomputes them here: with 2 updates per generation batch
                    (steps_per_generation=2, gradient_accumulation_steps=1) its samples are off-policy from
                    the second update on, so `_generate_and_score_completions` runs a no-grad forward over
                    all samples (`old_per_token_logps`), in chunks of per_device_train_batch_size rows
                    padded to the batch's longest; HF `generate` returns no log-probs.

The recompute ratio is the like-for-like one (and what `fipo-bench run --preset tiny` does). The two runs of
ours alternate step by step, so machine load hits both alike; TRL runs after them.

What still differs, and how it is handled:
  - dual clip: our "dapo" caps the loss of negative advantages at -A * 10 (verl's recipe); TRL's "dapo" has
    no dual clip. Here ours runs with dual_clip=None, so both compute the same surrogate.
  - truncation rule: ours rewards a response cut at the length limit as incorrect (-1, DAPO's rule); TRL
    leaves rewards to the reward function, so TRL's reward here applies the same rule (last token not EOS ->
    -1). Both still train on truncated responses (TRL mask_truncated_completions=False, its default).
  - token-mean: ours averages over the tokens of each mini-batch; TRL's "dapo" divides by the generation
    batch's token count / steps_per_generation (the same on average, not per mini-batch). Same cost.
  - fused AdamW: TRL gets transformers' default optimizer, `adamw_torch_fused` (torch >= 2.8); ours is
    torch.optim.AdamW's default implementation (for-loop on CPU). On the 1.05M-parameter tiny model a step
    takes 6 ms vs 2 ms fused (measured on the CPU machine), i.e. ~8 ms of ours' "update" per batch.
  - extra work on each side: our sampler also computes every token's log-prob and entropy (in both our
    configurations); TRL's training forward also computes per-token entropy, and its logging/callback
    overhead is in its "update" phase. TRL runs with gradient checkpointing off (its default is on), as ours.
  - generation timer scope: "generation" times the sampling call only, on both sides: ours
    `fipo_bench.sampling.sample` (prefill + KV-cache decode; finished rows leave the batch), TRL
    `_generate_single_turn` (left-pad, HF `generate` with its KV cache over the whole batch until every row
    ends, EOS mask, token lists). Decoding to text and reward checking are in "other", on both sides.

Phases per rollout batch: generation; old-logp (ours `_forward_logp`, TRL's no-grad
`_get_per_token_logps_and_entropies`); update (ours `update`: forward/backward/optimizer of every
mini-batch; TRL: the step minus `_generate_and_score_completions`, i.e. its training steps with their
Trainer overhead); other (the rest of the step: decoding, rewards, advantages, batching). Times are
medians per rollout batch (after warm-up batches) in CPU seconds of this process (robust on a machine
shared with other jobs) and wall seconds; the ratios are step tokens/s, ours / TRL.

TRL is not a dependency of fipo-bench: run this from a separate environment with TRL installed (README,
"Benchmarks", has the lines; measured with TRL 1.16.0, transformers 5.24, torch 2.13 CPU).
On a machine shared with other jobs keep OMP_NUM_THREADS=1: two OpenMP threads on a core that is
also busy elsewhere spin and run several times slower, on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

PHASES = ("gen", "old_logp", "update", "other", "step")
SIDES = {"recompute": "ours, recompute", "sampler": "ours, sampler", "trl": "TRL"}


def build_problems(n: int):
    from fipo_bench.tiny import TinyTask

    return TinyTask().train_problems(n)


def clock() -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): CPU time is robust to other jobs on a shared machine."""
    return time.perf_counter(), time.process_time()


def elapsed(start: tuple[float, float], end: tuple[float, float] | None = None) -> tuple[float, float]:
    end = end or clock()
    return end[0] - start[0], end[1] - start[1]


class Phases:
    """Per-rollout-batch phase times; `timed(fn, phase)` wraps a function to add its time to the batch."""

    def __init__(self):
        self.batches: list[dict] = []

    def new_batch(self) -> dict:
        self.batches.append({"tokens": 0, **{p: (0.0, 0.0) for p in PHASES}})
        return self.batches[-1]

    def add(self, phase: str, seconds: tuple[float, float]) -> None:
        batch = self.batches[-1]
        batch[phase] = (batch[phase][0] + seconds[0], batch[phase][1] + seconds[1])

    def timed(self, fn, phase: str, when=lambda: True):
        def wrapper(*args, **kwargs):
            if not when():
                return fn(*args, **kwargs)
            start = clock()
            result = fn(*args, **kwargs)
            self.add(phase, elapsed(start))
            return result

        return wrapper


def ours_trainer(base: Path, problems, args, *, recompute: bool, phases: Phases):
    from fipo_bench.algorithms import get_algorithm
    from fipo_bench.backends.local.trainer import LocalTrainer
    from fipo_bench.config import build_config
    from fipo_bench.tasks import TaskData, Verdict
    from fipo_bench.tiny import TinyTask

    task = TinyTask()
    cfg = build_config("tiny", options={"algos": "dapo", "seeds": str(args.seed)}, sets=[
        f"rollout_batch_size={args.prompts}", f"samples_per_prompt={args.group}",
        f"mini_batch_size={args.prompts // args.updates}", f"max_response_length={args.max_new_tokens}",
        f"lr={args.lr}", "temperature=1.0", "top_p=1.0", "device=cpu", "weight_decay=0.0",
        f"recompute_old_logp={str(recompute).lower()}"])
    alg = get_algorithm("dapo", dynamic_sampling=False, overlong_buffer=None, dual_clip=None)

    def check(responses, golds):
        return [Verdict(c.verdict, c.extracted, c.correct) for c in map(task.check, responses, golds)]

    data = TaskData(train=problems, evals={}, prompt_text=lambda t: t, check=check)
    trainer = LocalTrainer(cfg, alg, args.seed, base, data)
    trainer._forward_logp = phases.timed(trainer._forward_logp, "old_logp")
    trainer.update = phases.timed(trainer.update, "update")
    return trainer


def run_ours(base: Path, problems, args) -> dict[str, list[dict]]:
    """Both configurations of ours, alternating step by step; {"recompute": batches, "sampler": batches}."""
    import fipo_bench.backends.local.trainer as local

    phases = {"recompute": Phases(), "sampler": Phases()}
    trainers = {name: ours_trainer(base, problems, args, recompute=name == "recompute", phases=phases[name])
                for name in phases}
    current: list[Phases] = []
    original_sample = local.sample

    def timed_sample(*a, **kw):
        start = clock()
        samples = original_sample(*a, **kw)
        current[-1].add("gen", elapsed(start))
        current[-1].batches[-1]["tokens"] += int(samples.lengths.sum())
        return samples

    local.sample = timed_sample
    rollouts = []

    def recording_forward_logp(model, rollout, rows=None, recompute=trainers["recompute"]._forward_logp):
        rollouts.append((rollout, rows))
        return recompute(model, rollout, rows)

    trainers["recompute"]._forward_logp = recording_forward_logp
    try:
        for step in range(1, args.warmup + args.batches + 1):
            for name, trainer in trainers.items():
                current[:] = [phases[name]]
                phases[name].new_batch()
                start = clock()
                trainer.train_step(step)
                phases[name].add("step", elapsed(start))
    finally:
        local.sample = original_sample
    batches = {name: p.batches[args.warmup:] for name, p in phases.items()}
    return batches, old_logp_pass_cost(trainers["recompute"], rollouts[args.warmup:])


def old_logp_pass_cost(trainer, rollouts) -> dict[str, float]:
    """Median CPU seconds per rollout batch of old-log-prob passes over the same rollouts, alternating: one
    padded pass over all rows (the trainer's pass before it shared the training forward's length buckets),
    the length-bucketed pass over all rows, and over the rows it now runs (the later updates' rows)."""
    import torch

    from fipo_bench.backends.local.trainer import response_logp

    forward_logp = type(trainer)._forward_logp  # not the timed wrapper
    times: dict[str, list[float]] = {"one_pass_all": [], "bucketed_all": [], "bucketed_later": []}
    for rollout, later_rows in rollouts:
        start = clock()
        with torch.no_grad():
            one_pass = response_logp(trainer.model, rollout.prompt_ids, rollout.prompt_mask,
                                     rollout.response_ids, rollout.mask, trainer.cfg.temperature)
        times["one_pass_all"].append(elapsed(start)[1])
        start = clock()
        bucketed = forward_logp(trainer, trainer.model, rollout)
        times["bucketed_all"].append(elapsed(start)[1])
        start = clock()
        forward_logp(trainer, trainer.model, rollout, later_rows)
        times["bucketed_later"].append(elapsed(start)[1])
        torch.testing.assert_close(bucketed, one_pass, atol=1e-5, rtol=1e-5)  # the same log-probs
    return {name: statistics.median(t) for name, t in times.items()}


def run_trl(base: Path, problems, args) -> list[dict]:
    try:
        import datasets
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
        from trl import GRPOConfig, GRPOTrainer
    except ImportError as e:
        raise SystemExit(f"TRL is not installed ({e}); see this script's docstring for its venv") from None
    from fipo_bench.tiny import TinyTask

    task = TinyTask()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base))
    rows = [{"prompt": p.problem, "answer": p.answer} for p in problems]
    eos = tokenizer.eos_token_id

    def reward(prompts, completions, answer, completion_ids, **_):
        # Our trainer's rule: a response cut at the length limit (no EOS) is not correct.
        return [1.0 if ids and ids[-1] == eos and task.check(c, a).correct else -1.0
                for c, a, ids in zip(completions, answer, completion_ids, strict=True)]

    samples = args.prompts * args.group
    phases = Phases()
    with tempfile.TemporaryDirectory() as tmp:
        config = GRPOConfig(
            output_dir=tmp, report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True,
            use_cpu=True, bf16=False,
            seed=args.seed, learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0,
            weight_decay=0.0, max_grad_norm=1.0, per_device_train_batch_size=samples // args.updates,
            gradient_accumulation_steps=1,
            steps_per_generation=args.updates, num_generations=args.group, num_iterations=1,
            max_completion_length=args.max_new_tokens, temperature=1.0, top_p=1.0, beta=0.0, epsilon=0.2,
            epsilon_high=0.28, loss_type="dapo", max_steps=(args.warmup + args.batches) * args.updates,
            num_completions_to_print=0, disable_dropout=True, dataloader_num_workers=0,
            gradient_checkpointing=False,  # TRL's default trades compute for memory; neither side needs it
        )
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config,
                              train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer)
        rollout_time: list[tuple[float, float]] = []
        generate_and_score = trainer._generate_and_score_completions

        def timed_generate_and_score(*a, **kw):
            start = clock()
            out = generate_and_score(*a, **kw)
            rollout_time.append(elapsed(start))
            phases.batches[-1]["tokens"] += int(out["completion_mask"].sum())
            return out

        trainer._generate_and_score_completions = timed_generate_and_score
        trainer._generate_single_turn = phases.timed(trainer._generate_single_turn, "gen")
        trainer._get_per_token_logps_and_entropies = phases.timed(
            trainer._get_per_token_logps_and_entropies, "old_logp", when=lambda: not torch.is_grad_enabled())
        starts: list[tuple[float, float]] = []

        class StepClock(TrainerCallback):
            """Rollout batch k spans optimizer steps k*updates+1 .. (k+1)*updates."""

            def on_step_begin(self, _args, state, *_, **__):
                if state.global_step % args.updates == 0:
                    phases.new_batch()
                    starts.append(clock())

            def on_step_end(self, _args, state, *_, **__):
                if state.global_step % args.updates == 0:
                    phases.add("step", elapsed(starts[-1]))

        trainer.add_callback(StepClock())
        trainer.train()
    assert len(rollout_time) == len(phases.batches), (len(rollout_time), len(phases.batches))
    for batch, rollout in zip(phases.batches, rollout_time, strict=True):
        batch["update"] = tuple(s - r for s, r in zip(batch["step"], rollout, strict=True))
    return phases.batches[args.warmup:]


def summarize(batches: list[dict]) -> dict:
    for b in batches:
        b["other"] = tuple(b["step"][i] - b["gen"][i] - b["old_logp"][i] - b["update"][i] for i in (0, 1))
    tokens = sum(b["tokens"] for b in batches)
    out = {"batches": len(batches), "tokens_per_batch": tokens / len(batches)}
    for kind, index in (("cpu", 1), ("wall", 0)):
        for phase in PHASES:
            out[f"{phase}_{kind}_s"] = statistics.median(b[phase][index] for b in batches)
        out[f"step_tokens_per_{kind}_s"] = tokens / sum(b["step"][index] for b in batches)
        out[f"gen_tokens_per_{kind}_s"] = tokens / sum(b["gen"][index] for b in batches)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=6, help="timed rollout batches per trainer")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rollout batches first")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--updates", type=int, default=2, help="optimizer steps per rollout batch")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None, help="where the tiny base checkpoint is cached")
    parser.add_argument("--sft-steps", type=int, default=None,
                        help="warm-up steps of the base model (default: the tiny preset's recipe)")
    parser.add_argument("--base", default=None, help="use this HF checkpoint directory as the base model")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args()

    import torch

    from fipo_bench.tiny import TinyRecipe, ensure_base_checkpoint

    if args.base:
        base = Path(args.base)
    else:
        recipe = TinyRecipe() if args.sft_steps is None else TinyRecipe(steps=args.sft_steps)
        base = ensure_base_checkpoint(recipe, args.cache_dir)
    problems = build_problems(args.prompts * (args.warmup + args.batches) * 4)
    print(f"model {base}; {args.prompts} prompts x {args.group} samples, {args.updates} updates per batch, "
          f"max {args.max_new_tokens} new tokens, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    ours, old_logp_cost = run_ours(base, problems, args)
    results = {**ours, "trl": run_trl(base, problems, args)}
    results = {side: summarize(batches) for side, batches in results.items()}
    print(f"load average {os.getloadavg()[0]:.1f}; medians per rollout batch over {args.batches} batches")
    print(f"{'':22}" + "".join(f"{SIDES[side]:>18}" for side in results))
    for kind in ("cpu", "wall"):
        for phase in PHASES:
            key = f"{phase}_{kind}_s"
            print(f"{key:22}" + "".join(f"{results[side][key]:18.3f}" for side in results))
    for key in ("tokens_per_batch", "gen_tokens_per_cpu_s", "step_tokens_per_cpu_s",
                "step_tokens_per_wall_s"):
        print(f"{key:22}" + "".join(f"{results[side][key]:18.0f}" for side in results))
    ratios = {}
    labels = {"recompute": "recompute_old_logp=true (equal work; the tiny preset's default)",
              "sampler": "recompute_old_logp=false (old_logp = the sampler's log-probs)"}
    for side, label in labels.items():
        for kind in ("cpu", "wall"):
            key = f"step_tokens_per_{kind}_s"
            ratios[f"{side}_{kind}"] = results[side][key] / results["trl"][key]
        print(f"ours/TRL step tokens/s, {label}: {ratios[side + '_cpu']:.2f} per CPU s, "
              f"{ratios[side + '_wall']:.2f} per wall s")
    cost = old_logp_cost
    print("ours' old-logp pass over the same rollouts, CPU s per batch:")
    for key, label in (("one_pass_all", "one padded pass, all rows (before)"),
                       ("bucketed_all", "length-bucketed, all rows"),
                       ("bucketed_later", "length-bucketed, later updates' rows (now)")):
        print(f"  {label:44}{cost[key]:8.3f}   {cost['one_pass_all'] / cost[key]:5.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({**results, "ratios": ratios, "old_logp_pass": old_logp_cost},
                                              indent=2))


if __name__ == "__main__":
    main()
