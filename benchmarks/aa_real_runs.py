"""A/A on real runs: how often does a test call two identical algorithms different?

Trains one algorithm under two registered names (the algorithm itself, and `register_variant` of it with
the same defaults) with disjoint seeds on the tiny testbed, in this process, one run at a time. Then it
makes every A/A comparison the runs allow (all ways to deal `--group` runs to each side; the names are
labels of one algorithm, so any split is an A/A comparison) and counts how often each test says p < 0.05:

- new: the report's seed-level test (fipo_bench.report.stats.seed_level_test; disjoint seeds -> Welch's
  t-test on the runs' avg@k; one run a side -> no test);
- old: what the report did before, a sign-flip permutation test of the per-problem accuracy differences,
  averaged over runs paired in seed order (fipo_bench.report.stats.paired_permutation_pvalue).

The comparisons share runs, so they are not independent replications: the rates check the simulation in
tests/test_seed_stats.py, with about runs / (2 x group) independent comparisons' worth of information, not
a precise estimate. It also writes the report of the two names (the `fipo-bench report` path) and prints
its comparison row. Runs are kept in --output-dir; a second call with the same arguments reuses them.

    OMP_NUM_THREADS=1 python benchmarks/aa_real_runs.py --preset tiny --algo grpo --runs 12 --steps 20
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import time
from pathlib import Path

import numpy as np


def train(preset: str, algo: str, seeds: list[int], steps: int, run_name: str, output_dir: Path) -> Path:
    from fipo_bench.backends import Execution, get_backend
    from fipo_bench.config import build_config

    options = {"algos": algo, "seeds": ",".join(map(str, seeds)), "num_steps": steps, "run_name": run_name,
               "output_dir": str(output_dir)}
    cfg = build_config(preset, options=options)
    command = ["fipo-bench", "run", "--preset", preset, "--algos", algo, "--steps", str(steps)]
    outcome = get_backend("local").run(cfg, Execution(max_parallel=1), command=command)
    failed = [r for r in outcome.runs if r.status != "completed"]
    if failed:
        raise SystemExit(f"runs did not complete: {failed}")
    return outcome.root


def splits(n_runs: int, group: int, limit: int,
           rng: random.Random) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Unordered pairs of disjoint `group`-subsets of range(n_runs) (all, or `limit` drawn at random)."""
    pairs = [(a, b) for a in itertools.combinations(range(n_runs), group)
             for b in itertools.combinations([i for i in range(n_runs) if i not in a], group) if a < b]
    return pairs if len(pairs) <= limit else rng.sample(pairs, limit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", help="the testbed (today's default task: tiny-sums)")
    parser.add_argument("--algo", default="grpo")
    parser.add_argument("--runs", type=int, default=12, help="runs in all, half under each name")
    parser.add_argument("--steps", type=int, default=20, help="training steps per run (shortened for time)")
    parser.add_argument("--groups", default="1,3,6", help="runs per side of each A/A comparison")
    parser.add_argument("--max-comparisons", type=int, default=3000, help="per group size (random subset)")
    parser.add_argument("--resamples", type=int, default=5000, help="sign flips per old-test p-value")
    parser.add_argument("--output-dir", type=Path, default=Path("results"))
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    from fipo_bench.registry import register_variant
    from fipo_bench.report import write_report
    from fipo_bench.report.compare import build_report
    from fipo_bench.report.data import read_results
    from fipo_bench.report.stats import paired_permutation_pvalue, seed_level_test

    copy = f"{args.algo}-copy"
    register_variant(copy, args.algo, f"{args.algo} under a second name, for an A/A comparison")
    run_name = f"aa-{args.preset}-{args.algo}-{args.steps}steps"
    half = args.runs // 2
    names = {args.algo: list(range(half)), copy: list(range(half, 2 * half))}
    start, cpu = time.perf_counter(), time.process_time()
    for name, seeds in names.items():
        root = train(args.preset, name, seeds, args.steps, run_name, args.output_dir)
    train_wall, train_cpu = time.perf_counter() - start, time.process_time() - cpu

    notes: list[str] = []
    _, runs = read_results(root, notes)
    runs = sorted((r for r in runs if r.complete), key=lambda r: r.seed)
    dataset = sorted(runs[0].evals)[0]
    finals = [r.evals[dataset][max(r.evals[dataset])] for r in runs]
    problems = [p for p in finals[0].per_problem if all(p in f.per_problem for f in finals)]
    per_problem = np.array([[f.per_problem[p] for p in problems] for f in finals])  # [runs, problems]
    scores = per_problem.mean(axis=1)
    rng = random.Random(0)
    rows = []
    for group in (int(g) for g in args.groups.split(",")):
        pairs = splits(len(runs), group, args.max_comparisons, rng)
        new = old = 0
        for a, b in pairs:
            test = seed_level_test({runs[i].seed: scores[i] for i in a}, {runs[i].seed: scores[i] for i in b})
            new += test.p_value is not None and test.p_value < 0.05
            differences = (per_problem[list(a)] - per_problem[list(b)]).mean(axis=0)
            old += paired_permutation_pvalue(differences, n_resamples=args.resamples, seed=0) < 0.05
        rows.append({"group": group, "comparisons": len(pairs), "independent": len(runs) // (2 * group),
                     "new_fpr": new / len(pairs), "old_fpr": old / len(pairs)})

    report = build_report(root, baseline=args.algo)
    write_report(root, baseline=args.algo)
    (comparison,) = [c for c in report.comparisons if c.dataset == dataset]
    t = comparison.test
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"{args.algo} as '{args.algo}' (seeds {names[args.algo]}) and '{copy}' (seeds {names[copy]}), "
          f"preset {args.preset}, {args.steps} steps, evaluated on {dataset} ({len(problems)} problems, "
          f"k={finals[0].k}); run avg@k: mean {scores.mean():.4f}, SD over runs {scores.std(ddof=1):.4f}")
    print(f"training: {train_wall:.0f} s wall, {train_cpu:.0f} s CPU of this process (0 when reused); load "
          f"{os.getloadavg()[0]:.1f}; peak RSS {usage.ru_maxrss / 1e6:.2f} GB")
    print(f"report {root / 'report' / 'report.md'}: {copy} - {args.algo} = {100 * t.mean:+.2f} pp, "
          f"{t.design}, p = {t.p_value if t.p_value is None else round(t.p_value, 4)}, CI "
          f"{None if t.ci is None else tuple(round(100 * x, 2) for x in t.ci)} pp")
    header = ("runs/side", "comparisons", "independent", "new test FPR", "old test FPR")
    print("\n" + " ".join(f"{h:>12}" for h in header))
    for row in rows:
        print(f"{row['group']:>12} {row['comparisons']:>12} {row['independent']:>12} {row['new_fpr']:>12.3f} "
              f"{row['old_fpr']:>12.3f}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                                         "scores": scores.tolist(), "train_wall_s": train_wall}, indent=1))


if __name__ == "__main__":
    main()
