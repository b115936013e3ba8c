"""`fipo-bench report` on synthetic results directories whose numbers are known by construction.

The main fixture: dataset "aime24", 4 problems, k = 4 samples, evaluations at steps 0, 5, 10.
Final (step 10) correct counts per problem:
    dapo seed 0: [4, 2, 0, 1] -> avg 7/16 = .4375      fipo seed 0: [4, 3, 1, 2] -> avg 10/16 = .625
    dapo seed 1: [3, 1, 1, 0] -> avg 5/16 = .3125      fipo seed 1: [4, 4, 0, 2] -> avg 10/16 = .625
    => dapo avg@4 = 37.5 %, fipo avg@4 = 62.5 %.
fipo seed 2 "failed" (all answers wrong) and grpo seed 0 (no status.json) must not enter any aggregate.
"""

from __future__ import annotations

import base64
import csv
import itertools
import json
import os
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fipo_bench.report import build_report, write_report
from fipo_bench.report.stats import (
    align_on_common_steps,
    first_step_reaching,
    normalized_auc,
    paired_permutation_pvalue,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
K = 4


# ----------------------------------------------------------------------------------------------------
# Synthetic results builder


def write_eval(run_dir: Path, dataset: str, step: int, counts: list[int], *, num_tokens: int,
               cons: float = 0.5, truncation: float = 0.0) -> None:
    """One eval/<dataset>/step-<N>/ with `counts[p]` correct of K samples on problem p, every sample
    `num_tokens` long. summary.json holds the values the report must show: avg@K = mean accuracy,
    pass@K = share of problems with a correct sample (the unbiased estimator is exactly that at k = n)."""
    step_dir = run_dir / "eval" / dataset / f"step-{step}"
    step_dir.mkdir(parents=True)
    rows = [{"problem_id": f"p{p}", "sample_index": i, "response": "Answer: 1", "gold": "1",
             "extracted": "1", "verdict": "correct" if i < c else "incorrect", "correct": i < c,
             "num_tokens": num_tokens, "truncated": False}
            for p, c in enumerate(counts) for i in range(K)]
    (step_dir / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    acc = [c / K for c in counts]
    summary = {
        "dataset": dataset, "checkpoint": "ckpt", "k": K, "num_problems": len(counts),
        "num_samples": K * len(counts), "avg_at_k": sum(acc) / len(acc), "avg_at_k_ci95": [0.0, 1.0],
        "pass_at_k": {"1": sum(acc) / len(acc), str(K): sum(c > 0 for c in counts) / len(counts)},
        "cons_at_k": cons,
        "response_length": {"mean": num_tokens, "median": num_tokens, "p90": num_tokens, "max": num_tokens},
        "truncation_rate": truncation, "verdict_counts": {},
        "per_problem": [{"problem_id": f"p{p}", "num_correct": c, "num_samples": K, "accuracy": c / K}
                        for p, c in enumerate(counts)],
        "sampling": {"temperature": 1.0, "top_p": 0.7, "max_new_tokens": 64, "seed": 0, "template": "dapo"},
    }
    (step_dir / "summary.json").write_text(json.dumps(summary))
    with open(run_dir / "evals.jsonl", "a") as f:
        f.write(json.dumps({"step": step, "dataset": dataset, "eval_accuracy": summary["avg_at_k"],
                            "eval_response_length": num_tokens}) + "\n")


def write_run(root: Path, algo: str, seed: int, status: str | None, train_accuracy, evals: dict,
              *, num_steps: int = 10, extra_metrics=None) -> Path:
    """A run directory: metrics.jsonl for steps 1..num_steps, and `evals` = {step: (counts, kwargs)}."""
    run_dir = root / f"{algo}-seed{seed}"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"algorithm": algo, "seed": seed}))
    if status is not None:
        (run_dir / "status.json").write_text(json.dumps(
            {"status": status, "step": num_steps, "error": "loss is NaN" if status == "failed" else None}))
    with open(run_dir / "metrics.jsonl", "w") as f:
        for step in range(1, num_steps + 1):
            row = {"step": step, "accuracy": train_accuracy(step), "reward": 2 * train_accuracy(step) - 1,
                   "response_length_mean": 10.0 + step, "response_length_median": 9.0 + step,
                   "entropy": 1.0 / step, "clip_frac_high": 0.01, "clip_frac_low": 0.002,
                   "kept_groups_frac": 0.8, "tokens_per_s": 1000.0 + seed, "step_time_s": 1.0,
                   "loss": 0.1, "grad_norm": 0.5, "lr": 1e-4}
            row.update(extra_metrics(step) if extra_metrics else {})
            f.write(json.dumps(row) + "\n")
    for step, (counts, kwargs) in evals.items():
        write_eval(run_dir, "aime24", step, counts, **kwargs)
    return run_dir


BASE = [1, 1, 0, 0]  # step 0: the same base checkpoint for every run, avg 2/16 = .125


