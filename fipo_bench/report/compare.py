"""The numbers of the report, computed from a results/<run> directory (read by fipo_bench.report.data).

`build_report` turns completed runs into the report's tables: per-algorithm avg@k with CIs over runs,
seed-level tests against the baseline (fipo_bench.report.stats), IQM and probability of improvement,
compute-performance fits (fipo_bench.report.curves) and learning speed. How each number is aggregated
is stated once, in the report's own "Method" section (fipo_bench.report.render.METHOD). Running,
failed, interrupted and status-less runs enter no aggregate; they are listed in their own table, drawn
as thin dashed lines, and written to summary.csv as `kind=run` rows with their status.
"""

from __future__ import annotations

import itertools
import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fipo_bench.report.curves import CurveFit, fit_scalerl, jackknife_ci, rank_by_asymptote_then_efficiency
from fipo_bench.report.data import EvalResult, RunData, read_results
from fipo_bench.report.stats import (
    SeedTest,
    align_on_common_steps,
    first_step_reaching,
    improvement_with_ci,
    iqm_with_ci,
    mean_ci_over_seeds,
    normalized_auc,
    seed_level_test,
    seeds_for_power,
)

SIGNIFICANCE = 0.05
POWER = 0.8
DEFAULT_MIN_EFFECT = 0.05
"""The smallest difference in avg@k worth detecting (5 percentage points) for "seeds needed"."""
SUGGESTED_SEEDS = 5
"""Seeds suggested when the between-seed spread is unknown (one run per algorithm): enough for the
seed-level t-test to have power (its two-sided 5% critical value is 12.7 standard errors with 2 seeds,
4.3 with 3, 2.8 with 5); the report says how many more once the spread is known."""
# Share of the baseline's eval-accuracy gain that defines "steps to threshold".
THRESHOLD_GAIN_FRACTION = 0.5

NO_TEST_REASON = ("one training run per algorithm: two runs of one algorithm from different seeds differ, "
                  "and from one run each that run-to-run spread cannot be estimated, so no p-value or CI "
                  "can tell the algorithms apart from the seeds")


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
    seed_ci: tuple[float, float] | None
    """95% t-interval over runs; None with one run."""
    problem_ci: tuple[float, float]
    """95% bootstrap over problems of the seed-mean per-problem accuracy (precision on this problem set)."""
    iqm: float | None
    iqm_ci: tuple[float, float] | None
    """Interquartile mean of the runs' avg@k and its stratified-bootstrap CI; None with one run."""
    avg_at_k_by_seed: tuple[float, ...]
    pass_at_k: dict[int, float]
    cons_at_k: float | None
    maj_at_k: dict[int, float]
    g_pass_at_k: dict[int, dict[float, float]]
    mg_pass_at_k: dict[int, float]
    length_mean: float | None
    length_median: float | None
    truncation_rate: float | None


@dataclass(frozen=True)
class SeedComparison:
    """avg@k of `algo` minus `baseline`, runs as the unit."""

    dataset: str
    algo: str
    baseline: str
    num_problems: int
    test: SeedTest
    differences_by_seed: tuple[float, ...] | None
    """Paired design: the per-seed differences (seeds in test.seeds_a order)."""
    improvement: float | None
    improvement_ci: tuple[float, float] | None
    """P(a run of algo scores higher than a run of baseline), rliable; None with one run on a side."""
    seeds_needed_observed: int | None
    seeds_needed_min_effect: int | None
    """Seeds (paired) or runs per algorithm (unpaired) for 80% power at 5% for the observed difference and
    for the report's minimal effect, from the observed spread; None when it cannot be estimated (one run)
    or when no difference / more than 1000 would be needed."""


@dataclass(frozen=True)
class AcrossDatasets:
    """rliable's aggregates over the datasets as tasks: every seed that evaluated all of them is a run."""

    algo: str
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    iqm: float
    iqm_ci: tuple[float, float]
    improvement: float | None
    improvement_ci: tuple[float, float] | None
    """P(run > baseline run) averaged over the datasets; None for the baseline itself."""


