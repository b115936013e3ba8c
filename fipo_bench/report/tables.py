"""The report's tables as formatted cells, shared by markdown, HTML and the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fipo_bench.report.compare import (
    NO_TEST_REASON,
    SIGNIFICANCE,
    SUGGESTED_SEEDS,
    THRESHOLD_GAIN_FRACTION,
    Report,
)


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


def _ci(ci: tuple[float, float] | None, fmt=_pct) -> str:
    return "-" if ci is None else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def _largest_shared(dicts) -> int | None:
    """The largest k every row reports (pass@k etc. are reported for powers of two)."""
    return max(set.intersection(*(set(d) for d in dicts)), default=None) if dicts else None


def eval_tables(report: Report) -> list[Table]:
    """Per dataset: the final-evaluation metrics of each algorithm, then its G-Pass@k and maj@k."""
    tables = []
    for dataset in report.datasets:
        rows_data = [e for e in report.evals if e.dataset == dataset]
        if not rows_data:
            continue
        k = max(e.k for e in rows_data)
        pass_j = _largest_shared([e.pass_at_k for e in rows_data])
        columns = ["algorithm", "seeds", "step", f"avg@{k} %", "95% CI over runs", "95% CI over problems",
                   "IQM over runs % [95% CI]", "avg@k by seed", f"pass@{pass_j} %", f"cons@{k} %", "len mean",
                   "len median", "trunc %"]
        rows = []
        for e in rows_data:
            iqm = "-" if e.iqm is None else f"{_pct(e.iqm)} {_ci(e.iqm_ci)}"
            rows.append([
                e.algo, seed_list(e.seeds), ",".join(map(str, sorted(set(e.steps)))), _pct(e.avg_at_k),
                _ci(e.seed_ci), _ci(e.problem_ci), iqm, " / ".join(_pct(a) for a in e.avg_at_k_by_seed),
                _pct(e.pass_at_k.get(pass_j)), _pct(e.cons_at_k), _num(e.length_mean), _num(e.length_median),
                _pct(e.truncation_rate),
            ])
        num_problems = sorted({e.num_problems for e in rows_data})
        caption = (f"Last evaluation of each completed run on {dataset} ({'/'.join(map(str, num_problems))} "
                   f"problems, k={k} samples each). Percentages; lengths in tokens; means over runs. "
                   f"95% CI over runs: t-interval with the training runs as the unit (what another set of "
                   f"seeds would give; none with one run). 95% CI over problems: bootstrap over this "
                   f"evaluation set's problems of the seed-mean per-problem accuracy (how precisely these "
                   f"checkpoints are measured on these problems; it ignores run-to-run variance, so it is no "
                   f"CI for the algorithm). IQM: interquartile mean of the runs' avg@k with a stratified-"
                   f"bootstrap CI (rliable; equals the mean below 4 runs).")
        excluded = [r.name for r in report.incomplete_runs if r.evals.get(dataset)]
        if excluded:
            caption += f" Not included (incomplete, see below): {', '.join(excluded)}."
        tables.append(Table(f"Evaluation: {dataset}", columns, rows, caption))
        tables.extend(_sampling_table(dataset, rows_data))
    return tables


def _sampling_table(dataset: str, rows_data) -> list[Table]:
    k = _largest_shared([e.g_pass_at_k for e in rows_data])
    if k is None or k < 2:  # with one sample per problem all of these are avg@1 (and mG-Pass@1 is 0)
        return []
    taus = sorted(set.intersection(*(set(e.g_pass_at_k[k]) for e in rows_data)))
    maj_k = _largest_shared([e.maj_at_k for e in rows_data])
    columns = ["algorithm", f"maj@{maj_k} %", *[f"G-Pass@{k} τ={tau:g} %" for tau in taus], f"mG-Pass@{k} %"]
    rows = [[e.algo, _pct(e.maj_at_k.get(maj_k)), *[_pct(e.g_pass_at_k[k][tau]) for tau in taus],
             _pct(e.mg_pass_at_k.get(k))] for e in rows_data]
    caption = (f"Means over runs. maj@{maj_k}: accuracy of a majority vote of {maj_k} samples, the "
               f"unbiased mean over every {maj_k}-subset of a problem's samples (ties split). G-Pass@{k} τ: "
               f"chance that at least max(ceil({k}τ), 1) of {k} samples are correct (τ = 0 is pass@{k}); "
               f"mG-Pass@{k}: (2/{k}) x the sum of G-Pass@{k} at i/{k} correct for i from ceil({k}/2) + 1 "
               f"to {k} (arXiv 2412.13147, as open-compass/GPassK and lighteval compute them).")
    return [Table(f"G-Pass@k and maj@k: {dataset}", columns, rows, caption)]


def comparison_tables(report: Report) -> list[Table]:
    """Per dataset: each algorithm against the baseline, training runs as the unit."""
    tables = []
    for dataset in report.datasets:
        comparisons = [c for c in report.comparisons if c.dataset == dataset]
        if not comparisons:
            continue
        min_pp = f"{100 * report.min_effect:g}"
        columns = ["algorithm", "runs (algo / baseline)", "test", f"Δ avg@k vs {report.baseline} pp",
                   "95% CI pp", "p", "Δ by seed pp", f"P(run > {report.baseline} run) [95% CI]",
                   "seeds for 80% power: observed Δ", f"seeds for 80% power: Δ = {min_pp} pp"]
        rows = []
        for c in comparisons:
            t = c.test
            test = {"paired": f"paired t ({len(t.seeds_a)} seeds)", "unpaired": "Welch t",
                    "none": "none: 1 run"}[t.design]
            rows.append([
                c.algo, f"{len(t.seeds_a)} / {len(t.seeds_b)}", test, _signed_pp(t.mean),
                "-" if t.ci is None else f"[{_signed_pp(t.ci[0])}, {_signed_pp(t.ci[1])}]",
                "-" if t.p_value is None else _p(t.p_value),
                "-" if c.differences_by_seed is None else " / ".join(map(_signed_pp, c.differences_by_seed)),
                "-" if c.improvement is None else f"{c.improvement:.2f} {_ci(c.improvement_ci, _prob)}",
                _seeds_needed(c.seeds_needed_observed, t), _seeds_needed(c.seeds_needed_min_effect, t),
            ])
        caption = (f"avg@k of each algorithm minus {report.baseline}'s at the last evaluation, over the "
                   f"problems every compared run evaluated, with training runs as the unit: a paired t-test "
                   f"over the seeds both completed (same seed = same base checkpoint and first rollout), "
                   f"Welch's t-test when they share fewer than two, two-sided at {SIGNIFICANCE:g}; CI: "
                   f"t-interval. P(run > {report.baseline} run): probability that a run of the algorithm "
                   f"scores higher than one of {report.baseline} (ties count 1/2; rliable, stratified "
                   f"bootstrap CI). Seeds for 80% power: seeds per algorithm for this test to detect the "
                   f"observed difference, or one of {min_pp} pp, 80% of the time at {SIGNIFICANCE:g}, from "
                   f"the observed spread between seeds (noisy with few seeds).")
        if any(c.test.design == "none" for c in comparisons):
            caption += (f" No p-value or CI where a side has one run: {NO_TEST_REASON}. Add seeds (completed "
                        f"runs are kept): {report.add_seeds_command(SUGGESTED_SEEDS)}")
        tables.append(Table(f"Seed-level comparison vs {report.baseline}: {dataset}", columns, rows, caption))
    return tables


def across_datasets_table(report: Report) -> Table | None:
    if not report.across_datasets:
        return None
    rows = [[a.algo, seed_list(a.seeds), f"{_pct(a.iqm)} {_ci(a.iqm_ci)}",
             "baseline" if a.algo == report.baseline else
             "-" if a.improvement is None else f"{a.improvement:.2f} {_ci(a.improvement_ci, _prob)}"]
            for a in report.across_datasets]
    datasets = ", ".join(report.across_datasets[0].datasets)
    caption = (f"rliable's aggregates with the datasets ({datasets}) as tasks, over the runs that evaluated "
               f"all of them (at least 2 per algorithm): the interquartile mean of the runs' avg@k over runs "
               f"x datasets, and the probability that a run beats a {report.baseline} run, averaged over the "
               f"datasets; 95% CIs by stratified bootstrap (runs resampled within each dataset, 10,000 "
               f"resamples).")
    return Table("Across datasets (rliable)", ["algorithm", "seeds", "IQM % [95% CI]",
                                               f"P(run > {report.baseline} run) [95% CI]"], rows, caption)


def _prob(x: float) -> str:
    return f"{x:.2f}"


def _seeds_needed(n: int | None, test) -> str:
    if test.sd is None:
        return "- (needs 2 runs)"
    return "> 1000 or Δ = 0" if n is None else str(n)


def fit_table(report: Report) -> Table | None:
    if not report.fits:
        return None
    rows = []
    for f in report.fits:
        fit = f.fit
        a = _pct(fit.a) + ("" if f.a_ci is None else f" {_ci(f.a_ci)}")
        b = f"{fit.b:.2f}" + ("" if f.b_ci is None else f" [{f.b_ci[0]:.2f}, {f.b_ci[1]:.2f}]")
        rows.append([f.dataset, f.algo, seed_list(f.seeds), str(fit.points),
                     _pct(fit.r0) + (" (fitted)" if fit.r0_fitted else ""), a, b, f"{fit.c_mid:.3g}",
                     f"{100 * fit.rmse:.2f}", "-" if f.rank is None else str(f.rank),
                     "reliable" if fit.reliable else "unreliable: " + "; ".join(fit.flags)])
    caption = ("ScaleRL's compute-performance curve (arXiv 2510.13786, Eq. 1) R_C - R_0 = (A - R_0) / "
               "(1 + (C_mid / C)^B) fitted by least squares to the seed-mean eval accuracy against C = "
               "training tokens generated + trained (cumulative). A: asymptote (%), B: compute efficiency, "
               "C_mid: tokens at half the gain; R_0: step-0 accuracy. CIs over seeds: leave-one-seed-out "
               "jackknife. Rank: by A, then by B among algorithms whose A lie within each other's CIs "
               "(ScaleRL's order), reliable fits only. RMSE in pp.")
    return Table("Compute-performance fits", ["dataset", "algorithm", "seeds", "points", "R_0 %",
                                              "A % [95% CI]", "B [95% CI]", "C_mid (tokens)", "RMSE pp",
                                              "rank", "fit"], rows, caption)


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
    tables = eval_tables(report) + comparison_tables(report)
    extras = (across_datasets_table(report), fit_table(report), speed_table(report), training_table(report),
              incomplete_table(report))
    for extra in extras:
        if extra is not None:
            tables.append(extra)
    return tables
