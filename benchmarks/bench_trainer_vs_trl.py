"""Throughput of fipo-bench's local trainer vs Hugging Face TRL's GRPOTrainer, side by side in one run.

Same built-in model (the tiny preset's warmed-up base checkpoint), same task prompts, group size,
rollout batch, number of updates per rollout batch, max response length, sampling (temperature 1,
top-p 1), optimizer (AdamW, constant lr, grad clip 1) and loss (DAPO's clip-higher token-mean loss:
TRL loss_type="dapo", ours the "dapo" algorithm). Neither side uses dynamic sampling, overlong
shaping or a reference model, so both do the same work per rollout batch. Reported per rollout
batch (after warm-up batches): generation tokens/s and whole-step tokens/s, per wall-clock second and
per CPU second of this process (the CPU figure is the robust one on a machine shared with other
jobs), and ours / TRL. TRL runs with gradient checkpointing off (its default is on), as ours.

TRL is not a dependency of fipo-bench: install it in a separate environment, CPU torch first:

    python3 -m venv /work/venv-trl && . /work/venv-trl/bin/activate
    pip install torch==2.13.0          # CPU build; a plain `trl` install could pull a CUDA torch
    pip install -e . && pip install trl
    OMP_NUM_THREADS=1 python benchmarks/bench_trainer_vs_trl.py [--batches 6] [--json out.json]

On a machine shared with other jobs keep OMP_NUM_THREADS=1: two OpenMP threads on a core that is
also busy elsewhere spin and run several times slower, on both sides.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def build_problems(n: int):
    from fipo_bench.tiny import TinyTask

    return TinyTask().train_problems(n)


def run_ours(base: Path, problems, args) -> list[dict]:
    from fipo_bench.algorithms import get_algorithm
    from fipo_bench.backends.local import LocalTrainer, TaskData, Verdict
    from fipo_bench.config import build_config
    from fipo_bench.tiny import TinyTask

    task = TinyTask()
    cfg = build_config("tiny", options={"algos": "dapo", "seeds": str(args.seed)}, sets=[
        f"rollout_batch_size={args.prompts}", f"samples_per_prompt={args.group}",
        f"mini_batch_size={args.prompts // args.updates}", f"max_response_length={args.max_new_tokens}",
        f"lr={args.lr}", "temperature=1.0", "top_p=1.0", "device=cpu"])
    alg = get_algorithm("dapo", dynamic_sampling=False, overlong_buffer=None)

    def check(responses, golds):
        return [Verdict(c.verdict, c.extracted, c.correct) for c in map(task.check, responses, golds)]

    data = TaskData(train=problems, evals={}, prompt_text=lambda t: t, check=check)
    trainer = LocalTrainer(cfg, alg, args.seed, base, data)
    gens: list[dict] = []
    original = trainer.generate

    def timed_generate(prompts, **kw):
        start = clock()
        parts, texts = original(prompts, **kw)
        gens.append({"gen": elapsed(start), "tokens": sum(int(p.lengths.sum()) for p in parts)})
        return parts, texts

    trainer.generate = timed_generate
    out = []
    for step in range(1, args.warmup + args.batches + 1):
        start = clock()
        trainer.train_step(step)
        out.append({"step": elapsed(start), **gens[-1]})
    return out[args.warmup:]


def run_trl(base: Path, problems, args) -> list[dict]:
    try:
        import datasets
        from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
        from trl import GRPOConfig, GRPOTrainer
    except ImportError as e:
        raise SystemExit(f"TRL is not installed ({e}); see this script's docstring for its venv") from None
    from fipo_bench.tiny import TinyTask

    task = TinyTask()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base))
    rows = [{"prompt": p.problem, "answer": p.answer} for p in problems]

    def reward(prompts, completions, answer, **_):
        return [1.0 if task.check(c, a).correct else -1.0 for c, a in zip(completions, answer, strict=True)]

    samples = args.prompts * args.group
    with tempfile.TemporaryDirectory() as tmp:
        config = GRPOConfig(
            output_dir=tmp, report_to="none", save_strategy="no", logging_steps=1, use_cpu=True, bf16=False,
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
        gens: list[dict] = []
        original = trainer._generate_single_turn

        def timed_generate(*a, **kw):
            start = clock()
            result = original(*a, **kw)
            gens.append({"gen": elapsed(start), "tokens": sum(len(c) for c in result[0])})
            return result

        trainer._generate_single_turn = timed_generate
        ends: list[tuple[float, float]] = []

        class StepClock(TrainerCallback):
            def on_train_begin(self, *_, **__):
                ends.append(clock())

            def on_step_end(self, _args, state, *_, **__):
                if state.global_step % args.updates == 0:
                    ends.append(clock())

        trainer.add_callback(StepClock())
        trainer.train()
    out = [{"step": elapsed(ends[i], ends[i + 1]), **gen} for i, gen in enumerate(gens)]
    return out[args.warmup:]


def clock() -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): CPU time is robust to other jobs on a shared machine."""
    return time.perf_counter(), time.process_time()


def elapsed(start: tuple[float, float], end: tuple[float, float] | None = None) -> tuple[float, float]:
    end = end or clock()
    return end[0] - start[0], end[1] - start[1]


def summarize(rows: list[dict]) -> dict:
    tokens = sum(r["tokens"] for r in rows)
    out = {"batches": len(rows), "tokens_per_batch": tokens / len(rows)}
    for kind, index in (("wall", 0), ("cpu", 1)):
        for phase in ("gen", "step"):
            seconds = [r[phase][index] for r in rows]
            out[f"{phase}_{kind}_s_median"] = statistics.median(seconds)
            out[f"{phase}_tokens_per_{kind}_s"] = tokens / sum(seconds)
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
          f"max {args.max_new_tokens} new tokens, torch threads {torch.get_num_threads()}")
    ours = summarize(run_ours(base, problems, args))
    trl = summarize(run_trl(base, problems, args))
    ratios = {key: ours[key] / trl[key] for key in ours if "tokens_per_" in key and key != "tokens_per_batch"}
    print(f"{'per rollout batch':26}{'fipo-bench':>12}{'TRL':>12}{'ours/TRL':>10}")
    for key, ratio in ratios.items():
        print(f"{key:26}{ours[key]:12.0f}{trl[key]:12.0f}{ratio:10.2f}")
    for key in ("step_wall_s_median", "step_cpu_s_median", "gen_wall_s_median", "gen_cpu_s_median",
                "tokens_per_batch"):
        print(f"{key:26}{ours[key]:12.2f}{trl[key]:12.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"ours": ours, "trl": trl, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