def fipo_metrics(step):
    return {"weight_mean": 1.0 + 0.01 * step, "weight_min": 0.9, "weight_max": 1.2,
            "weight_clip_frac_high": 0.1, "weight_clip_frac_low": 0.0, "dropped_seq_frac": 0.05}


def build_results(root: Path) -> Path:
    results = root / "demo"
    results.mkdir()
    run_info = {"algos": ["grpo", "dapo", "fipo"], "seeds": [0, 1], "status": "completed", "preset": "tiny",
                "backend": "local"}
    (results / "run.json").write_text(json.dumps(run_info))
    # Train accuracy: seed 0 = .05 step, seed 1 = .05 step + .1 (see test_training_table).
    write_run(results, "dapo", 0, "completed", lambda s: 0.05 * s, {
        0: (BASE, {"num_tokens": 5}), 5: ([2, 1, 1, 0], {"num_tokens": 8}),
        10: ([4, 2, 0, 1], {"num_tokens": 10, "cons": 0.5, "truncation": 0.0})})
    write_run(results, "dapo", 1, "completed", lambda s: 0.05 * s + 0.1, {
        0: (BASE, {"num_tokens": 5}), 5: ([1, 1, 0, 0], {"num_tokens": 8}),
        10: ([3, 1, 1, 0], {"num_tokens": 20, "cons": 0.25, "truncation": 0.5})})
    for seed, final in ((0, [4, 3, 1, 2]), (1, [4, 4, 0, 2])):
        write_run(results, "fipo", seed, "completed", lambda s: 0.05 * s, {
            0: (BASE, {"num_tokens": 5}), 5: ([2, 2, 1, 1], {"num_tokens": 20}),
            10: (final, {"num_tokens": 30 + 20 * seed, "cons": 0.75, "truncation": 0.125})},
            extra_metrics=fipo_metrics)
    write_run(results, "fipo", 2, "failed", lambda s: 0.0, {
        0: (BASE, {"num_tokens": 5}), 5: ([0, 0, 0, 0], {"num_tokens": 64, "cons": 0.0, "truncation": 1.0})},
        num_steps=6, extra_metrics=fipo_metrics)
    write_run(results, "grpo", 0, None, lambda s: 0.3, {0: (BASE, {"num_tokens": 5})}, num_steps=3)
    return results


