"""`fipo-bench report`: compare algorithms across seeds from a results/<run> directory.

Reads only the files described in results/README.md (fipo_bench.report_data) and writes report.md,
a self-contained report.html (plots embedded as data URIs), summary.csv and PNG plots
(fipo_bench.report_plots).

How numbers are aggregated (also printed in the report's "Method" section):
- Only runs whose status.json says "completed" enter means, bands, CIs and tests. Running, failed and
  status-less runs are listed in their own table (with their last evaluation), drawn as thin dashed
  lines in the curve plots, and written to summary.csv as `kind=run` rows with their status.
- Eval table: each run's last evaluation per dataset. avg@k, pass@k, cons@k, lengths and truncation are
  means over seeds of summary.json's values; the 95% CI of avg@k is a percentile bootstrap over
  problems of the per-problem accuracy averaged over seeds.
- Paired difference against the baseline: seeds completed by both algorithms and problems evaluated in
  all of those runs; per problem, the accuracy difference averaged over seeds; its mean, a percentile
  bootstrap CI over problems, and a two-sided sign-flip permutation p-value (fipo_bench.stats).
- Learning speed: on the seed-mean eval accuracy curve, the normalized area under the curve (mean
  accuracy over training) and the first step reaching half of the baseline's gain from its first
  evaluation to its last.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fipo_bench.io import atomic_write_text
from fipo_bench.report_data import COMPLETED, EvalResult, RunData, read_results
from fipo_bench.stats import (
    align_on_common_steps,
    first_step_reaching,
    normalized_auc,
    paired_permutation_pvalue,
)

# Share of the baseline's eval-accuracy gain that defines "steps to threshold".
THRESHOLD_GAIN_FRACTION = 0.5


@dataclass(frozen=True)
class EvalAggregate:
    """One algorithm's final evaluation on one dataset, over its completed seeds."""

    dataset: str
    algo: str
    seeds: tuple[int, ...]
    steps: tuple[int, ...]
    """Final eval step of each seed (same order as seeds)."""
    k: int
    num_problems: int
    avg_at_k: float
    avg_at_k_ci: tuple[float, float]
    avg_at_k_by_seed: tuple[float, ...]
    pass_at_k: dict[int, float]
    cons_at_k: float | None
    length_mean: float | None
    length_median: float | None
    truncation_rate: float | None


@dataclass(frozen=True)
class PairedDiff:
    """avg@k of `algo` minus `baseline` over the same problems and seeds."""

    dataset: str
    algo: str
    baseline: str
    seeds: tuple[int, ...]
    num_problems: int
    mean: float
    ci: tuple[float, float]
    p_value: float


@dataclass(frozen=True)
class LearningSpeed:
    """The seed-mean eval accuracy curve of one algorithm on one dataset, summarized."""

    dataset: str
    algo: str
    first_accuracy: float
    final_accuracy: float
    auc: float
    threshold: float | None
    steps_to_threshold: int | None


@dataclass(frozen=True)
class TrainingSummary:
    """Training metrics of one algorithm, means over its completed seeds."""

    algo: str
    seeds: tuple[int, ...]
    last_step: int | None
    final_accuracy: float | None
    accuracy_auc: float | None
    final_length: float | None
    tokens_per_s: float | None