@dataclass(frozen=True)
class ComputeFit:
    """ScaleRL's curve fitted to one algorithm's seed-mean eval curve on one dataset."""

    dataset: str
    algo: str
    seeds: tuple[int, ...]
    compute: np.ndarray
    """[S] seed-mean training compute (tokens) at the common eval steps."""
    accuracy: np.ndarray
    """[seeds, S] eval accuracy of each seed at those steps."""
    fit: CurveFit
    a_ci: tuple[float, float] | None
    b_ci: tuple[float, float] | None
    rank: int | None = None
    """ScaleRL order among the reliable fits of the dataset (1 = best); None for an unreliable fit."""


@dataclass(frozen=True)
class LearningSpeed:
    """The seed-mean eval accuracy curve of one algorithm on one dataset, summarized: the normalized
    area under the curve (mean accuracy over training) and the first step reaching half of the
    baseline's gain from its first evaluation to its last."""

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
    min_effect: float = DEFAULT_MIN_EFFECT
    evals: list[EvalAggregate] = field(default_factory=list)
    comparisons: list[SeedComparison] = field(default_factory=list)
    fits: list[ComputeFit] = field(default_factory=list)
    across_datasets: list[AcrossDatasets] = field(default_factory=list)
    speed: list[LearningSpeed] = field(default_factory=list)
    training: list[TrainingSummary] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def complete_runs(self, algo: str) -> list[RunData]:
        return [r for r in self.runs if r.algo == algo and r.complete]

    @property
    def incomplete_runs(self) -> list[RunData]:
        return [r for r in self.runs if not r.complete]

    def add_seeds_command(self, seeds: int) -> str:
        """The `fipo-bench run` command that trains this matrix on `seeds` seeds into this directory:
        run.json's command with --seeds, --run-name and --output-dir set (completed runs are kept, only
        the new seeds train)."""
        present = sorted({r.seed for r in self.runs})
        new = itertools.count(max(present, default=-1) + 1)
        wanted = present + [next(new) for _ in range(seeds - len(present))]
        command = self.run_info.get("command")
        if isinstance(command, str) and command.strip():
            words = shlex.split(command)
        else:
            words = ["fipo-bench", "run", "--algos", ",".join(self.algos)]
        kept, skip = [], False
        for word in words:
            if skip:
                skip = False
            elif word.split("=", 1)[0] in ("--seeds", "--run-name", "--output-dir"):
                skip = "=" not in word  # "--seeds 0,1" has its value in the next word
            else:
                kept.append(word)
        path = self.results_dir.resolve()
        return shlex.join([*kept, "--seeds", ",".join(map(str, wanted)), "--run-name", path.name,
                           "--output-dir", str(path.parent)])


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
    """Problems present in every result (a run's score is over the problems every compared run
    evaluated), in the first one's order (so that with one seed the bootstrap
    sees the same sequence as summary.json's own avg_at_k_ci95)."""
    common = set.intersection(*(set(r.per_problem) for r in results))
    return [p for p in results[0].per_problem if p in common]


def _score(result: EvalResult, problems: Sequence[str]) -> float:
    """A run's avg@k over `problems`."""
    return float(np.mean([result.per_problem[p] for p in problems]))


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    """Mean over seeds; None if any seed lacks the value (no mean over a different set of seeds)."""
    return None if not values or any(v is None for v in values) else float(np.mean(values))


def _mean_of_dicts(dicts: Sequence[dict]) -> dict:
    """Key-wise mean over seeds of the keys every seed has (nested one level for G-Pass)."""
    keys = sorted(set.intersection(*(set(d) for d in dicts))) if dicts else []
    return {key: (_mean_of_dicts([d[key] for d in dicts]) if isinstance(dicts[0][key], dict)
                  else float(np.mean([d[key] for d in dicts]))) for key in keys}