def bootstrap_ci(values):
    from fipo_bench.evals.metrics import bootstrap_ci as reference

    return reference(values, confidence=0.95, n_boot=10_000, seed=0)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo results, reported once through the CLI (default output dir RESULTS/report)."""
    import typer

    from fipo_bench.commands.report import report

    results = build_results(tmp_path_factory.mktemp("results"))
    app = typer.Typer()
    app.command()(report)
    cli = CliRunner().invoke(app, [str(results), "--baseline", "dapo"], env={"COLUMNS": "250"})
    assert cli.exit_code == 0, cli.output
    return results, results / "report", build_report(results, baseline="dapo"), cli.output


def markdown_rows(text: str, title: str, key: int = 0) -> dict[str, list[str]]:
    """Rows of the markdown table under `## title`, keyed by their cell in column `key`."""
    lines = text.split(f"## {title}\n", 1)[1].strip().split("\n\n", 1)[0].splitlines()
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    return {row[key]: row for row in rows[2:]}


# ----------------------------------------------------------------------------------------------------
# Tables


def test_eval_table_shows_the_known_numbers(demo):
    _, out, report, _ = demo
    rows = markdown_rows((out / "report.md").read_text(), "Evaluation: aime24")
    assert set(rows) == {"dapo", "fipo"}  # grpo has no completed run
    dapo, fipo = rows["dapo"], rows["fipo"]
    assert dapo[1:4] == ["0,1", "10", "37.5"] and fipo[1:4] == ["0,1", "10", "62.5"]
    # 95% CI over runs: t-interval of the seeds' avg@4. dapo: 7/16 and 5/16, SD = (1/8) / sqrt(2), SE = 1/16,
    # t_{.975, 1} = 12.7062 -> 37.5 +- 79.41 = [-41.9, 116.9]; fipo's two seeds agree: no spread.
    assert dapo[4] == "[-41.9, 116.9]" and fipo[4] == "[62.5, 62.5]"
    # 95% CI over problems: bootstrap over problems of per-problem accuracy averaged over seeds.
    # dapo: ([4,2,0,1] + [3,1,1,0]) / 8 = [.875, .375, .125, .125]; fipo: [1, .875, .125, .5]
    for row, per_problem in ((dapo, [0.875, 0.375, 0.125, 0.125]), (fipo, [1.0, 0.875, 0.125, 0.5])):
        low, high = bootstrap_ci(per_problem)
        assert row[5] == f"[{100 * low:.1f}, {100 * high:.1f}]"
    # IQM of 2 runs cuts int(0.5) = 0 runs: the mean. Its bootstrap resamples are the mean of 2 draws from
    # {7/16, 5/16}: 5/16 and 7/16 with probability 1/4 each, so the 2.5% and 97.5% quantiles are those.
    assert dapo[6] == "37.5 [31.2, 43.8]" and fipo[6] == "62.5 [62.5, 62.5]"
    # Per seed 7/16, 5/16, 10/16: 43.75 and 31.25 are exact binary ties, formatted half-to-even.
    assert dapo[7] == "43.8 / 31.2" and fipo[7] == "62.5 / 62.5"
    # pass@4 = share of problems with a correct sample: dapo 3/4, 3/4; fipo 4/4, 3/4.
    assert dapo[8] == "75.0" and fipo[8] == "87.5"
    assert dapo[9] == "37.5" and fipo[9] == "75.0"  # cons: (.5 + .25) / 2, (.75 + .75) / 2
    assert dapo[10:12] == ["15.0", "15.0"] and fipo[10:12] == ["40.0", "40.0"]  # lengths (10, 20), (30, 50)
    assert dapo[12] == "25.0" and fipo[12] == "12.5"  # truncation (0 + .5) / 2, .125


def test_comparison_is_seed_level(demo):
    from fipo_bench.report.stats import seeds_for_power

    _, out, report, _ = demo
    text = (out / "report.md").read_text()
    (fipo,) = markdown_rows(text, "Seed-level comparison vs dapo: aime24").values()
    # Per-seed differences: seed 0: 10/16 - 7/16 = 3/16, seed 1: 10/16 - 5/16 = 5/16 -> mean 1/4, SD of the
    # differences (1/8) / sqrt(2), SE 1/16, t = 4 on 1 df: p = 1 - (2/pi) atan(4) = 0.156 (Cauchy).
    # CI: 25 +- 12.7062 x 6.25 = [-54.4, +104.4]. Every fipo run beats every dapo run: P = 1.
    assert fipo[:8] == ["fipo", "2 / 2", "paired t (2 seeds)", "+25.0", "[-54.4, +104.4]", "0.156",
                        "+18.8 / +31.2", "1.00 [1.00, 1.00]"]
    (c,) = report.comparisons
    assert c.test.p_value == pytest.approx(1 - 2 / np.pi * np.arctan(4.0), abs=1e-12)
    sd = 0.125 / np.sqrt(2)
    assert c.test.sd == pytest.approx(sd)
    # Seeds for 80% power from that spread: d_z = .25 / sd = 2.83 and .05 / sd = .57.
    assert fipo[8:] == [str(seeds_for_power(0.25, sd, paired=True)),
                        str(seeds_for_power(0.05, sd, paired=True))]
    assert (c.seeds_needed_observed, c.seeds_needed_min_effect) == (4, 27)
    # The problem-level permutation p-value of the old report (0.25 here) is gone from the report.
    assert "p (perm.)" not in text and "0.250" not in text


def test_learning_speed_and_training_tables(demo):
    _, out, report, _ = demo
    text = (out / "report.md").read_text()
    speed = markdown_rows(text, "Learning speed", key=1)
    # Seed-mean eval curves at steps 0, 5, 10: dapo .125, (.25 + .125) / 2 = .1875, .375;
    # fipo .125, .375, .625. Threshold = .125 + .5 (.375 - .125) = .25: dapo reaches it at step 10,
    # fipo at 5. AUC / 10 steps: dapo (5 (.125 + .1875) / 2 + 5 (.1875 + .375) / 2) / 10 = .21875,
    # fipo (5 (.5) / 2 + 5 (1.0) / 2) / 10 = .375.
    assert speed["dapo"][2:] == ["12.5", "37.5", "21.9", "25.0", "10"]
    assert speed["fipo"][2:] == ["12.5", "62.5", "37.5", "25.0", "5"]
    training = markdown_rows(text, "Training")
    # dapo train accuracy: seed 0 = .05 s, seed 1 = .05 s + .1 -> last step (.5 + .6) / 2 = .55; the mean
    # curve is linear from .1 (step 1) to .55 (step 10), so its normalized AUC = (.1 + .55) / 2 = .325.
    # Lengths at step 10: 10 + 10 = 20; tokens/s: (1000 + 1001) / 2 = 1000.5 -> "1000" (round half even).
    assert training["dapo"][1:] == ["0,1", "10", "55.0", "32.5", "20.0", "1000"]


def test_incomplete_runs_are_flagged_and_excluded(demo):
    results, out, report, _ = demo
    incomplete = markdown_rows((out / "report.md").read_text(), "Incomplete runs (excluded from aggregates)")
    assert set(incomplete) == {"fipo-seed2", "grpo-seed0"}
    assert "Not included (incomplete, see below): fipo-seed2, grpo-seed0." in (out / "report.md").read_text()
    assert incomplete["fipo-seed2"][1:4] == ["failed", "6", "aime24 step 5: 0.0%"]
    assert incomplete["fipo-seed2"][4] == "loss is NaN"
    assert incomplete["grpo-seed0"][1] == "no status.json"
    fipo = next(e for e in report.evals if e.algo == "fipo")
    assert fipo.seeds == (0, 1) and fipo.avg_at_k == pytest.approx(0.625)
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    aggregates = {r["algorithm"]: r for r in rows if r["kind"] == "aggregate"}
    assert set(aggregates) == {"dapo", "fipo"}
    assert float(aggregates["fipo"]["avg_at_k"]) == 0.625 and aggregates["fipo"]["seeds"] == "0,1"
    assert float(aggregates["fipo"]["diff_vs_baseline"]) == pytest.approx(0.25)
    assert aggregates["fipo"]["diff_test"] == "paired" and aggregates["dapo"]["diff_test"] == ""
    failed = [r for r in rows if r["kind"] == "run" and r["algorithm"] == "fipo" and r["seeds"] == "2"]
    assert len(failed) == 1 and failed[0]["status"] == "failed" and float(failed[0]["avg_at_k"]) == 0.0
    assert any(r["algorithm"] == "grpo" and r["status"] == "no status.json" for r in rows)


# ----------------------------------------------------------------------------------------------------
# HTML and PNG files


class _ImageSources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_html_embeds_every_png_and_pngs_are_valid(demo):
    from matplotlib.image import imread

    _, out, _, _ = demo
    parser = _ImageSources()
    parser.feed((out / "report.html").read_text())
    parser.close()
    pngs = sorted(out.glob("*.png"))
    assert {p.name for p in pngs} >= {"training_curves.png", "fipo_weights.png", "eval_curves.png",
                                       "length_distribution_aime24.png", "seed_differences.png",
                                       "compute_curves.png"}
    embedded = {base64.b64decode(s.removeprefix("data:image/png;base64,")) for s in parser.sources}
    assert all(s.startswith("data:image/png;base64,") for s in parser.sources)
    assert len(parser.sources) == len(pngs)
    for png in pngs:
        data = png.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and data in embedded
        image = imread(png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert image.std() > 0  # not a blank canvas
    markdown = (out / "report.md").read_text()
    assert all(f"]({p.name})" in markdown for p in pngs)


# ----------------------------------------------------------------------------------------------------
# Errors and missing files


def test_malformed_metrics_line_names_file_and_line(tmp_path):
    results = build_results(tmp_path)
    metrics = results / "dapo-seed0" / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    lines[1] = '{"step": 2, "accuracy": \n'
    metrics.write_text("".join(lines))
    with pytest.raises(ValueError, match=rf"{metrics}:2: invalid JSON"):
        build_report(results)
    lines[1] = '{"step": 2, "accuracy": true}\n'
    metrics.write_text("".join(lines))
    with pytest.raises(ValueError, match=rf"{metrics}:2: field 'accuracy' must be a number"):
        build_report(results)


def test_summary_missing_field_names_file(tmp_path):
    results = build_results(tmp_path)
    path = results / "fipo-seed0" / "eval" / "aime24" / "step-10" / "summary.json"
    summary = json.loads(path.read_text())
    path.write_text(json.dumps({**summary, "g_pass_at_k": {"4": {"half": 0.5}}}))
    with pytest.raises(ValueError, match=rf"{path}: field 'g_pass_at_k.4' has a non-number threshold key"):
        build_report(results)
    path.write_text(json.dumps({**summary, "maj_at_k": {"4": "0.5"}}))
    with pytest.raises(ValueError, match=rf"{path}: field 'maj_at_k.4' must be a number"):
        build_report(results)
    del summary["per_problem"]
    path.write_text(json.dumps(summary))
    with pytest.raises(ValueError, match=rf"{path}: missing field 'per_problem'"):
        build_report(results)


def test_runs_without_evals_or_baseline(tmp_path):
    results = tmp_path / "r"
    write_run(results, "grpo", 0, "completed", lambda s: 0.1 * s, {})
    write_run(results, "fipo", 0, "running", lambda s: 0.1 * s, {}, num_steps=4)
    report = build_report(results, baseline="dapo")
    assert report.evals == [] and report.comparisons == []
    assert any("baseline 'dapo' has no completed run" in n for n in report.notes)
    out = write_report(results, tmp_path / "out", baseline="dapo")
    assert (out / "training_curves.png").is_file() and not (out / "seed_differences.png").exists()
    assert "fipo-seed0 | running | 4" in (out / "report.md").read_text()


def test_cli_prints_the_eval_table(demo, tmp_path):
    import typer

    from fipo_bench.commands.report import report

    _, _, _, output = demo
    assert "Evaluation: aime24" in output and "+25.0" in output and "62.5" in output
    assert "fipo-seed2" in output and "report written to" in output
    app = typer.Typer()
    app.command()(report)
    bad = CliRunner().invoke(app, [str(tmp_path / "nowhere")], env={"COLUMNS": "250"})
    assert bad.exit_code == 2 and "error: " in bad.output and "not a directory" in bad.output


# ----------------------------------------------------------------------------------------------------
# Statistics


def brute_force_pvalue(d):
    """Enumerate every sign assignment with itertools (independent of the vectorized bit trick)."""
    observed = abs(sum(d))
    hits = sum(abs(sum(s * x for s, x in zip(signs, d, strict=True))) >= observed - 1e-12
               for signs in itertools.product((1, -1), repeat=len(d)))
    return hits / 2 ** len(d)


def test_permutation_pvalue_hand_cases():
    # [1, 2, 3]: signed sums are ±6, ±4, ±2, 0, 0; |sum| >= 6 for 2 of 8 assignments.
    assert paired_permutation_pvalue([1.0, 2.0, 3.0]) == 0.25
    # [3, 1]: sums 4, 2, -2, -4 -> 2 of 4 reach 4.
    assert paired_permutation_pvalue([3.0, 1.0]) == 0.5
    # Zeros do not change under a flip: [1, 0] is the one-pair test, p = 1.
    assert paired_permutation_pvalue([1.0, 0.0]) == 1.0
    assert paired_permutation_pvalue([0.0, 0.0]) == 1.0
    # Five equal positive differences: only all-plus and all-minus reach |sum| = 5 -> 2/32.
    assert paired_permutation_pvalue([0.5] * 5) == 2 / 32


def test_permutation_pvalue_matches_brute_force_and_monte_carlo():
    rng = np.random.default_rng(1)
    for n in (4, 7, 12):
        d = np.round(rng.normal(0.1, 0.3, n), 2).tolist()  # rounding creates ties in |sum|
        assert paired_permutation_pvalue(d) == pytest.approx(brute_force_pvalue(d), abs=1e-12)
        # Monte Carlo (forced): standard error <= sqrt(.25 / 20000) = .0035, so .015 is > 4 SE.
        mc = paired_permutation_pvalue(d, max_exact=0, n_resamples=20_000, seed=3)
        assert mc == pytest.approx(brute_force_pvalue(d), abs=0.015)
        assert mc == paired_permutation_pvalue(d, max_exact=0, n_resamples=20_000, seed=3)  # fixed seed
    with pytest.raises(ValueError):
        paired_permutation_pvalue([])


def test_auc_threshold_and_alignment():
    # Trapezoid by hand: steps 0, 2, 6 with values 0, 1, 1 -> area 2 (0 + 1) / 2 + 4 = 5, span 6.
    assert normalized_auc([0, 2, 6], [0.0, 1.0, 1.0]) == pytest.approx(5 / 6)
    assert normalized_auc([3], [0.4]) == 0.4
    with pytest.raises(ValueError):
        normalized_auc([0, 0], [1.0, 2.0])
    assert first_step_reaching([0, 5, 10], [0.1, 0.3, 0.2], 0.25) == 5
    assert first_step_reaching([0, 5], [0.1, 0.2], 0.25) is None
    steps, values = align_on_common_steps([([1, 2, 3], [1.0, 2.0, 3.0]), ([2, 3, 4], [20.0, 30.0, 40.0])])
    assert steps.tolist() == [2.0, 3.0] and values.tolist() == [[2.0, 3.0], [20.0, 30.0]]


def test_reads_what_the_evals_writer_writes(tmp_path):
    """Schema check against fipo_bench.evals' own writer, including generations without token counts."""
    from fipo_bench.evals.io import write_eval_dir
    from fipo_bench.evals.metrics import summarize_generations

    results = tmp_path / "r"
    correct = {"dapo": [[1, 0], [0, 0], [1, 1]], "fipo": [[1, 1], [1, 0], [1, 1]]}  # 3 problems x k=2
    for algo, table in correct.items():
        run_dir = results / f"{algo}-seed0"
        run_dir.mkdir(parents=True)
        (run_dir / "status.json").write_text(json.dumps({"status": "completed", "step": 3, "error": None}))
        rows = [{"problem_id": f"q{p}", "sample_index": i, "response": "Answer: 1", "gold": "1",
                 "extracted": "1" if c else "2", "verdict": "correct" if c else "incorrect",
                 "correct": bool(c),
                 "num_tokens": None if algo == "dapo" else 7, "truncated": None if algo == "dapo" else False}
                for p, samples in enumerate(table) for i, c in enumerate(samples)]
        summary = summarize_generations(rows, dataset="aime24", checkpoint="c", k=2, sampling={})
        write_eval_dir(run_dir / "eval" / "aime24" / "step-3", rows, summary)
    report = build_report(results)
    evals = {e.algo: e for e in report.evals}
    # dapo per problem [.5, 0, 1] -> 50 %; fipo [1, .5, 1] -> 83.3 %; one seed, so the problem-level CI is
    # exactly summary.json's own (same values, same order, same bootstrap), and there is no CI over runs.
    assert evals["dapo"].avg_at_k == pytest.approx(0.5) and evals["fipo"].avg_at_k == pytest.approx(5 / 6)
    saved = json.loads((results / "fipo-seed0/eval/aime24/step-3/summary.json").read_text())
    assert list(evals["fipo"].problem_ci) == pytest.approx(saved["avg_at_k_ci95"])
    assert evals["fipo"].seed_ci is None and evals["fipo"].iqm is None
    assert evals["dapo"].length_mean is None and evals["fipo"].length_mean == 7.0
    # maj@2, G-Pass@2 and mG-Pass@2 come through from summary.json: fipo [2, 1, 2] correct of 2.
    assert evals["fipo"].g_pass_at_k[2][1.0] == pytest.approx((1 + 0 + 1) / 3)
    assert evals["fipo"].mg_pass_at_k[2] == pytest.approx(2 / 3)
    assert evals["fipo"].maj_at_k[1] == pytest.approx(5 / 6)
    (c,) = report.comparisons  # one run each: a difference, and no test
    assert c.test.mean == pytest.approx(1 / 3) and c.test.design == "none"
    assert c.test.p_value is None and c.test.ci is None and c.improvement is None
    out = write_report(results)
    assert out == results / "report"
    dapo_row = markdown_rows((out / "report.md").read_text(), "Evaluation: aime24")["dapo"]
    # pass@2 with n = 2 samples: 1 if any sample is correct -> (1 + 0 + 1) / 3; no lengths -> "-".
    assert dapo_row[8] == "66.7" and dapo_row[10:13] == ["-", "-", "-"]
    assert dapo_row[4] == "-" and dapo_row[6] == "-"  # no CI over runs, no IQM from one run


