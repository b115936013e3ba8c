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
    assert dapo[1:3] == ["0,1", "10"] and fipo[1:3] == ["0,1", "10"]
    # avg@4 CI: bootstrap over problems of per-problem accuracy averaged over seeds.
    # dapo: ([4,2,0,1] + [3,1,1,0]) / 8 = [.875, .375, .125, .125]; fipo: [1, .875, .125, .5]
    for row, mean, per_problem in ((dapo, "37.5", [0.875, 0.375, 0.125, 0.125]),
                                   (fipo, "62.5", [1.0, 0.875, 0.125, 0.5])):
        low, high = bootstrap_ci(per_problem)
        assert row[3] == f"{mean} [{100 * low:.1f}, {100 * high:.1f}]"
    # Per seed 7/16, 5/16, 10/16: 43.75 and 31.25 are exact binary ties, formatted half-to-even.
    assert dapo[4] == "43.8 / 31.2" and fipo[4] == "62.5 / 62.5"
    # pass@4 = share of problems with a correct sample: dapo 3/4, 3/4; fipo 4/4, 3/4.
    assert dapo[5] == "75.0" and fipo[5] == "87.5"
    assert dapo[6] == "37.5" and fipo[6] == "75.0"  # cons: (.5 + .25) / 2, (.75 + .75) / 2
    assert dapo[7:9] == ["15.0", "15.0"] and fipo[7:9] == ["40.0", "40.0"]  # lengths (10, 20), (30, 50)
    assert dapo[9] == "25.0" and fipo[9] == "12.5"  # truncation (0 + .5) / 2, .125
    assert dapo[10] == "baseline"
    # Paired per-problem differences, averaged over seeds 0 and 1:
    #   seed 0: [4,3,1,2]/4 - [4,2,0,1]/4 = [0, .25, .25, .25]; seed 1: [4,4,0,2]/4 - [3,1,1,0]/4 =
    #   [.25, .75, -.25, .5]; mean = [.125, .5, 0, .375] -> Δ = .25.
    # Sign flips of the 3 non-zero ones: |sum| = 1 only with all signs equal -> p = 2/8 = .25.
    low, high = bootstrap_ci([0.125, 0.5, 0.0, 0.375])
    assert fipo[10] == f"+25.0 [{100 * low:+.1f}, {100 * high:+.1f}]"
    # That bootstrap CI excludes 0 (no resample of 4 problems is all-zero often enough) while p = .25: the
    # table flags the disagreement instead of showing the two side by side without a word.
    assert low > 0 and fipo[11] == "0.250 †"
    (diff,) = report.diffs
    assert (diff.algo, diff.seeds, diff.num_problems) == ("fipo", (0, 1), 4)
    assert diff.mean == pytest.approx(0.25) and diff.p_value == pytest.approx(0.25)
    assert diff.ci == pytest.approx(bootstrap_ci([0.125, 0.5, 0.0, 0.375]))


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
                                       "length_distribution_aime24.png", "paired_differences.png"}
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
    del summary["per_problem"]
    path.write_text(json.dumps(summary))
    with pytest.raises(ValueError, match=rf"{path}: missing field 'per_problem'"):
        build_report(results)


def test_runs_without_evals_or_baseline(tmp_path):
    results = tmp_path / "r"
    write_run(results, "grpo", 0, "completed", lambda s: 0.1 * s, {})
    write_run(results, "fipo", 0, "running", lambda s: 0.1 * s, {}, num_steps=4)
    report = build_report(results, baseline="dapo")
    assert report.evals == [] and report.diffs == []
    assert any("baseline 'dapo' has no completed run" in n for n in report.notes)
    out = write_report(results, tmp_path / "out", baseline="dapo")
    assert (out / "training_curves.png").is_file() and not (out / "paired_differences.png").exists()
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
    # dapo per problem [.5, 0, 1] -> 50 %; fipo [1, .5, 1] -> 83.3 %; one seed, so the CI is exactly
    # summary.json's own (same values, same order, same bootstrap).
    assert evals["dapo"].avg_at_k == pytest.approx(0.5) and evals["fipo"].avg_at_k == pytest.approx(5 / 6)
    saved = json.loads((results / "fipo-seed0/eval/aime24/step-3/summary.json").read_text())
    assert list(evals["fipo"].avg_at_k_ci) == pytest.approx(saved["avg_at_k_ci95"])
    assert evals["dapo"].length_mean is None and evals["fipo"].length_mean == 7.0
    (diff,) = report.diffs  # [1 - .5, .5 - 0, 1 - 1] = [.5, .5, 0] -> mean 1/3; flips of 2 -> p = 2/4
    assert diff.mean == pytest.approx(1 / 3) and diff.p_value == 0.5
    out = write_report(results)
    assert out == results / "report"
    dapo_row = markdown_rows((out / "report.md").read_text(), "Evaluation: aime24")["dapo"]
    # pass@2 with n = 2 samples: 1 if any sample is correct -> (1 + 0 + 1) / 3; no lengths -> "-".
    assert dapo_row[5] == "66.7" and dapo_row[7:10] == ["-", "-", "-"]


def test_a_ci_that_disagrees_with_the_test_is_flagged_and_explained(demo):
    from fipo_bench.report.compare import PairedDiff
    from fipo_bench.report.plots import diff_annotation, diff_label

    _, out, report, _ = demo
    (diff,) = report.diffs
    assert diff.tests_disagree  # CI above 0, p = .25
    text = (out / "report.md").read_text()
    caption = text.split("## Evaluation: aime24", 1)[1].split("## ", 1)[0]
    assert "† The bootstrap CI and the permutation test disagree" in caption
    assert "the p-value decides" in caption
    assert any("disagree about 5% significance" in n and "not significant" in n for n in report.notes)
    assert "CI and test disagree: not significant by the test" in diff_annotation(diff)

    def paired(ci, p, seeds=(0, 1)):
        return PairedDiff("d", "fipo", "dapo", seeds, 30, 0.1, ci, p)

    # Agreement either way carries no mark; a CI across 0 beside p < .05 is the other disagreement.
    assert not paired((0.02, 0.2), 0.01).tests_disagree and not paired((-0.02, 0.2), 0.2).tests_disagree
    assert paired((-0.02, 0.2), 0.01).tests_disagree and paired((-0.3, -0.01), 0.2).tests_disagree
    assert "disagree" not in diff_annotation(paired((0.02, 0.2), 0.01))
    # "1 seed", not "1 seeds".
    assert diff_label(paired((0.02, 0.2), 0.01, seeds=(0,))) == "fipo\n(1 seed, 30 problems)"
    assert diff_label(diff) == "fipo\n(2 seeds, 4 problems)"


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