def _aggregate_eval(dataset: str, algo: str, finals: list[tuple[RunData, EvalResult]],
                    notes: list[str]) -> EvalAggregate:
    from fipo_bench.evals.metrics import bootstrap_ci

    results = [res for _, res in finals]
    ks = {res.k for res in results}
    if len(ks) > 1:
        notes.append(f"{dataset}/{algo}: seeds were evaluated with different k {sorted(ks)}")
    problems = _common_problems(results)
    if any(len(res.per_problem) != len(problems) for res in results):
        notes.append(f"{dataset}/{algo}: seeds evaluated different problem sets; the CI uses the "
                     f"{len(problems)} problems they share")
    by_seed = [res.avg_at_k for res in results]
    # [P] accuracy per problem, averaged over seeds: the bootstrap unit is the problem.
    per_problem = [float(np.mean([res.per_problem[p] for res in results])) for p in problems]
    problem_ci = bootstrap_ci(per_problem, confidence=0.95, n_boot=10_000, seed=0) if problems else (
        float("nan"), float("nan"))
    iqm, iqm_ci = iqm_with_ci(np.array(by_seed)[:, None]) if len(by_seed) >= 2 else (None, None)
    return EvalAggregate(
        dataset=dataset,
        algo=algo,
        seeds=tuple(run.seed for run, _ in finals),
        steps=tuple(res.step for res in results),
        k=max(ks),
        num_problems=len(problems),
        avg_at_k=float(np.mean(by_seed)),
        seed_ci=mean_ci_over_seeds(by_seed),
        problem_ci=(float(problem_ci[0]), float(problem_ci[1])),
        iqm=iqm,
        iqm_ci=iqm_ci,
        avg_at_k_by_seed=tuple(by_seed),
        pass_at_k=_mean_of_dicts([res.pass_at_k for res in results]),
        cons_at_k=_mean_or_none([res.cons_at_k for res in results]),
        maj_at_k=_mean_of_dicts([res.maj_at_k for res in results]),
        g_pass_at_k=_mean_of_dicts([res.g_pass_at_k for res in results]),
        mg_pass_at_k=_mean_of_dicts([res.mg_pass_at_k for res in results]),
        length_mean=_mean_or_none([res.length_mean for res in results]),
        length_median=_mean_or_none([res.length_median for res in results]),
        truncation_rate=_mean_or_none([res.truncation_rate for res in results]),
    )


def _compare(dataset: str, algo: str, baseline: str, algo_finals, base_finals, min_effect: float,
             notes: list[str]) -> SeedComparison | None:
    algo_by_seed = {run.seed: res for run, res in algo_finals}
    base_by_seed = {run.seed: res for run, res in base_finals}
    problems = _common_problems(list(algo_by_seed.values()) + list(base_by_seed.values()))
    if not problems:
        notes.append(f"{dataset}: {algo} and {baseline} share no evaluated problem; no comparison")
        return None
    for s in sorted(set(algo_by_seed) & set(base_by_seed)):
        if algo_by_seed[s].step != base_by_seed[s].step:
            notes.append(f"{dataset}: seed {s} compares {algo} at step {algo_by_seed[s].step} with "
                         f"{baseline} at step {base_by_seed[s].step} (their last evaluations)")
    scores_a = {s: _score(res, problems) for s, res in algo_by_seed.items()}
    scores_b = {s: _score(res, problems) for s, res in base_by_seed.items()}
    test = seed_level_test(scores_a, scores_b)
    if test.design == "paired" and len(test.seeds_a) < min(len(scores_a), len(scores_b)):
        notes.append(f"{dataset}: {algo} vs {baseline} is paired over their {len(test.seeds_a)} shared "
                     f"seeds; runs of other seeds are left out of it")
    differences, improvement, improvement_ci = None, None, None
    if test.design == "paired":
        differences = tuple(scores_a[s] - scores_b[s] for s in test.seeds_a)
    if test.design != "none":
        x = np.array([scores_a[s] for s in sorted(scores_a)])[:, None]
        y = np.array([scores_b[s] for s in sorted(scores_b)])[:, None]
        improvement, improvement_ci = improvement_with_ci(x, y)
    needed_observed = needed_min = None
    if test.sd is not None:
        paired = test.design == "paired"
        needed_observed = seeds_for_power(test.mean, test.sd, paired=paired, power=POWER, alpha=SIGNIFICANCE)
        needed_min = seeds_for_power(min_effect, test.sd, paired=paired, power=POWER, alpha=SIGNIFICANCE)
    return SeedComparison(dataset=dataset, algo=algo, baseline=baseline, num_problems=len(problems),
                          test=test, differences_by_seed=differences, improvement=improvement,
                          improvement_ci=improvement_ci, seeds_needed_observed=needed_observed,
                          seeds_needed_min_effect=needed_min)