def test_repeated_identical_steps_are_read_once_and_conflicting_ones_name_both_lines(tmp_path):
    results = build_results(tmp_path)
    metrics = results / "dapo-seed0" / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    # What two processes appending to one run left: steps 3 and 4 again, with other timings.
    again = [json.dumps({**json.loads(line), "step_time_s": 9.0}) + "\n" for line in lines[2:4]]
    metrics.write_text("".join(lines[:4] + again + lines[4:]))
    report = build_report(results)
    dapo0 = next(r for r in report.runs if r.name == "dapo-seed0")
    assert [m["step"] for m in dapo0.metrics] == list(range(1, 11))
    assert any(f"{metrics}:5: repeats line 3" in n for n in report.notes)
    conflicting = json.dumps({**json.loads(lines[2]), "accuracy": 0.99}) + "\n"
    metrics.write_text("".join(lines[:4] + [conflicting] + lines[4:]))
    with pytest.raises(ValueError, match=rf"{metrics}:5: repeats line 3 .*'accuracy'"):
        build_report(results)


# ----------------------------------------------------------------------------------------------------
# End to end on synthetic results directories with a known truth (tests/support/synthetic_runs.py)

T_975_DF3 = 3.18244631


def t3_two_sided_pvalue(t: float) -> float:
    """Student's t with 3 degrees of freedom in closed form: 1 - (2/pi) (atan(x) + x / (1 + x^2)) with
    x = t / sqrt 3."""
    x = abs(t) / np.sqrt(3)
    return float(1 - 2 / np.pi * (np.arctan(x) + x / (1 + x**2)))


