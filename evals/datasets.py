"""Datasets: AIME 2024/2025, AMC 2023, MATH-500, GSM8K and the DAPO-Math-17k training set by name, or
any local file.

A named dataset loads from a data directory (`data_dir` or $FIPO_BENCH_DATA, files named as in
DATASETS) when one is given, else from the Hugging Face Hub through `datasets` (`pip install -e
'.[hub]'`). Any `.jsonl` / `.json` / `.parquet` file with problem and answer fields also works. Gold
answers are normalized on load, per dataset (`normalize_gold`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fipo_bench.evals.compare import parse_number
from fipo_bench.evals.problem import Problem
from fipo_bench.evals.prompts import TEMPLATES
from fipo_bench.hub import check_hub_reachable

DATA_DIR_ENV = "FIPO_BENCH_DATA"


@dataclass(frozen=True)
class DatasetSpec:
    """Where a named dataset lives and how its rows read."""

    file: str
    """File name inside an offline data directory."""
    hub_id: str
    """Hugging Face Hub dataset repository."""
    hub_split: str
    """Split on the Hub (several benchmarks publish their test set as "train")."""
    answer_kind: str
    """"integer", "number", "gsm8k" or "latex": how the gold answer is normalized."""
    hub_config: str | None = None
    """Hub configuration name, if the repository has several."""
    problem_fields: tuple[str, ...] = ("problem", "question")
    """Candidate problem fields, first present wins (copies of one benchmark disagree)."""
    id_fields: tuple[str, ...] = ("id", "unique_id")
    """Candidate id fields, first present wins; none present -> row index."""
    unwrap_row: Callable[[dict, str], dict] | None = None
    """Maps a stored row (and where it is, for errors) to one with `problem` and `answer` fields."""
    dedupe: bool = False
    """Keep only the first row of each problem text (for sets stored with repeats)."""


def unwrap_dapo_math_row(row: dict, where: str) -> dict:
    """A DAPO-Math-17k row -> {"problem", "answer"}: the problem cut out of its `dapo`-templated prompt.

    DAPO-Math-17k (BytedTsinghua-SIA/DAPO-Math-17k, the DAPO and FIPO training set) stores each problem
    inside its chat prompt, already wrapped in the `dapo` template, with the answer in
    `reward_model.ground_truth`; the trainer applies the template itself, so rows are unwrapped to the
    bare problem. The set repeats its ~17k problems many times; repeated problems are kept once."""
    head, _, tail = TEMPLATES["dapo"].partition("{problem}")
    try:
        content = row["prompt"][0]["content"]
        answer = row["reward_model"]["ground_truth"]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"{where}: expected DAPO-Math-17k fields prompt[0].content and "
                         f"reward_model.ground_truth (found: {', '.join(map(str, row))})") from None
    if not (isinstance(content, str) and content.startswith(head) and content.endswith(tail)):
        raise ValueError(f"{where}: prompt[0].content is not wrapped in the DAPO prompt template")
    return {"problem": content[len(head): len(content) - len(tail)], "answer": answer}


DATASETS: dict[str, DatasetSpec] = {
    "aime24": DatasetSpec("aime24.jsonl", "HuggingFaceH4/aime_2024", "train", "integer"),
    "aime25": DatasetSpec("aime25.jsonl", "yentinglin/aime_2025", "train", "integer"),
    "amc23": DatasetSpec("amc23.jsonl", "zwhe99/amc23", "test", "number"),
    "math500": DatasetSpec("math500.jsonl", "HuggingFaceH4/MATH-500", "test", "latex"),
    "gsm8k": DatasetSpec(
        "gsm8k_test.jsonl", "openai/gsm8k", "test", "gsm8k", hub_config="main", problem_fields=("question",)
    ),
    "dapo-math-17k": DatasetSpec(
        "dapo-math-17k.parquet", "BytedTsinghua-SIA/DAPO-Math-17k", "train", "latex",
        unwrap_row=unwrap_dapo_math_row, dedupe=True,
    ),
}


def normalize_gold(answer: object, kind: str = "latex") -> str:
    """Canonical gold answer; raises ValueError (with the reason) if it does not fit `kind`.

    - AIME: integers 0-999, stored with leading zeros in some copies ("025" -> "25");
    - AMC 2023: stored as floats ("27.0" -> "27");
    - GSM8K: a worked solution ending in "#### 1,234" -> "1234";
    - MATH-500, DAPO-Math-17k and local files: the LaTeX answer, stripped; integers as such ("007" -> "7").
    """
    if answer is None or isinstance(answer, bool):
        raise ValueError(f"expected an answer, got {answer!r}")
    if isinstance(answer, (int, float)):
        text = repr(answer) if isinstance(answer, float) else str(answer)
    elif isinstance(answer, str):
        text = answer.strip()
    else:
        raise ValueError(f"expected a string or number answer, got {type(answer).__name__}")
    if kind == "gsm8k":
        if "####" not in text:
            raise ValueError("expected a GSM8K solution ending in '#### <number>'")
        text = text.rsplit("####", 1)[1].strip().replace(",", "")
    if not text:
        raise ValueError("empty answer")
    value = parse_number(text.replace(",", "") if kind in ("gsm8k", "number", "integer") else text)
    if kind in ("integer", "number", "gsm8k") and value is None:
        raise ValueError(f"expected a number, got {text!r}")
    if kind == "integer" and (value.denominator != 1 or not 0 <= value <= 999):
        raise ValueError(f"expected an AIME integer 0-999, got {text!r}")
    if value is not None and value.denominator == 1:  # "025" -> "25", "27.0" -> "27", "1,000" -> "1000"
        text = str(value.numerator)
    return text


def _read_rows(path: Path) -> list[tuple[str, object]]:
    """(location, row) pairs of a local file; location is "file:line" for error messages."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
        return [(f"{path}:row {i + 1}", row) for i, row in enumerate(pq.read_table(path).to_pylist())]
    if suffix not in (".jsonl", ".json"):
        raise ValueError(f"{path}: expected a .jsonl, .json or .parquet file")
    text = path.read_text(encoding="utf-8")
    if suffix == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}:{e.colno}: invalid JSON ({e.msg})") from None
        return [(f"{path}:item {i + 1}", row) for i, row in enumerate(rows)]
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"{path}:{lineno}", json.loads(line)))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: invalid JSON line ({e.msg})") from None
    return rows


