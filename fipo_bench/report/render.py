"""The report's files: report.md, a self-contained report.html (plots embedded as data URIs),
summary.csv and the PNG plots (fipo_bench.report.plots), each written atomically."""

from __future__ import annotations

import base64
import csv
import html
import io
from pathlib import Path

from fipo_bench.io import atomic_write_text
from fipo_bench.report.compare import DEFAULT_MIN_EFFECT, Report, build_report
from fipo_bench.report.plots import write_plots
from fipo_bench.report.tables import Table, all_tables, seed_list
from fipo_bench.results import COMPLETED


def _metric_columns(pass_at_k: dict, maj_at_k: dict, g_pass_at_k: dict, mg_pass_at_k: dict) -> dict:
    columns = {f"pass_at_{j}": v for j, v in pass_at_k.items()}
    columns.update({f"maj_at_{j}": v for j, v in maj_at_k.items()})
    columns.update({f"g_pass_at_{j}_{tau:g}": v
                    for j, by_tau in g_pass_at_k.items() for tau, v in by_tau.items()})
    columns.update({f"mg_pass_at_{j}": v for j, v in mg_pass_at_k.items()})
    return columns


def _pair(prefix: str, ci: tuple[float, float] | None) -> dict:
    return {f"{prefix}_low": None if ci is None else ci[0], f"{prefix}_high": None if ci is None else ci[1]}