@pytest.fixture(scope="module")
def synthetic(synthetic_runs, tmp_path_factory):
    """Three algorithms with planted asymptotes (grpo 0.5 < dapo 1.5 < fipo 3.0 logits over the base, the
    same midpoint), DAPO/FIPO with dynamic sampling (2 generation batches, half the groups kept), reported by
    the CLI with one seed on one dataset and with four seeds on two."""
    import typer

    from fipo_bench.commands.report import report

    truth = synthetic_runs.AlgoTruth
    algos = {"grpo": truth(asymptote=0.5, c_mid=10_000.0),
             "dapo": truth(asymptote=1.5, c_mid=10_000.0, kept=0.5, gen_batches=2),
             "fipo": truth(asymptote=3.0, c_mid=10_000.0, kept=0.5, gen_batches=2)}
    root = tmp_path_factory.mktemp("synthetic")
    app = typer.Typer()
    app.command()(report)
    out = {}
    plan = (("single", [0], ("synthetic",), (0, 30, 60)),
            ("multi", [0, 1, 2, 3], ("synthetic", "other"), (0, 5, 10, 20, 40, 60)))
    for name, seeds, datasets, steps in plan:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "fsync", lambda fd: None)  # durability is not under test: hundreds of files
            results = synthetic_runs.write_results(
                root / name, algos, seeds, datasets=datasets, eval_steps=steps,
                command="fipo-bench run --algos grpo,dapo,fipo --steps 60")
        cli = CliRunner().invoke(app, [str(results)], env={"COLUMNS": "250"})
        assert cli.exit_code == 0, cli.output
        out[name] = (results, build_report(results), cli.output)
    return out


