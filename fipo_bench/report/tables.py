"""The report's tables as formatted cells, shared by markdown, HTML and the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fipo_bench.report.compare import SIGNIFICANCE, THRESHOLD_GAIN_FRACTION, Report

DISAGREE_MARK = "†"


def plural(n: int, word: str) -> str:
    """'1 seed', '2 seeds'."""
    return f"{n} {word}{'s' * (n != 1)}"


@dataclass
class Table:
    """A rendered-agnostic table: the same cells go to markdown, HTML and the terminal."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""


def _pct(x: float | None) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{100 * x:.1f}"


def _signed_pp(x: float) -> str:
    return f"{100 * x:+.1f}"


def _num(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def seed_list(seeds: Sequence[int]) -> str:
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
                              _p(diff.p_value) + (f" {DISAGREE_MARK}" if diff.tests_disagree else "")]
            rows.append([
                e.algo, seed_list(e.seeds), ",".join(map(str, steps)),
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
        if any(d.tests_disagree for d in report.diffs if d.dataset == dataset):
            caption += (f" {DISAGREE_MARK} The bootstrap CI and the permutation test disagree about "
                        f"{SIGNIFICANCE:.0%} significance: with few problems the percentile bootstrap is too "
                        f"narrow, so the p-value decides (significant only when p < {SIGNIFICANCE:g}).")
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
    rows = [[t.algo, seed_list(t.seeds), "-" if t.last_step is None else str(t.last_step),
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
