"""PNG plots of the report (matplotlib's object API with the Agg canvas; pyplot's global state is not used).

Every algorithm keeps one colour and marker in every plot, from the Okabe-Ito colour-blind-safe palette
(Okabe & Ito, "Color Universal Design", 2008). Completed runs are drawn as the mean over seeds with a
min-max band; incomplete runs as thin dashed lines of their algorithm's colour, never averaged in.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fipo_bench.report.compare import Report, SeedComparison
from fipo_bench.report.data import RunData, read_response_lengths
from fipo_bench.report.stats import align_on_common_steps
from fipo_bench.report.tables import plural

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# Okabe-Ito without yellow (too light on white) first; black last.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X"]
DPI = 110

# (metrics.jsonl key, panel title, y-axis label, scale applied to the values)
TRAINING_PANELS = [
    ("accuracy", "Training accuracy", "correct samples (%)", 100.0),
    ("reward", "Reward", "mean reward per sample", 1.0),
    ("response_length_mean", "Mean response length", "tokens", 1.0),
    ("response_length_median", "Median response length", "tokens", 1.0),
    ("truncated_frac", "Truncated responses (hit max length)", "share of samples (%)", 100.0),
    ("entropy", "Policy entropy", "nats per token", 1.0),
    ("clip_frac_high", "Clipped tokens, ratio > 1+ε", "share of tokens (%)", 100.0),
    ("clip_frac_low", "Clipped tokens, ratio < 1-ε", "share of tokens (%)", 100.0),
    ("dual_clip_frac", "Dual-clipped tokens (A < 0, ratio > c)", "share of tokens (%)", 100.0),
    ("ppo_kl", "KL to the rollout policy", "nats per token", 1.0),
    ("kl", "KL to the reference model (GRPO)", "nats per token", 1.0),
    ("kept_groups_frac", "Groups kept by dynamic sampling", "share of groups (%)", 100.0),
    ("tokens_per_s", "Throughput", "tokens / s", 1.0),
]
FIPO_PANELS = [
    ("weight_mean", "FIPO weight: mean", "weight", 1.0),
    ("weight_min", "FIPO weight: min", "weight", 1.0),
    ("weight_max", "FIPO weight: max", "weight", 1.0),
    ("weight_clip_frac_high", "FIPO weight clipped at upper bound", "share of tokens (%)", 100.0),
    ("weight_clip_frac_low", "FIPO weight clipped at lower bound", "share of tokens (%)", 100.0),
    ("future_kl_masked_frac", "Future-KL tokens masked (ratio > c)", "share of tokens (%)", 100.0),
    ("dropped_seq_frac", "Sequences dropped (dual clip)", "share of sequences (%)", 100.0),
]
# The value model's (PPO, VC-PPO, VAPO: algorithms/ppo.py CRITIC_METRICS, plus the critic's optimizer)
VALUE_PANELS = [
    ("value_loss", "Value loss (clipped, x 0.5)", "squared error", 1.0),
    ("value_clip_frac", "Value-clipped tokens", "share of tokens (%)", 100.0),
    ("explained_variance", "Explained variance of the returns", "1 - Var(R - V) / Var(R)", 1.0),
    ("value_mean", "Mean value (at rollout)", "value", 1.0),
    ("return_mean", "Mean return (critic target)", "return", 1.0),
    ("advantage_raw_mean", "Advantage before whitening: mean", "advantage", 1.0),
    ("advantage_raw_std", "Advantage before whitening: std", "advantage", 1.0),
    ("critic_grad_norm", "Critic gradient norm", "norm", 1.0),
]

Series = Callable[[RunData], tuple[np.ndarray, np.ndarray]]


def algo_styles(algos: list[str]) -> dict[str, tuple[str, str]]:
    """algorithm -> (colour, marker), fixed by the report's algorithm order."""
    return {a: (PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)]) for i, a in enumerate(algos)}