def _run_by_dataset_scores(runs: list[RunData], datasets: list[str]) -> tuple[tuple[int, ...], np.ndarray]:
    """(seeds, scores [runs, datasets]): the last avg@k of the runs that evaluated every dataset."""
    complete = [r for r in runs if all(r.evals.get(d) for d in datasets)]
    scores = np.array([[r.evals[d][max(r.evals[d])].avg_at_k for d in datasets] for r in complete])
    return tuple(r.seed for r in complete), scores.reshape(len(complete), len(datasets))


def _across_datasets(report: Report) -> list[AcrossDatasets]:
    """With two or more datasets: IQM over runs x datasets and P(run > baseline run) averaged over the
    datasets, with stratified-bootstrap CIs (each dataset a stratum, as rliable's tasks)."""
    datasets = [d for d in report.datasets if any(r.evals.get(d) for r in report.runs)]
    if len(datasets) < 2:
        return []
    _, base = _run_by_dataset_scores(report.complete_runs(report.baseline), datasets)
    rows = []
    for algo in report.algos:
        seeds, scores = _run_by_dataset_scores(report.complete_runs(algo), datasets)
        if len(seeds) < 2:
            continue
        iqm, iqm_ci = iqm_with_ci(scores)
        improvement, improvement_ci = None, None
        if algo != report.baseline and len(base) >= 2:
            improvement, improvement_ci = improvement_with_ci(scores, base)
        rows.append(AcrossDatasets(algo, tuple(datasets), seeds, iqm, iqm_ci, improvement, improvement_ci))
    return rows


def step_compute(row: dict) -> float | None:
    """Training tokens one step cost: generated + trained (the C of the compute-performance fits).

    Tokens, not FLOPs or time: every algorithm of a comparison trains the same model, so tokens are
    proportional to FLOPs up to the per-token costs of a forward (generation) and a forward + backward
    (training); unlike a step they charge dynamic sampling's extra generation batches and longer answers,
    and unlike wall time they are the same on every machine and load. metrics.jsonl's `generated_tokens`
    and `trained_tokens` are used when a backend logs them; otherwise they are read from what the
    trainers log today: generated = tokens_per_s x step_time_s (the local backend divides the step's
    generated tokens by its time; the timing cancels), trained = generated x min(kept_groups_frac,
    1 / gen_batches) (the share of generated groups that filled the batch, assuming kept groups are as
    long as the rest; 1 when those fields are missing, as for OpenRLHF, whose tokens are those of the
    samples that entered training). None when the step lacks them.
    """
    generated = row.get("generated_tokens")
    if generated is None:
        rate, seconds = row.get("tokens_per_s"), row.get("step_time_s")
        if rate is None or seconds is None:
            return None
        generated = float(round(rate * seconds))
    trained = row.get("trained_tokens")
    if trained is None:
        kept, batches = row.get("kept_groups_frac"), row.get("gen_batches")
        trained = generated * (min(kept, 1.0 / batches) if kept is not None and batches else 1.0)
    return float(generated + trained)


def cumulative_compute(run: RunData) -> dict[int, float]:
    """step -> tokens spent in steps 1..step (step 0: 0), up to the first step whose cost is unknown."""
    total, out, expected = 0.0, {0: 0.0}, 1
    for row in run.metrics:
        cost = step_compute(row)
        if row["step"] != expected or cost is None:
            break
        total += cost
        out[row["step"]] = total
        expected += 1
    return out


def _problem_se(result: EvalResult) -> float:
    """Standard error over problems of one evaluation's avg@k (its precision on this problem set)."""
    values = np.array(list(result.per_problem.values()))
    return float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else 0.0


