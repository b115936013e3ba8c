"""Does the built-in task have the shape RL needs? Measures the warmed-up base model on the test split.

Prints, for greedy decoding, sampling at temperature 1 (the RL rollout setting) and at temperature 1
with top-p 0.7 (the tiny preset's evaluation setting):
accuracy, share of step-by-step answers, accuracy with each style forced (the style's first token
appended to the prompt), mean response length in tokens (EOS included), and accuracy by term count.
The design wants: step-by-step clearly more accurate than direct, the base mostly direct, and
step-by-step itself imperfect (headroom for RL).

    python benchmarks/tiny_task_design.py [--steps N] [--max-value V] [--max-terms K] [--threads T]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections import defaultdict


def generate(model, tokenizer, prompts: list[str], *, greedy: bool, top_p: float, max_new_tokens: int,
             seed: int, batch_size: int = 256) -> list[tuple[str, int]]:
    """(response text, generated tokens incl. EOS) per prompt; left-padded batched HF generate."""
    import torch

    tokenizer.padding_side = "left"
    out: list[tuple[str, int]] = []
    torch.manual_seed(seed)
    for start in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=False)
        with torch.no_grad():
            seqs = model.generate(**enc, do_sample=not greedy, temperature=1.0, top_p=top_p, top_k=None,
                                  max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                  eos_token_id=tokenizer.eos_token_id)
        for row in seqs[:, enc["input_ids"].shape[1] :].tolist():
            n = row.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in row else len(row)
            out.append((tokenizer.decode(row[:n], skip_special_tokens=True), n))
    return out


def measure(model, tokenizer, task, *, greedy: bool, top_p: float, max_new_tokens: int,
            seed: int = 0) -> dict:
    problems = task.test_problems
    prompts = [p.problem for p in problems]
    free = generate(model, tokenizer, prompts, greedy=greedy, top_p=top_p, max_new_tokens=max_new_tokens,
                    seed=seed)
    correct = [task.check(text, p.answer).correct for (text, _), p in zip(free, problems, strict=True)]
    styles = [task.response_style(text) for text, _ in free]
    result = {
        "accuracy": sum(correct) / len(correct),
        "steps_share": styles.count("steps") / len(styles),
        "mean_length": sum(n for _, n in free) / len(free),
        "truncated": sum(n == max_new_tokens for _, n in free) / len(free),
    }
    by_terms: dict[int, list[bool]] = defaultdict(list)
    for p, ok in zip(problems, correct, strict=True):
        by_terms[len(task.parse_prompt(p.problem))].append(ok)
    result["accuracy_by_terms"] = {k: round(sum(v) / len(v), 3) for k, v in sorted(by_terms.items())}
    for style in ("direct", "steps"):
        prefixes = [task.style_prefix(p, style) for p in prompts]
        forced_prompts = [p + x for p, x in zip(prompts, prefixes, strict=True)]
        forced = generate(model, tokenizer, forced_prompts, greedy=greedy, top_p=top_p,
                          max_new_tokens=max_new_tokens, seed=seed)
        ok = [task.check(x + text, p.answer).correct
              for x, (text, _), p in zip(prefixes, forced, problems, strict=True)]
        result[f"accuracy_{style}"] = sum(ok) / len(ok)
        by_terms = defaultdict(list)
        for p, good in zip(problems, ok, strict=True):
            by_terms[len(task.parse_prompt(p.problem))].append(good)
        result[f"accuracy_{style}_by_terms"] = {k: round(sum(v) / len(v), 3)
                                                for k, v in sorted(by_terms.items())}
    return result


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fipo_bench.tiny import TinyRecipe, TinyTask, ensure_base_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = TinyRecipe()
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--max-value", type=int, default=defaults.task.max_value)
    parser.add_argument("--max-terms", type=int, default=defaults.task.max_terms)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--cache-dir", default=None, help="default: a fresh temporary directory")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    task = dataclasses.replace(TinyTask(), max_value=args.max_value, max_terms=args.max_terms)
    recipe = dataclasses.replace(defaults, task=task, steps=args.steps)
    cache = args.cache_dir or tempfile.mkdtemp(prefix="fipo-bench-tiny-design-")
    start = time.perf_counter()
    path = ensure_base_checkpoint(recipe, cache_dir=cache)
    print(f"warm-up: {time.perf_counter() - start:.1f} s ({args.threads} threads), checkpoint {path}")
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    print(f"task: {task}")
    # greedy; the RL rollout setting (T=1); the tiny preset's evaluation setting (T=1, top-p 0.7).
    for name, greedy, top_p in (("greedy", True, 1.0), ("sampled T=1", False, 1.0),
                                ("sampled T=1 top-p 0.7", False, 0.7)):
        start = time.perf_counter()
        result = measure(model, tokenizer, task, greedy=greedy, top_p=top_p,
                         max_new_tokens=args.max_new_tokens)
        print(f"\n{name} on {len(task.test_problems)} test problems ({time.perf_counter() - start:.1f} s):")
        for key, value in result.items():
            print(f"  {key:28s} {value if isinstance(value, dict) else round(value, 3)}")


if __name__ == "__main__":
    main()