def summary_csv_rows(report: Report) -> list[dict]:
    """One `aggregate` row per (dataset, algorithm) over completed seeds, one `across_datasets` row per
    algorithm when there are several datasets, one `run` row per run."""
    comparisons = {(c.dataset, c.algo): c for c in report.comparisons}
    fits = {(f.dataset, f.algo): f for f in report.fits}
    speed = {(s.dataset, s.algo): s for s in report.speed}
    rows = []
    for e in report.evals:
        row = {"dataset": e.dataset, "algorithm": e.algo, "kind": "aggregate", "seeds": seed_list(e.seeds),
               "status": COMPLETED, "step": seed_list(sorted(set(e.steps))), "k": e.k,
               "num_problems": e.num_problems, "avg_at_k": e.avg_at_k, **_pair("avg_at_k_seed_ci", e.seed_ci),
               **_pair("avg_at_k_problem_ci", e.problem_ci), "iqm": e.iqm, **_pair("iqm_ci", e.iqm_ci),
               "cons_at_k": e.cons_at_k, "length_mean": e.length_mean, "length_median": e.length_median,
               "truncation_rate": e.truncation_rate}
        row.update(_metric_columns(e.pass_at_k, e.maj_at_k, e.g_pass_at_k, e.mg_pass_at_k))
        if (c := comparisons.get((e.dataset, e.algo))) is not None:
            t = c.test
            row.update({"baseline": c.baseline, "diff_vs_baseline": t.mean, **_pair("diff_ci", t.ci),
                        "diff_p_value": t.p_value, "diff_test": t.design, "diff_seeds": seed_list(t.seeds_a),
                        "diff_baseline_seeds": seed_list(t.seeds_b), "diff_num_problems": c.num_problems,
                        "prob_improvement": c.improvement, **_pair("prob_improvement_ci", c.improvement_ci),
                        "seeds_needed_observed": c.seeds_needed_observed,
                        "seeds_needed_min_effect": c.seeds_needed_min_effect,
                        "min_effect": report.min_effect})
        if (f := fits.get((e.dataset, e.algo))) is not None:
            row.update({"fit_r0": f.fit.r0, "fit_a": f.fit.a, **_pair("fit_a_ci", f.a_ci), "fit_b": f.fit.b,
                        **_pair("fit_b_ci", f.b_ci), "fit_c_mid": f.fit.c_mid, "fit_rmse": f.fit.rmse,
                        "fit_points": f.fit.points, "fit_rank": f.rank, "fit_reliable": f.fit.reliable,
                        "fit_flags": "; ".join(f.fit.flags)})
        if (s := speed.get((e.dataset, e.algo))) is not None:
            row.update({"eval_auc": s.auc, "steps_to_threshold": s.steps_to_threshold,
                        "threshold": s.threshold})
        rows.append(row)
    for a in report.across_datasets:
        rows.append({"dataset": "+".join(a.datasets), "algorithm": a.algo, "kind": "across_datasets",
                     "seeds": seed_list(a.seeds), "status": COMPLETED, "iqm": a.iqm,
                     **_pair("iqm_ci", a.iqm_ci),
                     "baseline": report.baseline, "prob_improvement": a.improvement,
                     **_pair("prob_improvement_ci", a.improvement_ci)})
    for run in report.runs:
        for dataset, by_step in run.evals.items():
            res = by_step[max(by_step)]
            row = {"dataset": dataset, "algorithm": run.algo, "kind": "run", "seeds": str(run.seed),
                   "status": run.status, "step": res.step, "k": res.k, "num_problems": len(res.per_problem),
                   "avg_at_k": res.avg_at_k, "cons_at_k": res.cons_at_k, "length_mean": res.length_mean,
                   "length_median": res.length_median, "truncation_rate": res.truncation_rate}
            row.update(_metric_columns(res.pass_at_k, res.maj_at_k, res.g_pass_at_k, res.mg_pass_at_k))
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
    "Eval numbers are each run's last evaluation on the dataset, averaged over seeds. A run's score is its "
    "avg@k (mean over problems of the share of correct samples).",
    "Training runs are the unit of every CI and test between algorithms (two runs of one algorithm from "
    "different seeds differ): the CI of an algorithm's avg@k is a t-interval over its runs; the difference "
    "against the baseline is tested by a paired t-test over the seeds both completed (Welch's t-test when "
    "they share fewer than two), with a t-interval. One run on a side: no p-value or CI (the run-to-run "
    "spread is unknown). Calibration: in simulations with run-level and run x problem effects (4,000 A/A "
    "comparisons each), the false-positive rate at nominal 5% was 4.6% and 5.4% with 3 and 8 paired seeds "
    "(Welch: 3.3% and 5.3%), against 13-16% for a problem-level permutation test (tests/test_seed_stats.py).",
    "95% CI over problems: percentile bootstrap (10,000 resamples, seed 0) over problems of the per-problem "
    "accuracy averaged over seeds: how precisely these checkpoints are measured on this problem set, not a "
    "CI for the algorithm.",
    "IQM and P(run > baseline run): rliable's definitions (Agarwal et al. 2021) over the runs' avg@k, with "
    "95% percentile stratified-bootstrap CIs (10,000 resamples, seed 0; few seeds give few distinct "
    "resamples, so these CIs are rough below ~5 runs).",
    "Seeds for 80% power: the number of seeds (paired: shared seeds; Welch: runs per algorithm) at which the "
    "same t-test detects the difference 80% of the time at 5%, from the observed between-seed standard "
    "deviation (noncentral t).",
    "Compute-performance fits: ScaleRL's Eq. 1 (arXiv 2510.13786) by least squares on the seed-mean eval "
    "curve against cumulative training tokens (generated + trained; read from metrics.jsonl's "
    "generated_tokens/trained_tokens, else tokens_per_s x step_time_s and the kept share of generated "
    "groups); CIs by leave-one-seed-out jackknife; flagged unreliable when A is on a bound, C_mid lies "
    "beyond the data, B is on its search bound, fewer than 4 points, or residuals exceed twice the points' "
    "standard errors.",
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
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = write_plots(report, out_dir)
    tables = all_tables(report)
    atomic_write_text(out_dir / "summary.csv", _csv_text(summary_csv_rows(report)))
    atomic_write_text(out_dir / "report.md", _markdown(report, tables, plots))
    atomic_write_text(out_dir / "report.html", _html(report, tables, plots, out_dir))
    return out_dir


def write_report(results_dir: str | Path, out_dir: str | Path | None = None, baseline: str = "dapo",
                 min_effect: float = DEFAULT_MIN_EFFECT) -> Path:
    """Build the report of results/<run> and write it to out_dir (default: results/<run>/report)."""
    report = build_report(results_dir, baseline, min_effect)
    out = Path(out_dir) if out_dir is not None else Path(results_dir) / "report"
    return write_report_files(report, out)
