"""Does a built-in task have the shape RL needs? Measures the warmed-up base model on the test split.

For each decoding setting (greedy; sampling at temperature 1, the RL rollout setting; temperature 1
with top-p 0.7, the tiny presets' evaluation setting) it prints: accuracy, mean response length in
tokens (EOS included), truncation, accuracy by term count (difficulty), and
- chain task: the distribution of steps written, accuracy by steps written, and accuracy with the number
  of steps forced (k = 0, 1, 2, ...; the model writes its own steps, a logits processor only forbids
  ``Answer:`` before the k-th ``;`` and forces it right after), overall and by term count;
- sums task: share of step-by-step answers and accuracy with each style forced.
The design wants: more steps clearly more accurate, one step at a time; the base mostly short; long
chains rare but present; the full chain itself imperfect (headroom for RL).

    python benchmarks/tiny_task_design.py --preset tiny [--set tiny_recipe.steps=400 ...] [--threads T]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict


def _forcing_processor(answer_id: int, step_end_id: int, eos_id: int, prompt_length: int, steps: list[int]):
    """A logits processor forcing row i to write exactly steps[i] steps before ``Answer:``."""
    import torch

    def process(input_ids, scores):
        generated = input_ids[:, prompt_length:]
        written = (generated == step_end_id).sum(-1)
        answered = (generated == answer_id).any(-1)
        target = torch.tensor(steps, device=scores.device)
        at_boundary = (generated[:, -1] == step_end_id) if generated.shape[1] else torch.ones_like(answered)
        force = ~answered & (written >= target) & at_boundary
        forbid = ~answered & (written < target)
        scores = scores.clone()
        scores[forbid, answer_id] = -float("inf")
        scores[forbid, eos_id] = -float("inf")
        forced = torch.full_like(scores[0], -float("inf"))
        forced[answer_id] = 0.0
        scores[force] = forced
        return scores

    return process


def generate(model, tokenizer, prompts: list[str], *, greedy: bool, top_p: float, max_new_tokens: int,
             seed: int, steps: list[int] | None = None, batch_size: int = 256) -> list[tuple[str, int]]:
    """(response text, generated tokens incl. EOS) per prompt; left-padded batched HF generate."""
    import torch
    from transformers import LogitsProcessorList

    tokenizer.padding_side = "left"
    out: list[tuple[str, int]] = []
    torch.manual_seed(seed)
    answer_id, step_end_id = tokenizer.convert_tokens_to_ids(["Answer:", ";"])
    for start in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=False)
        processors = LogitsProcessorList()
        if steps is not None:
            processors.append(_forcing_processor(answer_id, step_end_id, tokenizer.eos_token_id,
                                                 enc["input_ids"].shape[1],
                                                 steps[start : start + batch_size]))
        with torch.no_grad():
            seqs = model.generate(**enc, do_sample=not greedy, temperature=1.0, top_p=top_p, top_k=None,
                                  max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                  eos_token_id=tokenizer.eos_token_id, logits_processor=processors)
        for row in seqs[:, enc["input_ids"].shape[1] :].tolist():
            n = row.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in row else len(row)
            out.append((tokenizer.decode(row[:n], skip_special_tokens=True), n))
    return out


def _rate(flags) -> float:
    return round(sum(flags) / len(flags), 3) if flags else float("nan")


def _by(keys, flags) -> dict:
    groups: dict = defaultdict(list)
    for key, flag in zip(keys, flags, strict=True):
        groups[key].append(flag)
    return {k: f"{_rate(v)} (n={len(v)})" for k, v in sorted(groups.items())}


def measure(model, tokenizer, task, *, greedy: bool, top_p: float, max_new_tokens: int,
            seed: int = 0) -> dict:
    from fipo_bench.tiny.task import steps_written

    problems = task.test_problems
    prompts = [p.problem for p in problems]
    n_terms = [len(task.parse_prompt(p)) for p in prompts]
    free = generate(model, tokenizer, prompts, greedy=greedy, top_p=top_p, max_new_tokens=max_new_tokens,
                    seed=seed)
    correct = [task.check(text, p.answer).correct for (text, _), p in zip(free, problems, strict=True)]
    result: dict = {
        "accuracy": _rate(correct),
        "mean_length": round(sum(n for _, n in free) / len(free), 2),
        "truncated": _rate([n == max_new_tokens for _, n in free]),
        "accuracy_by_terms": _by(n_terms, correct),
    }
    if task.name == "chain":
        written = [steps_written(text) for text, _ in free]
        result["steps_written"] = {k: round(v / len(written), 3)
                                   for k, v in sorted(_count(written).items())}
        result["accuracy_by_steps_written"] = _by(written, correct)
        for k in range(task.max_terms):
            forced_steps = [min(k, n - 1) for n in n_terms]
            forced = generate(model, tokenizer, prompts, greedy=greedy, top_p=top_p,
                              max_new_tokens=max_new_tokens, seed=seed, steps=forced_steps)
            ok = [task.check(text, p.answer).correct for (text, _), p in zip(forced, problems, strict=True)]
            length = sum(n for _, n in forced) / len(forced)
            result[f"forced {k} steps"] = f"acc {_rate(ok)} len {length:.1f} by terms {_by(n_terms, ok)}"
    else:
        result["steps_share"] = _rate([task.response_style(text) == "steps" for text, _ in free])
        for style in ("direct", "steps"):
            prefixes = [task.style_prefix(p, style) for p in prompts]
            forced = generate(model, tokenizer, [p + x for p, x in zip(prompts, prefixes, strict=True)],
                              greedy=greedy, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
            ok = [task.check(x + text, p.answer).correct
                  for x, (text, _), p in zip(prefixes, forced, problems, strict=True)]
            result[f"accuracy_{style}"] = _rate(ok)
            result[f"accuracy_{style}_by_terms"] = _by(n_terms, ok)
    return result


def _count(values) -> dict:
    counts: dict = defaultdict(int)
    for v in values:
        counts[v] += 1
    return counts


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fipo_bench.config import build_config
    from fipo_bench.tasks import _tiny_recipe

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        help="tiny_task.key=value / tiny_recipe.key=value (as fipo-bench run --set)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the preset's")
    parser.add_argument("--settings", default="greedy,sampled,top-p",
                        help="which decoding settings to measure (comma-separated)")
    parser.add_argument("--cache-dir", default=None, help="default: a fresh temporary directory")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = build_config(args.preset, sets=args.sets)
    recipe = _tiny_recipe(cfg)
    task = recipe.task
    max_new_tokens = args.max_new_tokens or cfg.max_response_length
    from fipo_bench.tiny import ensure_base_checkpoint

    cache = args.cache_dir or tempfile.mkdtemp(prefix="fipo-bench-tiny-design-")
    start = time.perf_counter()
    path = ensure_base_checkpoint(recipe, cache_dir=cache)
    print(f"warm-up: {time.perf_counter() - start:.1f} s ({args.threads} threads), checkpoint {path}")
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    print(f"task: {task}\nrecipe hash {recipe.hash()}; max new tokens {max_new_tokens}")
    settings = {"greedy": (True, 1.0), "sampled": (False, 1.0), "top-p": (False, 0.7)}
    for name in args.settings.split(","):
        greedy, top_p = settings[name]
        start = time.perf_counter()
        result = measure(model, tokenizer, task, greedy=greedy, top_p=top_p, max_new_tokens=max_new_tokens)
        label = {"greedy": "greedy", "sampled": "sampled T=1", "top-p": "sampled T=1 top-p 0.7"}[name]
        print(f"\n{label} on {len(task.test_problems)} test problems ({time.perf_counter() - start:.1f} s):")
        for key, value in result.items():
            print(f"  {key:28s} {value}")


if __name__ == "__main__":
    main()