def final_scores(results: Path, algo: str, seeds) -> np.ndarray:
    return np.array([json.loads((results / f"{algo}-seed{s}/eval/synthetic/step-60/summary.json").read_text())
                     ["avg_at_k"] for s in seeds])


def test_one_seed_gets_no_p_value_but_the_reason_and_the_command(synthetic):
    from fipo_bench.report.compare import NO_TEST_REASON

    results, report, output = synthetic["single"]
    text = (results / "report" / "report.md").read_text()
    rows = markdown_rows(text, "Seed-level comparison vs dapo: synthetic")
    for algo in ("grpo", "fipo"):
        row = rows[algo]
        difference = final_scores(results, algo, [0])[0] - final_scores(results, "dapo", [0])[0]
        assert row[1:4] == ["1 / 1", "none: 1 run", f"{100 * difference:+.1f}"]
        assert row[4:8] == ["-", "-", "-", "-"] and row[8:] == ["- (needs 2 runs)"] * 2
    command = (f"fipo-bench run --algos grpo,dapo,fipo --steps 60 --seeds 0,1,2,3,4 --run-name single "
               f"--output-dir {results.parent.resolve()}")
    assert NO_TEST_REASON in text and command in text
    assert "no p-value or CI" in " ".join(output.split())  # the terminal shows the caption too
    evals = markdown_rows(text, "Evaluation: synthetic")
    assert evals["fipo"][4] == "-" and evals["fipo"][6] == "-"  # no CI over runs, no IQM
    with open(results / "report" / "summary.csv") as f:
        rows = {r["algorithm"]: r for r in csv.DictReader(f) if r["kind"] == "aggregate"}
    assert rows["fipo"]["diff_test"] == "none" and rows["fipo"]["diff_p_value"] == ""


