"""The numbers of the report, computed from a results/<run> directory (read by fipo_bench.report.data).

How numbers are aggregated (also printed in the report's "Method" section):
- Only runs whose status.json says "completed" enter means, bands, CIs and tests. Running, failed,
  interrupted and status-less runs are listed in their own table (with their last evaluation), drawn as
  thin dashed lines in the curve plots, and written to summary.csv as `kind=run` rows with their status.
- Eval table: each run's last evaluation per dataset. avg@k, pass@k, cons@k, lengths and truncation are
  means over seeds of summary.json's values; the 95% CI of avg@k is a percentile bootstrap over
  problems of the per-problem accuracy averaged over seeds.
- Paired difference against the baseline: seeds completed by both algorithms and problems evaluated in
  all of those runs; per problem, the accuracy difference averaged over seeds; its mean, a percentile
  bootstrap CI over problems, and a two-sided sign-flip permutation p-value (fipo_bench.report.stats).
  The two can disagree about 5% significance (with few problems the percentile bootstrap is too narrow:
  it excludes 0 when every resample happens to be positive, while the permutation test counts how often
  chance alone gives a mean that large); such a difference is flagged as not significant.
- Learning speed: on the seed-mean eval accuracy curve, the normalized area under the curve (mean
  accuracy over training) and the first step reaching half of the baseline's gain from its first
  evaluation to its last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fipo_bench.report.data import EvalResult, RunData, read_results
from fipo_bench.report.stats import (
    align_on_common_steps,
    first_step_reaching,
    normalized_auc,
    paired_permutation_pvalue,
)

SIGNIFICANCE = 0.05
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

    @property
    def tests_disagree(self) -> bool:
        """The bootstrap CI excludes 0 but the permutation test does not reject (or the reverse)."""
        ci_excludes_zero = self.ci[0] > 0 or self.ci[1] < 0
        return ci_excludes_zero != (self.p_value < SIGNIFICANCE)


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
    diff = PairedDiff(dataset=dataset, algo=algo, baseline=baseline, seeds=tuple(seeds),
                      num_problems=len(problems), mean=float(diffs.mean()), ci=_bootstrap_ci(diffs),
                      p_value=paired_permutation_pvalue(diffs))
    if diff.tests_disagree:
        verdict = "not significant" if diff.p_value >= SIGNIFICANCE else "significant"
        notes.append(f"{dataset}: {algo} vs {baseline}: the bootstrap CI [{100 * diff.ci[0]:+.1f}, "
                     f"{100 * diff.ci[1]:+.1f}] pp and the permutation test (p = {diff.p_value:.3g}) "
                     f"disagree about 5% significance; with {diff.num_problems} problems and {len(seeds)} "
                     f"seed{'s' * (len(seeds) != 1)} the percentile bootstrap is too narrow: read the "
                     f"difference as {verdict} (the permutation test)")
    return diff


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
