"""Evaluation orchestration: load problems, sample, grade, summarize, write (`fipo-bench eval`/`score`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fipo_bench.evals.checker import check_answers
from fipo_bench.evals.datasets import Problem, load_dataset, normalize_gold
from fipo_bench.evals.generate import SamplingConfig, generate
from fipo_bench.evals.io import generation_row, write_eval_dir
from fipo_bench.evals.metrics import summarize_generations
from fipo_bench.evals.prompts import format_prompt
from fipo_bench.hub import check_hub_model
from fipo_bench.models import check_model, load_tokenizer, resolve_model


def validate_checkpoint(checkpoint: str) -> None:
    """A checkpoint is a local model (fipo_bench.models: an HF directory or a GGUF file; ImportError when
    the GGUF reader is missing) or a Hub id (org/name) that can load now. Raises FileNotFoundError or
    ConnectionError saying what to pass."""
    try:
        check_model(checkpoint)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"checkpoint {e}") from None
    if not Path(checkpoint).expanduser().exists():
        check_hub_model(checkpoint)


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
    model = resolve_model(checkpoint)  # a GGUF file: its converted HF directory (the summary keeps the name)
    tokenizer = load_tokenizer(model)
    prompts = [format_prompt(p.problem, template, tokenizer) for p in problems]
    generations = generate(
        model, prompts, config, backend=backend, batch_size=batch_size, on_progress=on_progress
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