def _compute_fit(dataset: str, algo: str, runs: list[RunData], notes: list[str]) -> ComputeFit | None:
    usable = []
    for run in runs:
        compute = cumulative_compute(run)
        curve = {s: acc for s, (acc, _) in run.eval_curve.get(dataset, {}).items() if s in compute}
        if curve:
            usable.append((run, compute, curve))
    if not usable:
        return None
    steps, accuracy = align_on_common_steps([(list(c), list(c.values())) for _, _, c in usable])
    if (steps > 0).sum() < 2:
        return None
    compute = np.array([[comp[int(s)] for s in steps] for _, comp, _ in usable]).mean(axis=0)
    r0 = float(accuracy[:, 0].mean()) if steps[0] == 0 else None
    # Noise of a seed-mean point: the spread over seeds, or one evaluation's problem-level SE.
    if len(usable) >= 2:
        noise = float(np.sqrt(np.mean(accuracy.var(axis=0, ddof=1) / len(usable))))
    else:
        run = usable[0][0]
        ses = [_problem_se(run.evals[dataset][int(s)]) for s in steps if int(s) in run.evals.get(dataset, {})]
        noise = float(np.sqrt(np.mean(np.square(ses)))) if ses else None
    fit = fit_scalerl(compute, accuracy.mean(axis=0), r0=r0, noise=noise)
    if fit is None:
        return None
    a_ci = b_ci = None
    if len(usable) >= 2:  # leave one seed out
        loo = [fit_scalerl(compute, np.delete(accuracy, i, axis=0).mean(axis=0),
                           r0=None if r0 is None else float(np.delete(accuracy[:, 0], i).mean()))
               for i in range(len(usable))]
        a_ci = jackknife_ci([f.a for f in loo], fit.a)
        if a_ci is not None:  # A is an accuracy: the interval within [0, 1]
            a_ci = (max(0.0, a_ci[0]), min(1.0, a_ci[1]))
        b_ci = jackknife_ci([f.b for f in loo], fit.b, log=True)
    dropped = len(runs) - len(usable)
    if dropped:
        notes.append(f"{dataset}/{algo}: {dropped} run(s) without the compute of their steps left out of "
                     f"the fit")
    return ComputeFit(dataset=dataset, algo=algo, seeds=tuple(r.seed for r, _, _ in usable), compute=compute,
                      accuracy=accuracy, fit=fit, a_ci=a_ci, b_ci=b_ci)


def _rank_fits(fits: list[ComputeFit]) -> list[ComputeFit]:
    reliable = {f.algo: (f.fit, f.a_ci) for f in fits if f.fit.reliable}
    order = rank_by_asymptote_then_efficiency(reliable)
    ranks = {algo: i + 1 for i, algo in enumerate(order)}
    return [ComputeFit(**{**f.__dict__, "rank": ranks.get(f.algo)}) for f in fits]


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


def build_report(results_dir: str | Path, baseline: str = "dapo",
                 min_effect: float = DEFAULT_MIN_EFFECT) -> Report:
    """Read a results/<run> directory and compute every table of the report. `min_effect`: the smallest
    avg@k difference worth detecting (a fraction), for the seeds-needed column."""
    if not 0.0 < min_effect < 1.0:
        raise ValueError(f"min_effect must be a fraction in (0, 1), got {min_effect}")
    notes: list[str] = []
    run_info, runs = read_results(Path(results_dir), notes)
    datasets = sorted({d for r in runs for d in r.evals} | {d for r in runs for d in r.eval_curve})
    report = Report(results_dir=Path(results_dir), baseline=baseline, run_info=run_info, runs=runs,
                    algos=_algo_order(run_info, runs), datasets=datasets, min_effect=min_effect, notes=notes)
    if not report.complete_runs(baseline):
        notes.append(f"baseline {baseline!r} has no completed run; comparisons and steps-to-threshold are "
                     f"omitted (choose another with --baseline)")
    for dataset in datasets:
        base_finals = _final_results(report.complete_runs(baseline), dataset)
        fits = []
        for algo in report.algos:
            complete = report.complete_runs(algo)
            finals = _final_results(complete, dataset)
            if finals:
                report.evals.append(_aggregate_eval(dataset, algo, finals, notes))
                if algo != baseline and base_finals:
                    comparison = _compare(dataset, algo, baseline, finals, base_finals, min_effect, notes)
                    if comparison is not None:
                        report.comparisons.append(comparison)
            if complete and (fit := _compute_fit(dataset, algo, complete, notes)) is not None:
                fits.append(fit)
        report.fits.extend(_rank_fits(fits))
        report.speed.extend(_learning_speed(report, dataset))
    report.across_datasets = _across_datasets(report)
    for algo in report.algos:
        if report.complete_runs(algo):
            report.training.append(_training_summary(algo, report.complete_runs(algo)))
    return report
