"""Synthetic training runs whose truth is known: the generator behind the report's calibration and power
simulation (tests/test_seed_stats.py) and the results directories of its end-to-end tests
(tests/test_report.py).

The model, in logits. Problem p of the evaluation set has difficulty d_p ~ N(0, difficulty_sd^2). Run r
(one seed of one algorithm) has a run effect u_r ~ N(0, run_sd^2) and a run x problem effect
v_rp ~ N(0, run_problem_sd^2), fixed for the whole run; each of its k samples of problem p is correct with
probability sigmoid(level + effect + d_p + u_r + v_rp), where `effect` is the algorithm's (0 for the
baseline). Runs of two algorithms with the same seed start from the same checkpoint and first rollout, so
their run effects share a component: corr(u_{A,s}, u_{B,s}) = seed_correlation. Every replicate draws a new
problem set. Defaults (stated in the tests that use them): 30 problems (AIME's size), k = 8, level 0,
difficulty SD 1.5, run SD 0.25, run x problem SD 0.4, seed correlation 0.5.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Population:
    problems: int = 30
    samples: int = 8
    level: float = 0.0
    difficulty_sd: float = 1.5
    run_sd: float = 0.25
    run_problem_sd: float = 0.4
    seed_correlation: float = 0.5


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def run_effects(pop: Population, rng: np.random.Generator,
                shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(u_A, u_B) [*shape]: run effects of two algorithms' runs with the same seeds, correlated per seed."""
    shared = rng.standard_normal(shape)
    own = rng.standard_normal((2, *shape))
    rho = pop.seed_correlation
    u = pop.run_sd * (np.sqrt(rho) * shared + np.sqrt(1.0 - rho) * own)
    return u[0], u[1]


def simulate_counts(pop: Population, rng: np.random.Generator, *, replicates: int, seeds: int,
                    effect: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Correct counts of algorithm A (with `effect` logits) and B, each [replicates, seeds, problems]."""
    difficulty = pop.difficulty_sd * rng.standard_normal((replicates, 1, pop.problems))
    u_a, u_b = run_effects(pop, rng, (replicates, seeds, 1))
    counts = []
    for u, shift in ((u_a, effect), (u_b, 0.0)):
        v = pop.run_problem_sd * rng.standard_normal((replicates, seeds, pop.problems))
        counts.append(rng.binomial(pop.samples, _sigmoid(pop.level + shift + difficulty + u + v)))
    return counts[0], counts[1]


@dataclass(frozen=True)
class AlgoTruth:
    """One algorithm's true learning curve: its logit gain follows ScaleRL's sigmoid in compute,
    gain(C) = asymptote / (1 + (c_mid / C)^b), and each step costs `generated` tokens to sample, of which
    the share `kept` (dynamic sampling) is trained."""

    asymptote: float = 1.0
    b: float = 1.5
    c_mid: float = 20_000.0
    generated: float = 1_000.0
    kept: float = 1.0
    gen_batches: int = 1


def write_results(root: Path, algos: dict[str, AlgoTruth], seeds: list[int], *,
                  pop: Population = Population(), eval_steps: tuple[int, ...] = (0, 10, 20, 30, 40, 60),
                  seed: int = 0, command: str | None = None,
                  datasets: tuple[str, ...] = ("synthetic",)) -> Path:
    """A results/<run> directory in the documented layout (results/README.md), written with the project's
    own writers (fipo_bench.results, fipo_bench.evals.metrics), for algorithms with known curves. Samples
    answer "1" (the gold) when correct and a wrong number from {"2", "3", "4"} otherwise; runs of one seed
    share their effects' seed component. Each dataset has its own problems and run x problem effects."""
    from fipo_bench.evals.io import generation_row
    from fipo_bench.evals.metrics import summarize_generations
    from fipo_bench.evals.result import CheckResult
    from fipo_bench.results import RunDir, run_dir_name

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({
        "algos": list(algos), "seeds": seeds, "status": "completed", "preset": "synthetic",
        "backend": "local", **({"command": command} if command else {})}))
    difficulty = {d: pop.difficulty_sd * rng.standard_normal(pop.problems) for d in datasets}
    shared = rng.standard_normal(len(seeds))

    def evaluation(logits: np.ndarray, step: int, dataset: str) -> tuple[list[dict], dict]:
        correct = rng.random((pop.problems, pop.samples)) < _sigmoid(logits)[:, None]
        rows = [generation_row(f"p{j}", i, "Answer: x", "1", CheckResult(
            "correct" if ok else "incorrect", "1" if ok else str(rng.integers(2, 5))), 12, False)
            for j in range(pop.problems) for i, ok in enumerate(correct[j])]
        return rows, summarize_generations(rows, dataset=dataset, checkpoint=f"step-{step}", k=pop.samples,
                                           sampling={})

    # Step 0 evaluates the base checkpoint: one evaluation per seed, the same for every algorithm.
    base = {(s, d): evaluation(pop.level + difficulty[d], 0, d) for s in seeds for d in datasets}
    steps = max(eval_steps)
    for name, truth in algos.items():
        trained = truth.generated * min(truth.kept, 1.0 / truth.gen_batches)
        for i, s in enumerate(seeds):
            u = pop.run_sd * (np.sqrt(pop.seed_correlation) * shared[i]
                              + np.sqrt(1.0 - pop.seed_correlation) * rng.standard_normal())
            v = {d: pop.run_problem_sd * rng.standard_normal(pop.problems) for d in datasets}
            run = RunDir(root / run_dir_name(name, s))
            run.path.mkdir()
            run.write_config({"algo": name, "seed": s})
            # tokens_per_s x step_time_s = the generated tokens, as the local trainer logs them
            run.write_metrics([{"step": step, "accuracy": float(_sigmoid(pop.level + u)),
                                "tokens_per_s": truth.generated / 2.0, "step_time_s": 2.0,
                                "kept_groups_frac": truth.kept, "gen_batches": truth.gen_batches}
                               for step in range(1, steps + 1)])
            for step, d in itertools.product(eval_steps, datasets):
                compute = step * (truth.generated + trained)
                if compute == 0:
                    run.write_eval(0, d, *base[s, d])
                    continue
                gain = truth.asymptote / (1.0 + (truth.c_mid / compute) ** truth.b)
                run.write_eval(step, d, *evaluation(pop.level + gain + difficulty[d] + u + v[d], step, d))
            run.set_status("completed", steps)
    return root
