"""Reading and writing an evaluation directory: generations.jsonl + summary.json (results/README.md)."""

from __future__ import annotations

from pathlib import Path

from fipo_bench.evals.result import VERDICTS, CheckResult
from fipo_bench.io import json_safe, read_json, read_jsonl, write_json, write_jsonl

GENERATIONS_FILE = "generations.jsonl"
SUMMARY_FILE = "summary.json"
GENERATION_FIELDS = (
    "problem_id", "sample_index", "response", "gold", "extracted", "verdict", "correct", "num_tokens",
    "truncated",
)


def generation_row(
    problem_id: str,
    sample_index: int,
    response: str,
    gold: str,
    result: CheckResult,
    num_tokens: int | None,
    truncated: bool | None,
) -> dict:
    """One generations.jsonl line (with `score` when the grader gives one: procedural tasks)."""
    row = {
        "problem_id": str(problem_id),
        "sample_index": int(sample_index),
        "response": response,
        "gold": gold,
        "extracted": result.extracted,
        "verdict": result.verdict,
        "correct": result.correct,
        "num_tokens": num_tokens,
        "truncated": truncated,
    }
    if result.score is not None:
        row["score"] = result.score
    return row


def validate_generation_rows(rows: list[dict], where: str = "generations") -> None:
    """Raise ValueError naming the row and field when a row does not follow the schema."""
    for i, row in enumerate(rows):
        missing = [f for f in GENERATION_FIELDS if f not in row]
        if missing:
            raise ValueError(f"{where}: row {i + 1}: missing field(s) {', '.join(missing)}")
        if row["verdict"] not in VERDICTS:
            raise ValueError(f"{where}: row {i + 1}: verdict {row['verdict']!r} is not one of {VERDICTS}")


def write_eval_dir(out_dir: Path, rows: list[dict], summary: dict) -> None:
    """Write generations.jsonl and summary.json into `out_dir`, each atomically (summary last, so a
    summary on disk always has its generations)."""
    out_dir = Path(out_dir)
    validate_generation_rows(rows, str(out_dir / GENERATIONS_FILE))
    write_jsonl(out_dir / GENERATIONS_FILE, (json_safe(r) for r in rows))
    write_json(out_dir / SUMMARY_FILE, json_safe(summary))


def check_free(out_dir: Path, force: bool = False) -> None:
    """Refuse (FileExistsError) to write over an earlier evaluation in `out_dir` unless `force`; checked
    before sampling, so a refusal costs nothing."""
    existing = [name for name in (GENERATIONS_FILE, SUMMARY_FILE) if (Path(out_dir) / name).exists()]
    if existing and not force:
        raise FileExistsError(f"{out_dir} already holds an evaluation ({', '.join(existing)}): pass --force "
                              "to overwrite it, or --out DIR to write elsewhere")


def read_eval_dir(out_dir: Path) -> tuple[list[dict], dict]:
    """(generations rows, summary) of an evaluation directory."""
    out_dir = Path(out_dir)
    return read_jsonl(out_dir / GENERATIONS_FILE), read_json(out_dir / SUMMARY_FILE)