def _hub_rows(name: str, spec: DatasetSpec) -> list[tuple[str, object]]:
    try:
        import datasets
    except ImportError:
        raise ImportError(
            f"dataset {name!r} loads from the Hugging Face Hub ({spec.hub_id}), which needs the `datasets` "
            f"package: pip install -e '.[hub]' in the fipo-bench checkout. Offline, pass --data-dir (or set "
            f"${DATA_DIR_ENV}) to a directory holding {spec.file}."
        ) from None
    local = f"pass --data-dir (or set ${DATA_DIR_ENV}) to a directory holding {spec.file}"
    check_hub_reachable(f"dataset {name!r} ({spec.hub_id})",
                        f"{local}, or set HF_HUB_OFFLINE=1 to use a copy that `datasets` cached earlier")
    try:
        table = datasets.load_dataset(spec.hub_id, spec.hub_config, split=spec.hub_split)
    except OSError as e:  # offline and not cached; a Hub that stopped answering
        raise FileNotFoundError(f"dataset {name!r}: {spec.hub_id} did not load from the Hugging Face Hub "
                                f"({' '.join(str(e).split())}); {local}") from None
    return [(f"hub:{spec.hub_id}:row {i + 1}", row) for i, row in enumerate(table)]


def _to_problems(
    rows: list[tuple[str, object]],
    problem_fields: tuple[str, ...],
    answer_field: str,
    id_fields: tuple[str, ...],
    answer_kind: str,
) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for index, (where, row) in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected an object with fields, got {type(row).__name__}")
        problem_field = next((f for f in problem_fields if f in row), None)
        if problem_field is None:
            raise ValueError(f"{where}: missing field {' or '.join(map(repr, problem_fields))} "
                             f"(found: {', '.join(map(str, row)) or 'none'})")
        problem = row[problem_field]
        if not isinstance(problem, str) or not problem.strip():
            raise ValueError(f"{where}: field {problem_field!r} must be a non-empty string")
        if answer_field not in row:
            raise ValueError(f"{where}: missing field {answer_field!r} (found: {', '.join(map(str, row))})")
        try:
            answer = normalize_gold(row[answer_field], answer_kind)
        except ValueError as e:
            raise ValueError(f"{where}: field {answer_field!r}: {e}") from None
        id_field = next((f for f in id_fields if row.get(f) not in (None, "")), None)
        problem_id = str(row[id_field]) if id_field else str(index)
        if problem_id in seen:
            raise ValueError(f"{where}: duplicate id {problem_id!r} (first at {seen[problem_id]})")
        seen[problem_id] = where
        problems.append(Problem(problem_id, problem, answer))
    return problems


def load_dataset(
    name_or_path: str | Path,
    data_dir: str | Path | None = None,
    *,
    problem_field: str = "problem",
    answer_field: str = "answer",
    limit: int | None = None,
    split: str = "eval",
) -> list[Problem]:
    """Load and validate a dataset by name (DATASETS), a procedural task (`rg:<task>?...`,
    fipo_bench.evals.procedural) or from a local file.

    For a name, `data_dir` (or $FIPO_BENCH_DATA) selects the offline copy, otherwise the Hub. For a
    file, `problem_field`/`answer_field` name the columns. `limit` keeps the first N problems.
    `split` ("train" or "eval") selects a procedural task's split; the others have one split each.
    Every row is checked; an error names the file and line and what was expected.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of problems, got {limit}")
    name = str(name_or_path)
    if name.startswith("rg:"):
        from fipo_bench.evals.procedural import load_procedural

        return load_procedural(name, split, limit)
    if name in DATASETS:
        spec = DATASETS[name]
        data_dir = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
        if data_dir is not None:
            path = Path(data_dir) / spec.file
            if not path.is_file():
                raise FileNotFoundError(f"dataset {name!r}: expected {path} (data directory {data_dir})")
            rows = _read_rows(path)
        else:
            rows = _hub_rows(name, spec)
        if spec.unwrap_row is not None:
            rows = [(where, spec.unwrap_row(row, where) if isinstance(row, dict) else row)
                    for where, row in rows]
        if spec.dedupe:
            first_seen: dict[str, tuple[str, object]] = {}
            for where, row in rows:
                first_seen.setdefault(row.get("problem") if isinstance(row, dict) else where, (where, row))
            rows = list(first_seen.values())
        problems = _to_problems(rows, spec.problem_fields, "answer", spec.id_fields, spec.answer_kind)
    else:
        path = Path(name).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"{name!r} is neither a dataset name ({', '.join(DATASETS)}) nor an existing file"
            )
        rows = _read_rows(path)
        problems = _to_problems(rows, (problem_field,), answer_field, ("id", "unique_id"), "latex")
    if not problems:
        raise ValueError(f"dataset {name!r} has no rows")
    return problems[:limit] if limit is not None else problems
