"""Read one run directory of results/ into plain records for the report.

Reads only the files of the layout (fipo_bench.results, results/README.md) and imports no trainer or
backend. Optional files (run.json, config.json, metrics.jsonl, evals.jsonl, eval/) may be missing, e.g.
for a run that crashed early; a malformed file is an error naming the file, line and field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fipo_bench.io import iter_jsonl, read_json
from fipo_bench.results import COMPLETED, RUN_DIR_PATTERN, RUN_STATUSES, STEP_DIR_PATTERN, deduplicated

# status.json missing: the run never got far enough to write it, or it was written by something else.
MISSING_STATUS = "no status.json"


@dataclass(frozen=True)
class EvalResult:
    """The headline numbers of one evaluation (one eval/<dataset>/step-<N>/summary.json)."""

    dataset: str
    step: int
    k: int
    avg_at_k: float
    pass_at_k: dict[int, float]
    cons_at_k: float | None
    maj_at_k: dict[int, float]
    g_pass_at_k: dict[int, dict[float, float]]
    """k -> tau -> G-Pass@k_tau. These three are empty for summaries written before they existed."""
    mg_pass_at_k: dict[int, float]
    length_mean: float | None
    """None (also below) when the generations carry no token counts, e.g. scored external outputs."""
    length_median: float | None
    truncation_rate: float | None
    per_problem: dict[str, float]
    """problem_id -> accuracy over that problem's k samples, in the file's order."""
    path: Path
    """The step directory (holds generations.jsonl when the samples were kept)."""


@dataclass
class RunData:
    """Everything the report uses from one `<algo>-seed<k>/` directory."""

    name: str
    algo: str
    seed: int
    path: Path
    status: str
    """One of fipo_bench.results.RUN_STATUSES, or MISSING_STATUS."""
    status_step: int | None
    error: str | None
    metrics: list[dict] = field(default_factory=list)
    """metrics.jsonl rows sorted by step; numeric fields only, None for missing/non-finite values."""
    evals: dict[str, dict[int, EvalResult]] = field(default_factory=dict)
    """dataset -> step -> result, from eval/<dataset>/step-<N>/summary.json."""
    eval_curve: dict[str, dict[int, tuple[float, float | None]]] = field(default_factory=dict)
    """dataset -> step -> (accuracy, mean response length): eval dirs, completed by evals.jsonl lines."""

    @property
    def complete(self) -> bool:
        return self.status == COMPLETED

    def metric_series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps [S], values [S]) of one metric over the steps that report a finite value."""
        points = [(row["step"], row[key]) for row in self.metrics if row.get(key) is not None]
        steps = np.array([p[0] for p in points], dtype=np.float64)
        values = np.array([p[1] for p in points], dtype=np.float64)
        return steps, values

    def last_step(self) -> int | None:
        if self.status_step is not None:
            return self.status_step
        return self.metrics[-1]["step"] if self.metrics else None