def test_several_seeds_get_seed_level_numbers(synthetic):
    from fipo_bench.report.stats import seeds_for_power

    results, report, _ = synthetic["multi"]
    text = (results / "report" / "report.md").read_text()
    dapo = final_scores(results, "dapo", range(4))
    evals = markdown_rows(text, "Evaluation: synthetic")
    for algo in ("grpo", "dapo", "fipo"):
        scores = final_scores(results, algo, range(4))
        half = T_975_DF3 * scores.std(ddof=1) / 2
        assert evals[algo][4] == f"[{100 * (scores.mean() - half):.1f}, {100 * (scores.mean() + half):.1f}]"
        assert evals[algo][7] == " / ".join(f"{100 * s:.1f}" for s in scores)
        # IQM of 4 runs: the middle two.
        assert evals[algo][6].startswith(f"{100 * np.sort(scores)[1:3].mean():.1f} [")
    rows = markdown_rows(text, "Seed-level comparison vs dapo: synthetic")
    for algo in ("grpo", "fipo"):
        d = final_scores(results, algo, range(4)) - dapo
        se = d.std(ddof=1) / 2
        row = rows[algo]
        assert row[1:4] == ["4 / 4", "paired t (4 seeds)", f"{100 * d.mean():+.1f}"]
        low, high = d.mean() - T_975_DF3 * se, d.mean() + T_975_DF3 * se
        assert row[4] == f"[{100 * low:+.1f}, {100 * high:+.1f}]"
        p = t3_two_sided_pvalue(d.mean() / se)
        assert row[5] == (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")
        assert row[6] == " / ".join(f"{100 * x:+.1f}" for x in d)
        # P(run > dapo run) over the 16 run pairs.
        scores = final_scores(results, algo, range(4))
        share = np.mean(scores[:, None] > dapo[None, :]) + 0.5 * np.mean(scores[:, None] == dapo[None, :])
        assert row[7].startswith(f"{share:.2f} [")
        assert row[8:] == [str(seeds_for_power(d.mean(), d.std(ddof=1), paired=True)),
                           str(seeds_for_power(0.05, d.std(ddof=1), paired=True))]
    # The planted order of asymptotes, recovered by the fits on both datasets: the ranked (reliable) fits
    # in the order fipo, dapo, grpo. grpo's small gain leaves its curve unturned on one of them.
    for dataset in ("synthetic", "other"):
        ranked = sorted((f for f in report.fits if f.dataset == dataset and f.rank), key=lambda f: f.rank)
        planted = [a for a in ("fipo", "dapo", "grpo") if a in {f.algo for f in ranked}]
        assert [f.algo for f in ranked] == planted
        assert ranked[0].algo == "fipo" and len(ranked) >= 2
        assert all(f.a_ci is not None and f.b_ci is not None for f in ranked)
    fits = {f.algo: f for f in report.fits if f.dataset == "synthetic"}
    # C: generated + trained tokens. grpo: 1000 + 1000 per step; dapo: 1000 + 500 (half the groups kept).
    assert fits["grpo"].compute.tolist() == [0, 10_000, 20_000, 40_000, 80_000, 120_000]
    assert fits["dapo"].compute.tolist() == [0, 7_500, 15_000, 30_000, 60_000, 90_000]
    fit_rows = markdown_rows(text, "Compute-performance fits", key=1)  # the last dataset's: synthetic
    assert fit_rows["fipo"][0] == "synthetic" and fit_rows["fipo"][9:] == ["1", "reliable"]
    assert fit_rows["fipo"][5].startswith(f"{100 * fits['fipo'].fit.a:.1f} [")
    with open(results / "report" / "summary.csv") as f:
        rows = {r["algorithm"]: r for r in csv.DictReader(f) if r["kind"] == "aggregate" and
                r["dataset"] == "synthetic"}
    assert float(rows["fipo"]["fit_a"]) == pytest.approx(fits["fipo"].fit.a)
    assert rows["fipo"]["fit_rank"] == "1"
    assert rows["fipo"]["fit_reliable"] == "True" and float(rows["fipo"]["fit_a_ci_low"]) < fits["fipo"].fit.a
    d = final_scores(results, "grpo", range(4)) - dapo
    p = t3_two_sided_pvalue(d.mean() / (d.std(ddof=1) / 2))
    assert float(rows["grpo"]["diff_p_value"]) == pytest.approx(p)
    assert {"g_pass_at_8_0.5", "mg_pass_at_8", "maj_at_8", "iqm_ci_low", "prob_improvement"} <= set(
        rows["fipo"])
    assert (results / "report" / "compute_curves.png").is_file()


def test_g_pass_and_maj_reach_the_report(synthetic):
    results, report, output = synthetic["multi"]
    rows = markdown_rows((results / "report" / "report.md").read_text(), "G-Pass@k and maj@k: synthetic")
    summaries = [json.loads((results / f"fipo-seed{s}/eval/synthetic/step-60/summary.json").read_text())
                 for s in range(4)]
    expected = [np.mean([s["maj_at_k"]["8"] for s in summaries])]
    expected += [np.mean([s["g_pass_at_k"]["8"][tau] for s in summaries]) for tau in ("0.0", "0.25", "0.5",
                                                                                        "0.75", "1.0")]
    expected += [np.mean([s["mg_pass_at_k"]["8"] for s in summaries])]
    assert rows["fipo"][1:] == [f"{100 * v:.1f}" for v in expected]
    assert "G-Pass@8 τ=0.5 %" in output and "mG-Pass@8" in output


def test_rliable_aggregates_across_datasets(synthetic):
    from fipo_bench.report.stats import interquartile_mean

    results, report, _ = synthetic["multi"]
    scores = {a: np.array([[json.loads((results / f"{a}-seed{s}/eval/{d}/step-60/summary.json").read_text())
                            ["avg_at_k"] for d in ("other", "synthetic")] for s in range(4)])
              for a in ("grpo", "dapo", "fipo")}  # [runs, datasets], datasets in the report's (sorted) order
    rows = markdown_rows((results / "report" / "report.md").read_text(), "Across datasets (rliable)")
    for algo, x in scores.items():
        # IQM over the 8 run x dataset scores: the middle 4 (a brute-force sort, not the library's).
        assert interquartile_mean(x) == pytest.approx(np.sort(x.ravel())[2:6].mean())
        assert rows[algo][2].startswith(f"{100 * np.sort(x.ravel())[2:6].mean():.1f} [")
    # P(run > dapo run) per dataset over the 16 run pairs, then the mean over the two datasets.
    x, y = scores["fipo"], scores["dapo"]
    share = np.mean([(x[:, None, j] > y[None, :, j]).mean() + 0.5 * (x[:, None, j] == y[None, :, j]).mean()
                     for j in range(2)])
    assert rows["fipo"][3].startswith(f"{share:.2f} [") and rows["dapo"][3] == "baseline"
    (fipo,) = [a for a in report.across_datasets if a.algo == "fipo"]
    assert fipo.datasets == ("other", "synthetic") and fipo.improvement == pytest.approx(share)
    assert fipo.improvement_ci[0] <= share <= fipo.improvement_ci[1]


def test_value_model_plot_when_a_run_has_critic_metrics(tmp_path):
    from fipo_bench.algorithms.ppo import CRITIC_METRICS
    from fipo_bench.report.plots import VALUE_PANELS

    assert set(CRITIC_METRICS) <= {key for key, *_ in VALUE_PANELS}  # the names the backends log

    def critic(step):
        return {"value_loss": 0.5 / step, "value_clip_frac": 0.1, "explained_variance": 1 - 1 / step,
                "value_mean": 0.3, "return_mean": 0.4, "advantage_raw_mean": 0.1,
                "advantage_raw_std": 0.9, "critic_grad_norm": 2.0}

    results = tmp_path / "r"
    write_run(results, "grpo", 0, "completed", lambda s: 0.1 * s, {})
    out = write_report(results, tmp_path / "out")
    assert not (out / "value_model.png").exists()  # no critic metrics, no plot
    write_run(results, "ppo", 0, "completed", lambda s: 0.1 * s, {}, extra_metrics=critic)
    out = write_report(results, tmp_path / "out2")
    assert (out / "value_model.png").is_file() and "](value_model.png)" in (out / "report.md").read_text()
