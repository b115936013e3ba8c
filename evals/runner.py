"""Evaluation orchestration: load problems, sample, grade, summarize, write (`fipo-bench eval`/`score`)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from fipo_bench.evals.checker import check_answers
from fipo_bench.evals.datasets import Problem, load_dataset, normalize_gold
from fipo_bench.evals.generate import SamplingConfig, generate, load_tokenizer
from fipo_bench.evals.io import generation_row, write_eval_dir
from fipo_bench.evals.metrics import summarize_generations
from fipo_bench.evals.prompts import format_prompt
from fipo_bench.hub import check_hub_model

WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin")


def validate_checkpoint(checkpoint: str) -> None:
    """A checkpoint is a Hugging Face model directory (config.json with a model_type, and weights) or a
    Hub id (org/name) that can load now. Raises FileNotFoundError/ConnectionError saying what to pass."""
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        if _model_type(path / "config.json") is None:
            raise FileNotFoundError(_not_a_model_dir(path))
        if not any(next(path.glob(pattern), None) for pattern in WEIGHT_FILES):
            raise FileNotFoundError(f"checkpoint {path}: config.json but no weights "
                                    f"({' or '.join(WEIGHT_FILES)}); is the save complete?")
    elif path.exists():
        raise FileNotFoundError(f"checkpoint {path}: expected a Hugging Face model directory, got a file")
    elif checkpoint.count("/") != 1 or checkpoint.startswith((".", "/", "~")) or path.parent.is_dir():
        # org/name is a Hub id unless org/ is a local directory: then it is a mistyped path.
        raise FileNotFoundError(f"checkpoint {checkpoint!r}: no such directory (nor a Hub id like org/name)")
    else:
        check_hub_model(checkpoint)


def _model_type(config_file: Path) -> str | None:
    """The model_type of a Hugging Face config.json; None when there is none (fipo-bench writes a
    config.json of its own into every run directory, which is no model config)."""
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config.get("model_type") if isinstance(config, dict) else None


def _not_a_model_dir(path: Path) -> str:
    """What `path` is and which model directories below it to pass instead (a run directory holds its
    checkpoints a few levels down)."""
    found = sorted((c.parent for c in path.glob("**/config.json") if _model_type(c)), key=_natural_key)
    is_run = any((path / name).exists() for name in ("run.json", "status.json", "metrics.jsonl"))
    what = "is a fipo-bench results directory, not a checkpoint" if is_run else (
        "is not a Hugging Face model directory (no config.json with a model_type)")
    if not found:
        return f"{path} {what}, and no checkpoint is saved below it"
    more = f" ({len(found)} checkpoints below it)" if len(found) > 1 else ""
    return f"{path} {what}; pass a checkpoint directory such as {found[-1]}{more}"


def _natural_key(path: Path) -> list:
    """step-9 before step-10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def evaluate_checkpoint(
    checkpoint: str,
    problems: list[Problem],
    config: SamplingConfig,
    *,
    dataset: str,
    template: str = "dapo",
    backend: str = "auto",
    batch_size: int = 16,
    timeout: float = 5.0,
    out_dir: Path | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[list[dict], dict]:
    """Sample config.k responses per problem, grade them, and return (generations rows, summary);
    both are written to `out_dir` when given."""
    validate_checkpoint(checkpoint)
    tokenizer = load_tokenizer(checkpoint)
    prompts = [format_prompt(p.problem, template, tokenizer) for p in problems]
    generations = generate(
        checkpoint, prompts, config, backend=backend, batch_size=batch_size, on_progress=on_progress
    )
    responses = [g.text for per_problem in generations for g in per_problem]
    golds = [p.answer for p in problems for _ in range(config.k)]
    results = check_answers(responses, golds, timeout=timeout)
    rows = []
    flat = iter(zip(responses, results, strict=True))
    for problem, per_problem in zip(problems, generations, strict=True):
        for sample_index, generation in enumerate(per_problem):
            response, result = next(flat)
            rows.append(generation_row(
                problem.id, sample_index, response, problem.answer, result,
                generation.num_tokens, generation.truncated,
            ))
    sampling = {**config.to_dict(), "template": template}
    summary = summarize_generations(
        rows, dataset=dataset, checkpoint=checkpoint, k=config.k, sampling=sampling
    )
    if out_dir is not None:
        write_eval_dir(out_dir, rows, summary)
    return rows, summary


def score_generations(
    rows: list[tuple[int, dict]],
    *,
    source: str,
    dataset: str | None = None,
    data_dir: str | Path | None = None,
    timeout: float = 5.0,
) -> tuple[list[dict], dict]:
    """Grade rows made by any tool: (line number, row) pairs with `response` and either `problem_id`
    (gold looked up in `dataset`) or `answer`/`gold`. Returns (generations rows, summary)."""
    problems = {p.id: p for p in load_dataset(dataset, data_dir)} if dataset else {}
    responses, golds, ids, extras = [], [], [], []
    sample_counts: dict[str, int] = {}
    for lineno, row in rows:
        where = f"{source}:{lineno}"
        if not isinstance(row.get("response"), str):
            raise ValueError(f"{where}: expected a string field 'response'")
        problem_id = row.get("problem_id", row.get("id"))
        gold = row.get("answer", row.get("gold"))
        if gold is None:
            if problem_id is None or not problems:
                raise ValueError(f"{where}: expected 'answer' (or 'gold'), or 'problem_id' with --dataset")
            if str(problem_id) not in problems:
                raise ValueError(f"{where}: problem_id {problem_id!r} is not in dataset {dataset!r}")
            gold = problems[str(problem_id)].answer
        else:
            try:
                gold = normalize_gold(gold)
            except ValueError as e:
                raise ValueError(f"{where}: field 'answer': {e}") from None
        problem_id = str(problem_id) if problem_id is not None else str(row.get("problem", lineno))
        sample_index = row.get("sample_index", sample_counts.get(problem_id, 0))
        sample_counts[problem_id] = sample_counts.get(problem_id, 0) + 1
        responses.append(row["response"])
        golds.append(gold)
        ids.append(problem_id)
        extras.append((sample_index, row.get("num_tokens"), row.get("truncated")))
    if not responses:
        raise ValueError(f"{source}: no rows to score")
    results = check_answers(responses, golds, timeout=timeout)
    graded = [
        generation_row(pid, index, response, gold, result, num_tokens, truncated)
        for pid, response, gold, result, (index, num_tokens, truncated) in zip(
            ids, responses, golds, results, extras, strict=True
        )
    ]
    k = max(sample_counts.values())
    summary = summarize_generations(
        graded, dataset=dataset or source, checkpoint=source, k=k, sampling={"source": source}
    )
    return graded, summary