def _number(value, where: str, name: str, *, optional: bool = False) -> float | None:
    """A JSON number as float; None/NaN/inf become None when optional. Bools are not numbers here."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: field {name!r} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        if optional:
            return None
        raise ValueError(f"{where}: field {name!r} must be finite, got {value!r}")
    return value


def _step(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}: field 'step' must be a non-negative integer, got {value!r}")
    return value


def read_metrics(path: Path, notes: list[str] | None = None) -> list[dict]:
    """metrics.jsonl rows (step + every numeric field), sorted by step. A step repeated with the same
    values (two processes once wrote the run) is read once, with a note; repeated with other values it
    is an error naming both lines."""
    _, repeated = deduplicated(path)
    if repeated and notes is not None:
        notes.append(f"{len(repeated)} repeated line(s) read once (same values; the next `fipo-bench run` "
                     f"of the same command removes them): {repeated[0]}")
    rows: dict[int, dict] = {}
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        if "step" not in obj:
            raise ValueError(f"{where}: missing field 'step'")
        step = _step(obj["step"], where)
        if step in rows:
            continue
        row: dict = {"step": step}
        for key, value in obj.items():
            if key == "step" or isinstance(value, (str, list, dict)):
                continue  # only numeric metrics are plotted; text fields (e.g. notes) are ignored
            row[key] = _number(value, where, key, optional=True)
        rows[step] = row
    return [rows[s] for s in sorted(rows)]


def _require(obj: dict, key: str, where: str):
    if key not in obj:
        raise ValueError(f"{where}: missing field {key!r}")
    return obj[key]


def _by_threshold(raw, where: str, name: str) -> dict[float, float]:
    """{"0.5": .., "1.0": ..} -> {0.5: .., 1.0: ..} (G-Pass@k's thresholds tau)."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: field {name!r} must be an object {{\"0.5\": .., ...}}")
    out = {}
    for tau, value in raw.items():
        try:
            threshold = float(tau)
        except ValueError:
            raise ValueError(f"{where}: field {name!r} has a non-number threshold key {tau!r}") from None
        out[threshold] = _number(value, where, f"{name}.{tau}")
    return out


def _by_k(raw, where: str, name: str, value=_number) -> dict:
    """{"1": .., "2": ..} -> {1: .., 2: ..} sorted by k; `value(v, where, field)` reads each value."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: field {name!r} must be an object {{\"1\": .., ...}}")
    out = {}
    for key, v in raw.items():
        if not str(key).isdigit():
            raise ValueError(f"{where}: field {name!r} has a non-integer key {key!r}")
        out[int(key)] = value(v, where, f"{name}.{key}")
    return dict(sorted(out.items()))


def read_eval_summary(path: Path, dataset: str, step: int) -> EvalResult:
    """Validate the fields of summary.json (schema: results/README.md) that the report uses."""
    summary = read_json(path)
    where = str(path)
    if not isinstance(summary, dict):
        raise ValueError(f"{where}: expected a JSON object")
    k = _require(summary, "k", where)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{where}: field 'k' must be a positive integer, got {k!r}")
    pass_at_k = _by_k(_require(summary, "pass_at_k", where), where, "pass_at_k")
    length = _require(summary, "response_length", where)
    if not isinstance(length, dict):
        raise ValueError(f"{where}: field 'response_length' must be an object with 'mean' and 'median'")
    per_problem = {}
    for i, item in enumerate(_require(summary, "per_problem", where)):
        if not isinstance(item, dict):
            raise ValueError(f"{where}: per_problem[{i}] must be an object")
        problem_id = str(_require(item, "problem_id", f"{where}: per_problem[{i}]"))
        per_problem[problem_id] = _number(_require(item, "accuracy", f"{where}: per_problem[{i}]"),
                                          where, f"per_problem[{i}].accuracy")
    if not per_problem:
        raise ValueError(f"{where}: field 'per_problem' is empty")
    return EvalResult(
        dataset=dataset,
        step=step,
        k=k,
        avg_at_k=_number(_require(summary, "avg_at_k", where), where, "avg_at_k"),
        pass_at_k=pass_at_k,
        cons_at_k=_number(summary.get("cons_at_k"), where, "cons_at_k", optional=True),
        maj_at_k=_by_k(summary.get("maj_at_k", {}), where, "maj_at_k"),
        g_pass_at_k=_by_k(summary.get("g_pass_at_k", {}), where, "g_pass_at_k", _by_threshold),
        mg_pass_at_k=_by_k(summary.get("mg_pass_at_k", {}), where, "mg_pass_at_k"),
        length_mean=_number(_require(length, "mean", where), where, "response_length.mean", optional=True),
        length_median=_number(_require(length, "median", where), where, "response_length.median",
                              optional=True),
        truncation_rate=_number(_require(summary, "truncation_rate", where), where, "truncation_rate",
                                optional=True),
        per_problem=per_problem,
        path=path.parent,
    )


def read_response_lengths(step_dir: Path) -> np.ndarray | None:
    """num_tokens of the samples in step_dir/generations.jsonl that have one [N]; None without the file."""
    path = step_dir / "generations.jsonl"
    if not path.is_file():
        return None
    lengths = []
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        length = _number(_require(obj, "num_tokens", where), where, "num_tokens", optional=True)
        if length is not None:
            lengths.append(length)
    return np.array(lengths, dtype=np.float64)


def read_run(path: Path, notes: list[str]) -> RunData:
    """Load one `<algo>-seed<k>/` directory. Skipped eval directories are explained in `notes`."""
    match = RUN_DIR_PATTERN.match(path.name)
    if match is None:
        raise ValueError(f"{path}: run directories are named <algo>-seed<k>")
    status_path = path / "status.json"
    status, status_step, error = MISSING_STATUS, None, None
    if status_path.is_file():
        obj = read_json(status_path)
        where = str(status_path)
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: expected a JSON object")
        status = _require(obj, "status", where)
        if status not in RUN_STATUSES:
            raise ValueError(f"{where}: field 'status' must be {'|'.join(RUN_STATUSES)}, got {status!r}")
        if obj.get("step") is not None:
            status_step = _step(obj["step"], where)
        error = obj.get("error")
    run = RunData(name=path.name, algo=match["algo"], seed=int(match["seed"]), path=path, status=status,
                  status_step=status_step, error=None if error is None else str(error))
    if (path / "metrics.jsonl").is_file():
        run.metrics = read_metrics(path / "metrics.jsonl", notes)

    eval_root = path / "eval"
    if eval_root.is_dir():
        for dataset_dir in sorted(p for p in eval_root.iterdir() if p.is_dir()):
            for step_dir in sorted(p for p in dataset_dir.iterdir() if p.is_dir()):
                step_match = STEP_DIR_PATTERN.match(step_dir.name)
                if step_match is None:
                    continue
                if not (step_dir / "summary.json").is_file():
                    notes.append(f"{step_dir}: no summary.json (evaluation unfinished?); skipped")
                    continue
                step = int(step_match["step"])
                result = read_eval_summary(step_dir / "summary.json", dataset_dir.name, step)
                run.evals.setdefault(dataset_dir.name, {})[step] = result
                run.eval_curve.setdefault(dataset_dir.name, {})[step] = (result.avg_at_k, result.length_mean)

    evals_path = path / "evals.jsonl"
    if evals_path.is_file():
        for lineno, obj in iter_jsonl(evals_path):
            where = f"{evals_path}:{lineno}"
            step = _step(_require(obj, "step", where), where)
            dataset = str(_require(obj, "dataset", where))
            accuracy = _number(_require(obj, "eval_accuracy", where), where, "eval_accuracy")
            length = _number(obj.get("eval_response_length"), where, "eval_response_length", optional=True)
            # The eval directory is the source of truth; evals.jsonl fills in steps without one.
            run.eval_curve.setdefault(dataset, {}).setdefault(step, (accuracy, length))
    run.eval_curve = {d: dict(sorted(c.items())) for d, c in sorted(run.eval_curve.items())}
    return run


def read_results(results_dir: Path, notes: list[str]) -> tuple[dict, list[RunData]]:
    """(run.json or {}, the runs sorted by algorithm then seed)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"{results_dir}: not a directory")
    run_info = {}
    if (results_dir / "run.json").is_file():
        run_info = read_json(results_dir / "run.json")
        if not isinstance(run_info, dict):
            raise ValueError(f"{results_dir / 'run.json'}: expected a JSON object")
    run_dirs = [p for p in sorted(results_dir.iterdir()) if p.is_dir() and RUN_DIR_PATTERN.match(p.name)]
    if not run_dirs:
        raise ValueError(f"{results_dir}: no <algo>-seed<k> run directories (is this a results/<run> dir?)")
    runs = [read_run(p, notes) for p in run_dirs]
    return run_info, sorted(runs, key=lambda r: (r.algo, r.seed))