@dataclass
class Table:
    """A rendered-agnostic table: the same cells go to markdown, HTML and the terminal."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Report:
    """Everything the report shows, computed from the results directory."""

    results_dir: Path
    baseline: str
    run_info: dict
    runs: list[RunData]
    algos: list[str]
    """Display order (run.json's order, then alphabetical); fixes each algorithm's colour."""
    datasets: list[str]
    evals: list[EvalAggregate] = field(default_factory=list)
    diffs: list[PairedDiff] = field(default_factory=list)
    speed: list[LearningSpeed] = field(default_factory=list)
    training: list[TrainingSummary] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def complete_runs(self, algo: str) -> list[RunData]:
        return [r for r in self.runs if r.algo == algo and r.complete]

    @property
    def incomplete_runs(self) -> list[RunData]:
        return [r for r in self.runs if not r.complete]


def _bootstrap_ci(values: Sequence[float]) -> tuple[float, float]:
    from fipo_bench.evals.metrics import bootstrap_ci

    low, high = bootstrap_ci(list(values), confidence=0.95, n_boot=10_000, seed=0)
    return float(low), float(high)


def _algo_order(run_info: dict, runs: list[RunData]) -> list[str]:
    listed = run_info.get("algos") or []
    if isinstance(listed, str):
        listed = [a.strip() for a in listed.split(",")]
    present = {r.algo for r in runs}
    ordered = [a for a in listed if a in present]
    return ordered + sorted(present - set(ordered))


def _final_results(runs: list[RunData], dataset: str) -> list[tuple[RunData, EvalResult]]:
    return [(r, r.evals[dataset][max(r.evals[dataset])]) for r in runs if r.evals.get(dataset)]


def _common_problems(results: Sequence[EvalResult]) -> list[str]:
    """Problems present in every result, in the first one's order (so that with one seed the bootstrap
    sees the same sequence as summary.json's own avg_at_k_ci95)."""
    common = set.intersection(*(set(r.per_problem) for r in results))
    return [p for p in results[0].per_problem if p in common]


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    """Mean over seeds; None if any seed lacks the value (no mean over a different set of seeds)."""
    return None if not values or any(v is None for v in values) else float(np.mean(values))


def _aggregate_eval(dataset: str, algo: str, finals: list[tuple[RunData, EvalResult]],
                    notes: list[str]) -> EvalAggregate:
    results = [res for _, res in finals]
    ks = {res.k for res in results}
    if len(ks) > 1:
        notes.append(f"{dataset}/{algo}: seeds were evaluated with different k {sorted(ks)}")
    problems = _common_problems(results)
    if any(len(res.per_problem) != len(problems) for res in results):
        notes.append(f"{dataset}/{algo}: seeds evaluated different problem sets; the CI uses the "
                     f"{len(problems)} problems they share")
    # [P] accuracy per problem, averaged over seeds: the bootstrap unit is the problem.
    per_problem = np.array([np.mean([res.per_problem[p] for res in results]) for p in problems])
    pass_keys = sorted(set.intersection(*(set(res.pass_at_k) for res in results)))
    return EvalAggregate(
        dataset=dataset,
        algo=algo,
        seeds=tuple(run.seed for run, _ in finals),
        steps=tuple(res.step for res in results),
        k=max(ks),
        num_problems=len(problems),
        avg_at_k=float(np.mean([res.avg_at_k for res in results])),
        avg_at_k_ci=_bootstrap_ci(per_problem) if problems else (float("nan"), float("nan")),
        avg_at_k_by_seed=tuple(res.avg_at_k for res in results),
        pass_at_k={j: float(np.mean([res.pass_at_k[j] for res in results])) for j in pass_keys},
        cons_at_k=_mean_or_none([res.cons_at_k for res in results]),
        length_mean=_mean_or_none([res.length_mean for res in results]),
        length_median=_mean_or_none([res.length_median for res in results]),
        truncation_rate=_mean_or_none([res.truncation_rate for res in results]),
    )


def _paired_diff(dataset: str, algo: str, baseline: str, algo_finals, base_finals,
                 notes: list[str]) -> PairedDiff | None:
    algo_by_seed = {run.seed: res for run, res in algo_finals}
    base_by_seed = {run.seed: res for run, res in base_finals}
    seeds = sorted(set(algo_by_seed) & set(base_by_seed))
    if not seeds:
        notes.append(f"{dataset}: {algo} and {baseline} share no completed seed; no paired difference")
        return None
    for s in seeds:
        if algo_by_seed[s].step != base_by_seed[s].step:
            notes.append(f"{dataset}: seed {s} compares {algo} at step {algo_by_seed[s].step} with "
                         f"{baseline} at step {base_by_seed[s].step} (their last evaluations)")
    problems = _common_problems([algo_by_seed[s] for s in seeds] + [base_by_seed[s] for s in seeds])
    if not problems:
        notes.append(f"{dataset}: {algo} and {baseline} share no evaluated problem; no paired difference")
        return None
    # [P] per-problem difference, averaged over the shared seeds.
    diffs = np.array([np.mean([algo_by_seed[s].per_problem[p] - base_by_seed[s].per_problem[p]
                               for s in seeds]) for p in problems])
    return PairedDiff(dataset=dataset, algo=algo, baseline=baseline, seeds=tuple(seeds),
                      num_problems=len(problems), mean=float(diffs.mean()), ci=_bootstrap_ci(diffs),
                      p_value=paired_permutation_pvalue(diffs))


def _mean_eval_curve(runs: list[RunData], dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps [S], seed-mean accuracy [S]) on the eval steps every run has."""
    curves = [(list(r.eval_curve[dataset]), [a for a, _ in r.eval_curve[dataset].values()])
              for r in runs if r.eval_curve.get(dataset)]
    steps, values = align_on_common_steps(curves)
    return steps, values.mean(axis=0) if values.size else np.zeros(0)


def _learning_speed(report: Report, dataset: str) -> list[LearningSpeed]:
    curves = {a: _mean_eval_curve(report.complete_runs(a), dataset) for a in report.algos}
    threshold = None
    base_steps, base_acc = curves.get(report.baseline, (np.zeros(0), np.zeros(0)))
    if base_steps.size >= 2 and base_acc[-1] > base_acc[0]:
        threshold = float(base_acc[0] + THRESHOLD_GAIN_FRACTION * (base_acc[-1] - base_acc[0]))
    rows = []
    for algo, (steps, acc) in curves.items():
        if steps.size == 0:
            continue
        reached = first_step_reaching(steps, acc, threshold) if threshold is not None else None
        rows.append(LearningSpeed(dataset=dataset, algo=algo, first_accuracy=float(acc[0]),
                                  final_accuracy=float(acc[-1]), auc=normalized_auc(steps, acc),
                                  threshold=threshold,
                                  steps_to_threshold=None if reached is None else int(reached)))
    return rows


def _training_summary(algo: str, runs: list[RunData]) -> TrainingSummary:
    def seed_mean(key: str, reduce) -> float | None:
        values = [reduce(*r.metric_series(key)) for r in runs if r.metric_series(key)[0].size]
        return float(np.mean(values)) if values else None

    steps, acc = align_on_common_steps([r.metric_series("accuracy") for r in runs])
    return TrainingSummary(
        algo=algo,
        seeds=tuple(r.seed for r in runs),
        last_step=max((r.metrics[-1]["step"] for r in runs if r.metrics), default=None),
        final_accuracy=seed_mean("accuracy", lambda s, v: v[-1]),
        accuracy_auc=normalized_auc(steps, acc.mean(axis=0)) if steps.size else None,
        final_length=seed_mean("response_length_mean", lambda s, v: v[-1]),
        tokens_per_s=seed_mean("tokens_per_s", lambda s, v: v.mean()),
    )


def build_report(results_dir: str | Path, baseline: str = "dapo") -> Report:
    """Read a results/<run> directory and compute every table of the report."""
    notes: list[str] = []
    run_info, runs = read_results(Path(results_dir), notes)
    datasets = sorted({d for r in runs for d in r.evals} | {d for r in runs for d in r.eval_curve})
    report = Report(results_dir=Path(results_dir), baseline=baseline, run_info=run_info, runs=runs,
                    algos=_algo_order(run_info, runs), datasets=datasets, notes=notes)
    if not report.complete_runs(baseline):
        notes.append(f"baseline {baseline!r} has no completed run; paired differences and steps-to-threshold "
                     f"are omitted (choose another with --baseline)")
    for dataset in datasets:
        base_finals = _final_results(report.complete_runs(baseline), dataset)
        for algo in report.algos:
            finals = _final_results(report.complete_runs(algo), dataset)
            if not finals:
                continue
            report.evals.append(_aggregate_eval(dataset, algo, finals, notes))
            if algo != baseline and base_finals:
                diff = _paired_diff(dataset, algo, baseline, finals, base_finals, notes)
                if diff is not None:
                    report.diffs.append(diff)
        report.speed.extend(_learning_speed(report, dataset))
    for algo in report.algos:
        if report.complete_runs(algo):
            report.training.append(_training_summary(algo, report.complete_runs(algo)))
    return report


# ---------------------------------------------------------------------------------------------------
# Tables (formatted cells shared by markdown, HTML and the terminal)


def _pct(x: float | None) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{100 * x:.1f}"


def _signed_pp(x: float) -> str:
    return f"{100 * x:+.1f}"


def _num(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _seeds(seeds: Sequence[int]) -> str:
    return ",".join(str(s) for s in seeds)


def eval_tables(report: Report) -> list[Table]:
    """One table per dataset: final-evaluation metrics and the paired difference against the baseline."""
    tables = []
    diffs = {(d.dataset, d.algo): d for d in report.diffs}
    for dataset in report.datasets:
        rows_data = [e for e in report.evals if e.dataset == dataset]
        if not rows_data:
            continue
        k = max(e.k for e in rows_data)
        # pass@j is reported for powers of two; show the largest one every row has.
        pass_j = max(set.intersection(*(set(e.pass_at_k) for e in rows_data)), default=None)
        columns = ["algorithm", "seeds", "step", f"avg@{k} % [95% CI]", "avg@k by seed", f"pass@{pass_j} %",
                   f"cons@{k} %", "len mean", "len median", "trunc %",
                   f"Δ vs {report.baseline} pp [95% CI]", "p (perm.)"]
        rows = []
        for e in rows_data:
            steps = sorted(set(e.steps))
            diff = diffs.get((dataset, e.algo))
            if e.algo == report.baseline:
                diff_cells = ["baseline", ""]
            elif diff is None:
                diff_cells = ["-", "-"]
            else:
                diff_cells = [f"{_signed_pp(diff.mean)} [{_signed_pp(diff.ci[0])}, {_signed_pp(diff.ci[1])}]",
                              _p(diff.p_value)]
            rows.append([
                e.algo, _seeds(e.seeds), ",".join(map(str, steps)),
                f"{_pct(e.avg_at_k)} [{_pct(e.avg_at_k_ci[0])}, {_pct(e.avg_at_k_ci[1])}]",
                " / ".join(_pct(a) for a in e.avg_at_k_by_seed),
                _pct(e.pass_at_k.get(pass_j)), _pct(e.cons_at_k), _num(e.length_mean), _num(e.length_median),
                _pct(e.truncation_rate), *diff_cells,
            ])
        num_problems = sorted({e.num_problems for e in rows_data})
        caption = (f"Last evaluation of each completed run on {dataset} ({'/'.join(map(str, num_problems))} "
                   f"problems, k={k} samples each). Percentages; lengths in tokens. Means over seeds; CI: "
                   f"bootstrap over problems. Δ: paired over the same problems and seeds, in percentage "
                   f"points; p: two-sided sign-flip permutation test.")
        excluded = [r.name for r in report.incomplete_runs if r.evals.get(dataset)]
        if excluded:
            caption += f" Not included (incomplete, see below): {', '.join(excluded)}."
        tables.append(Table(f"Evaluation: {dataset}", columns, rows, caption))
    return tables


def speed_table(report: Report) -> Table | None:
    if not report.speed:
        return None
    rows = []
    for s in report.speed:
        if s.threshold is None:
            reach = "-"
        else:
            reach = "not reached" if s.steps_to_threshold is None else str(s.steps_to_threshold)
        rows.append([s.dataset, s.algo, _pct(s.first_accuracy), _pct(s.final_accuracy), _pct(s.auc),
                     "-" if s.threshold is None else _pct(s.threshold), reach])
    caption = (f"Seed-mean eval accuracy curve of completed runs. AUC: area under the curve divided by the "
               f"step span (= mean accuracy over training). Threshold: {report.baseline}'s first accuracy + "
               f"{THRESHOLD_GAIN_FRACTION:g} x its gain by the last evaluation.")
    return Table("Learning speed", ["dataset", "algorithm", "first eval %", "last eval %", "eval AUC %",
                                    "threshold %", "steps to threshold"], rows, caption)


def training_table(report: Report) -> Table | None:
    if not report.training:
        return None
    rows = [[t.algo, _seeds(t.seeds), "-" if t.last_step is None else str(t.last_step),
             _pct(t.final_accuracy), _pct(t.accuracy_auc), _num(t.final_length), _num(t.tokens_per_s, 0)]
            for t in report.training]
    caption = ("Training-batch metrics (metrics.jsonl) of completed runs, means over seeds. Final values are "
               "the last step's; AUC is the mean training accuracy over the steps all seeds logged.")
    return Table("Training", ["algorithm", "seeds", "last step", "final train acc %", "train acc AUC %",
                              "final mean length (tokens)", "tokens/s"], rows, caption)


def incomplete_table(report: Report) -> Table | None:
    runs = report.incomplete_runs
    if not runs:
        return None
    rows = []
    for r in runs:
        last_evals = "; ".join(f"{d} step {max(c)}: {_pct(c[max(c)][0])}%"
                               for d, c in r.eval_curve.items() if c)
        error = (r.error or "").replace("\n", " ")
        rows.append([r.name, r.status, "-" if r.last_step() is None else str(r.last_step()),
                     last_evals or "-", error[:120] + ("..." if len(error) > 120 else "")])
    caption = ("Runs not marked completed in status.json. They are excluded from every mean, band, CI and "
               "test above and drawn as thin dashed lines in the curve plots.")
    return Table("Incomplete runs (excluded from aggregates)", ["run", "status", "last step",
                                                                "last eval accuracy", "error"], rows, caption)


def all_tables(report: Report) -> list[Table]:
    tables = eval_tables(report)
    for extra in (speed_table(report), training_table(report), incomplete_table(report)):
        if extra is not None:
            tables.append(extra)
    return tables


# ---------------------------------------------------------------------------------------------------
# Output files


def summary_csv_rows(report: Report) -> list[dict]:
    """One `aggregate` row per (dataset, algorithm) over completed seeds, one `run` row per run."""
    diffs = {(d.dataset, d.algo): d for d in report.diffs}
    speed = {(s.dataset, s.algo): s for s in report.speed}
    rows = []
    for e in report.evals:
        row = {"dataset": e.dataset, "algorithm": e.algo, "kind": "aggregate", "seeds": _seeds(e.seeds),
               "status": COMPLETED, "step": _seeds(sorted(set(e.steps))), "k": e.k,
               "num_problems": e.num_problems, "avg_at_k": e.avg_at_k, "avg_at_k_ci_low": e.avg_at_k_ci[0],
               "avg_at_k_ci_high": e.avg_at_k_ci[1], "cons_at_k": e.cons_at_k, "length_mean": e.length_mean,
               "length_median": e.length_median, "truncation_rate": e.truncation_rate}
        row.update({f"pass_at_{j}": v for j, v in e.pass_at_k.items()})
        if (diff := diffs.get((e.dataset, e.algo))) is not None:
            row.update({"baseline": diff.baseline, "diff_vs_baseline": diff.mean, "diff_ci_low": diff.ci[0],
                        "diff_ci_high": diff.ci[1], "diff_p_value": diff.p_value,
                        "diff_num_problems": diff.num_problems, "diff_seeds": _seeds(diff.seeds)})
        if (s := speed.get((e.dataset, e.algo))) is not None:
            row.update({"eval_auc": s.auc, "steps_to_threshold": s.steps_to_threshold,
                        "threshold": s.threshold})
        rows.append(row)
    for run in report.runs:
        for dataset, by_step in run.evals.items():
            res = by_step[max(by_step)]
            row = {"dataset": dataset, "algorithm": run.algo, "kind": "run", "seeds": str(run.seed),
                   "status": run.status, "step": res.step, "k": res.k, "num_problems": len(res.per_problem),
                   "avg_at_k": res.avg_at_k, "cons_at_k": res.cons_at_k, "length_mean": res.length_mean,
                   "length_median": res.length_median, "truncation_rate": res.truncation_rate}
            row.update({f"pass_at_{j}": v for j, v in res.pass_at_k.items()})
            rows.append(row)
        if not run.evals:
            rows.append({"dataset": "", "algorithm": run.algo, "kind": "run", "seeds": str(run.seed),
                         "status": run.status, "step": run.last_step()})
    return rows


def _csv_text(rows: list[dict]) -> str:
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: ("" if row.get(c) is None else repr(row[c]) if isinstance(row.get(c), float)
                             else row[c]) for c in columns})
    return buffer.getvalue()


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown(report: Report, tables: list[Table], plots: list[tuple[str, str]]) -> str:
    lines = [f"# fipo-bench report: {report.results_dir.name}", ""]
    lines += [f"- {key}: {value}" for key, value in _run_facts(report)] + [""]
    for table in tables:
        lines += [f"## {table.title}", "", "| " + " | ".join(map(_md_cell, table.columns)) + " |",
                  "|" + "---|" * len(table.columns)]
        lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in table.rows]
        lines += ["", table.caption, ""]
    if plots:
        lines += ["## Plots", ""]
        for filename, caption in plots:
            lines += [f"![{caption}]({filename})", "", caption, ""]
    lines += ["## Method", "", *[f"- {m}" for m in METHOD], ""]
    if report.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in report.notes], ""]
    return "\n".join(lines)


METHOD = [
    "Only runs with status.json `completed` enter means, bands, CIs and tests; other runs are listed in "
    "'Incomplete runs', drawn as thin dashed lines, and written to summary.csv as `kind=run` rows.",
    "Eval numbers are each run's last evaluation on the dataset, averaged over seeds.",
    "avg@k CI: 95% percentile bootstrap (10,000 resamples, seed 0) over problems of the per-problem "
    "accuracy averaged over seeds.",
    "Δ vs baseline: per problem, the accuracy difference averaged over the seeds both algorithms completed; "
    "CI: 95% percentile bootstrap over problems; p: two-sided sign-flip permutation test on those "
    "differences (exact when at most 16 are non-zero, otherwise 100,000 random flips, seed 0).",
    "Curves: mean over completed seeds on the steps every seed logged; the band spans the seeds' min to max.",
]


def _run_facts(report: Report) -> list[tuple[str, str]]:
    info = report.run_info
    facts = [(key, str(info[key])) for key in ("status", "preset", "backend", "started_at", "finished_at",
                                               "git_commit", "command") if info.get(key) not in (None, "")]
    counts = ", ".join(f"{a}: {len(report.complete_runs(a))}/{sum(r.algo == a for r in report.runs)}"
                       for a in report.algos)
    facts.append(("completed runs per algorithm", counts))
    facts.append(("baseline", report.baseline))
    return facts


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
caption { caption-side: bottom; text-align: left; color: #555; font-size: 0.9em; padding-top: 0.3em; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
figcaption { color: #555; font-size: 0.9em; }
"""


def _html(report: Report, tables: list[Table], plots: list[tuple[str, str]], out_dir: Path) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>fipo-bench report: {e(report.results_dir.name)}</title>",
             f"<style>{_CSS}</style></head><body>",
             f"<h1>fipo-bench report: {e(report.results_dir.name)}</h1><ul>"]
    parts += [f"<li>{e(k)}: {e(v)}</li>" for k, v in _run_facts(report)]
    parts.append("</ul>")
    for table in tables:
        parts.append(f"<h2>{e(table.title)}</h2><table><caption>{e(table.caption)}</caption><thead><tr>")
        parts += [f"<th>{e(c)}</th>" for c in table.columns]
        parts.append("</tr></thead><tbody>")
        for row in table.rows:
            parts.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
        parts.append("</tbody></table>")
    if plots:
        parts.append("<h2>Plots</h2>")
    for filename, caption in plots:
        data = base64.b64encode((out_dir / filename).read_bytes()).decode("ascii")
        parts.append(f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{e(caption)}\">"
                     f"<figcaption>{e(caption)}</figcaption></figure>")
    parts.append("<h2>Method</h2><ul>" + "".join(f"<li>{e(m)}</li>" for m in METHOD) + "</ul>")
    if report.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in report.notes) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report_files(report: Report, out_dir: Path) -> Path:
    """Write plots, summary.csv, report.md and report.html into out_dir (each file atomically)."""
    from fipo_bench.report_plots import write_plots

    out_dir.mkdir(parents=True, exist_ok=True)
    plots = write_plots(report, out_dir)
    tables = all_tables(report)
    atomic_write_text(out_dir / "summary.csv", _csv_text(summary_csv_rows(report)))
    atomic_write_text(out_dir / "report.md", _markdown(report, tables, plots))
    atomic_write_text(out_dir / "report.html", _html(report, tables, plots, out_dir))
    return out_dir


def write_report(results_dir: str | Path, out_dir: str | Path | None = None, baseline: str = "dapo") -> Path:
    """Build the report of results/<run> and write it to out_dir (default: results/<run>/report)."""
    report = build_report(results_dir, baseline)
    out = Path(out_dir) if out_dir is not None else Path(results_dir) / "report"
    return write_report_files(report, out)