def _new_figure(nrows: int, ncols: int, width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


@dataclass
class _Drawn:
    """What a figure shows, so its legend lists exactly that."""

    means: set[str] = field(default_factory=set)
    incomplete: set[str] = field(default_factory=set)
    band: bool = False


def _line_size(report: Report, algo: str) -> tuple[float, float]:
    """(line width, marker size): earlier algorithms are drawn wider, so identical curves (FIPO equals
    DAPO until its weights move) show as a coloured rim instead of hiding one another."""
    wider = len(report.algos) - 1 - report.algos.index(algo)
    return 1.4 + 0.8 * wider, 4.0 + 1.2 * wider


def _draw_series(ax: Axes, report: Report, styles, series: Series, scale: float, drawn: _Drawn) -> bool:
    """Seed mean + min-max band per algorithm, dashed lines for incomplete runs. True if anything drawn."""
    anything = False
    for algo in report.algos:
        colour, marker = styles[algo]
        curves = [series(r) for r in report.complete_runs(algo)]
        steps, values = align_on_common_steps([c for c in curves if c[0].size])
        if steps.size:
            values = values * scale
            width, size = _line_size(report, algo)
            ax.plot(steps, values.mean(axis=0), color=colour, marker=marker, markersize=size, linewidth=width,
                    markevery=max(1, steps.size // 10))
            if values.shape[0] > 1:
                ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=colour, alpha=0.2,
                                linewidth=0)
                drawn.band = True
            drawn.means.add(algo)
            anything = True
        for run in report.runs:
            if run.algo == algo and not run.complete:
                steps, values = series(run)
                if steps.size:
                    ax.plot(steps, values * scale, color=colour, linestyle="--", linewidth=1.0, alpha=0.8)
                    drawn.incomplete.add(algo)
                    anything = True
    return anything


def _legend(fig, report: Report, styles, drawn: _Drawn) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = []
    for algo in report.algos:
        if algo not in drawn.means | drawn.incomplete:
            continue
        colour, marker = styles[algo]
        n = len(report.complete_runs(algo))
        role = " (baseline)" if algo == report.baseline else ""
        if algo in drawn.means:
            label = f"{algo}{role}: mean of {n} seed{'s' * (n != 1)}"
            width, size = _line_size(report, algo)
            handles.append(Line2D([], [], color=colour, marker=marker, markersize=size, linewidth=width,
                                  label=label))
        else:
            label = f"{algo}{role}: no completed run"
            handles.append(Line2D([], [], color=colour, linestyle="--", linewidth=1.0, label=label))
    if drawn.band:
        handles.append(Patch(color="#888888", alpha=0.35, label="band: min-max over seeds"))
    if drawn.incomplete:
        handles.append(Line2D([], [], color="#555555", linestyle="--", linewidth=1.0,
                              label="dashed: incomplete run (not in mean)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3), frameon=False)


def _metric_series(key: str) -> Series:
    return lambda run: run.metric_series(key)


def _curve_figure(report: Report, styles, panels, title: str, path: Path) -> bool:
    present = [p for p in panels if any(r.metric_series(p[0])[0].size for r in report.runs)]
    if not present:
        return False
    ncols = min(3, len(present))
    nrows = -(-len(present) // ncols)
    fig, axes = _new_figure(nrows, ncols, 4.4 * ncols, 3.1 * nrows + 0.9)
    drawn = _Drawn()
    for ax, (key, panel_title, ylabel, scale) in zip(axes.flat, present, strict=False):
        _draw_series(ax, report, styles, _metric_series(key), scale, drawn)
        if scale == 100.0:  # shares: 0 is the natural floor
            ax.set_ylim(bottom=0.0)
        ax.set_title(panel_title, fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(present):]:
        ax.set_visible(False)
    _legend(fig, report, styles, drawn)
    fig.suptitle(title, fontsize=12)
    fig.savefig(path)
    return True


def _eval_curve_figure(report: Report, styles, path: Path) -> bool:
    datasets = [d for d in report.datasets if any(r.eval_curve.get(d) for r in report.runs)]
    if not datasets:
        return False
    fig, axes = _new_figure(len(datasets), 2, 10, 3.2 * len(datasets) + 0.9)
    drawn = _Drawn()
    for row, dataset in zip(axes, datasets, strict=True):

        def accuracy(run: RunData, d=dataset):
            c = run.eval_curve.get(d, {})
            return np.array(list(c), dtype=np.float64), np.array([v[0] for v in c.values()], dtype=np.float64)

        def length(run: RunData, d=dataset):
            c = {s: v[1] for s, v in run.eval_curve.get(d, {}).items() if v[1] is not None}
            return np.array(list(c), dtype=np.float64), np.array(list(c.values()), dtype=np.float64)

        _draw_series(row[0], report, styles, accuracy, 100.0, drawn)
        ks = sorted({res.k for r in report.runs for res in r.evals.get(dataset, {}).values()})
        metric = f"avg@{ks[-1]}" if len(ks) == 1 else "avg@k"
        row[0].set_title(f"{dataset}: eval accuracy ({metric})", fontsize=10)
        row[0].set_ylabel("accuracy (%)")
        row[0].set_ylim(bottom=0.0)
        if not _draw_series(row[1], report, styles, length, 1.0, drawn):
            row[1].text(0.5, 0.5, "no response lengths logged", ha="center", va="center",
                        transform=row[1].transAxes, color="#777777")
        row[1].set_title(f"{dataset}: eval mean response length", fontsize=10)
        row[1].set_ylabel("tokens")
        for ax in row:
            ax.set_xlabel("training step")
            ax.grid(alpha=0.3)
    _legend(fig, report, styles, drawn)
    fig.suptitle("Evaluation during training", fontsize=12)
    fig.savefig(path)
    return True


def _pooled_lengths(runs: list[RunData], dataset: str, pick: Callable) -> tuple[np.ndarray, list[int]]:
    """num_tokens of all samples of each run's first/last (`pick` = min/max) eval step, pooled over runs."""
    lengths, steps = [], []
    for run in runs:
        by_step = run.evals.get(dataset)
        if not by_step:
            continue
        step = pick(by_step)
        values = read_response_lengths(by_step[step].path)
        if values is not None and values.size:
            lengths.append(values)
            steps.append(step)
    return (np.concatenate(lengths) if lengths else np.zeros(0)), steps


def _step_label(steps: list[int]) -> str:
    unique = sorted(set(steps))
    return f"step {unique[0]}" if len(unique) == 1 else f"steps {unique[0]}-{unique[-1]}"


def _length_figure(report: Report, styles, dataset: str, path: Path) -> bool:
    panels = []
    for algo in report.algos:
        runs = report.complete_runs(algo)
        start, start_steps = _pooled_lengths(runs, dataset, min)
        end, end_steps = _pooled_lengths(runs, dataset, max)
        if start.size and end.size:
            panels.append((algo, start, start_steps, end, end_steps, len(runs)))
    if not panels:
        return False
    everything = np.concatenate([np.concatenate([p[1], p[3]]) for p in panels])
    low, high = float(everything.min()), float(everything.max())
    # Integer-width bins when lengths are short (tiny task), at most 40 bins otherwise.
    width = max(1.0, np.ceil((high - low + 1) / 40))
    bins = np.arange(low - 0.5, high + width + 0.5, width)
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = _new_figure(nrows, ncols, 4.6 * ncols, 3.2 * nrows + 0.6)
    for ax, (algo, start, start_steps, end, end_steps, n) in zip(axes.flat, panels, strict=False):
        colour, _ = styles[algo]
        ax.hist(end, bins=bins, weights=np.full(end.size, 100.0 / end.size), color=colour, alpha=0.5,
                label=f"{_step_label(end_steps)} (mean {end.mean():.1f})")
        # The start as an outline on top, so it stays visible where the two overlap.
        ax.hist(start, bins=bins, weights=np.full(start.size, 100.0 / start.size), histtype="step",
                color="#222222", linewidth=1.3, label=f"{_step_label(start_steps)} (mean {start.mean():.1f})")
        ax.set_title(f"{algo} ({n} seed{'s' * (n != 1)} pooled)", fontsize=10)
        ax.set_xlabel("response length (tokens)")
        ax.set_ylabel("share of samples (%)")
        ax.legend(fontsize=8, frameon=False)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"{dataset}: response-length distribution, first vs last evaluation (completed runs)",
                 fontsize=12)
    fig.savefig(path)
    return True


def comparison_label(c: SeedComparison) -> str:
    t = c.test
    runs = (plural(len(t.seeds_a), "seed") + " paired" if t.design == "paired"
            else f"{len(t.seeds_a)} vs {plural(len(t.seeds_b), 'run')}")
    return f"{c.algo}\n({runs}, {plural(c.num_problems, 'problem')})"


def comparison_annotation(c: SeedComparison) -> str:
    """The numbers beside a difference's marker: the seed-level CI and p, or why there are none."""
    t = c.test
    if t.ci is None:
        return f"{100 * t.mean:+.1f} pp; one run on a side: no test"
    return f"{100 * t.mean:+.1f} pp [{100 * t.ci[0]:+.1f}, {100 * t.ci[1]:+.1f}], p = {t.p_value:.3g}"


def _comparison_figure(report: Report, styles, path: Path) -> bool:
    datasets = [d for d in report.datasets if any(x.dataset == d for x in report.comparisons)]
    if not datasets:
        return False
    most = max(sum(x.dataset == d for x in report.comparisons) for d in datasets)
    fig, axes = _new_figure(len(datasets), 1, 8, max(1.8, 0.8 * most + 1.2) * len(datasets) + 0.5)
    for ax, dataset in zip(axes[:, 0], datasets, strict=True):
        comparisons = [x for x in report.comparisons if x.dataset == dataset]
        for y, c in enumerate(comparisons):
            colour, marker = styles[c.algo]
            if c.differences_by_seed is not None:  # each seed's own difference, just above its bar
                ax.scatter([100 * d for d in c.differences_by_seed], [y - 0.2] * len(c.differences_by_seed),
                           color=colour, s=18, alpha=0.7, linewidths=0)
            ci = c.test.ci or (c.test.mean, c.test.mean)
            error = [[100 * (c.test.mean - ci[0])], [100 * (ci[1] - c.test.mean)]]
            ax.errorbar(100 * c.test.mean, y, xerr=error, color=colour, marker=marker, markersize=7,
                        capsize=4, linewidth=2)
            ax.annotate(comparison_annotation(c), (100 * c.test.mean, y), xytext=(0, -9),
                        textcoords="offset points", ha="center", va="top", fontsize=9,
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0, "alpha": 0.8})
        ax.axvline(0.0, color="#444444", linestyle=":", linewidth=1)
        ax.set_yticks(range(len(comparisons)), [comparison_label(x) for x in comparisons], fontsize=9)
        ax.set_ylim(len(comparisons) - 0.3, -0.8)  # first algorithm on top
        ax.margins(x=0.25)
        ax.set_xlabel(f"avg@k minus {report.baseline}'s (percentage points): dots = seeds, bar = 95% CI over "
                      "seeds")
        ax.set_title(f"{dataset}: avg@k vs {report.baseline} at the last evaluation, runs as the unit (> 0: "
                     f"better)", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.savefig(path)
    return True


def _compute_figure(report: Report, styles, path: Path) -> bool:
    """Eval accuracy against training compute per dataset: seeds (small), seed mean (markers) and the
    fitted ScaleRL curve (solid when reliable, dotted when not)."""
    datasets = [d for d in report.datasets if any(f.dataset == d for f in report.fits)]
    if not datasets:
        return False
    fig, axes = _new_figure(len(datasets), 1, 8, 3.6 * len(datasets) + 0.6)
    for ax, dataset in zip(axes[:, 0], datasets, strict=True):
        for f in (x for x in report.fits if x.dataset == dataset):
            colour, marker = styles[f.algo]
            for seed_curve in f.accuracy:
                ax.scatter(f.compute, 100 * seed_curve, color=colour, s=10, alpha=0.35, linewidths=0)
            ax.plot(f.compute, 100 * f.accuracy.mean(axis=0), color=colour, marker=marker, linestyle="none",
                    markersize=6)
            grid = np.linspace(0.0, float(f.compute.max()), 200)
            label = (f"{f.algo}: A = {100 * f.fit.a:.1f}%, B = {f.fit.b:.2f}"
                     + ("" if f.fit.reliable else " (unreliable fit)"))
            ax.plot(grid, 100 * f.fit.predict(grid), color=colour, linewidth=1.8,
                    linestyle="-" if f.fit.reliable else ":", label=label)
        ax.set_title(f"{dataset}: eval accuracy vs training compute, ScaleRL fit (arXiv 2510.13786 Eq. 1)",
                     fontsize=10)
        ax.set_xlabel("training tokens, generated + trained (cumulative)")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
    fig.savefig(path)
    return True


def write_plots(report: Report, out_dir: Path) -> list[tuple[str, str]]:
    """Write every plot that has data; returns [(file name, caption)] in display order."""
    styles = algo_styles(report.algos)
    plots = []
    if _curve_figure(report, styles, TRAINING_PANELS, "Training curves (per rollout batch)",
                     out_dir / "training_curves.png"):
        plots.append(("training_curves.png", "Training metrics per step: mean over completed seeds, "
                                             "band = min-max over seeds."))
    if _curve_figure(report, styles, FIPO_PANELS, "FIPO future-KL weight statistics",
                     out_dir / "fipo_weights.png"):
        plots.append(("fipo_weights.png", "FIPO's per-token advantage weights and masks per step."))
    if _curve_figure(report, styles, VALUE_PANELS, "Value model (critic) statistics",
                     out_dir / "value_model.png"):
        plots.append(("value_model.png", "The critic of the value-model algorithms per step: its loss, "
                                         "clipped share, explained variance, values against returns, and "
                                         "the advantages before whitening."))
    if _eval_curve_figure(report, styles, out_dir / "eval_curves.png"):
        plots.append(("eval_curves.png", "Eval accuracy and response length at each evaluation."))
    for dataset in report.datasets:
        filename = f"length_distribution_{re.sub(r'[^A-Za-z0-9._-]', '_', dataset)}.png"
        if _length_figure(report, styles, dataset, out_dir / filename):
            plots.append((filename, f"{dataset}: response lengths of all samples at the first and the last "
                                    "evaluation, seeds pooled."))
    if _compute_figure(report, styles, out_dir / "compute_curves.png"):
        plots.append(("compute_curves.png", "Eval accuracy against training tokens (generated + trained): "
                                            "small dots = seeds, markers = seed mean, line = fitted ScaleRL "
                                            "curve (dotted: unreliable fit)."))
    if _comparison_figure(report, styles, out_dir / "seed_differences.png"):
        plots.append(("seed_differences.png", f"avg@k minus {report.baseline}'s at the last evaluation with "
                                              "training runs as the unit: each seed's difference (dots), the "
                                              "mean and its 95% t-interval over seeds, and the t-test "
                                              "p-value."))
    return plots
