"""Answer-checker throughput: 10,000 generated responses (easy / symbolic / adversarial) graded with one
symbolic worker and with one per core, side by side in one run.

    python benchmarks/bench_checker.py [--n 10000] [--timeout 2] [--seed 0] [--base main]

Prints responses/s of both runs, the speed-up, the in-process fast-path rate, and the slowest single
verdict. Each run starts a fresh worker pool (no result cache carried over). "Before/after": the fast
stages of the checker at git revision `--base` (read with `git show`, run in this process) and of this
checkout are timed side by side on the same AIME-style responses (an integer answer after a few
lines of reasoning), and their fast-path shares (answers decided without a worker) on the whole
workload are printed; `--base ''` skips that. Numbers on a machine that other jobs share are
pessimistic; the ratio is what carries over.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

from fipo_bench.evals import check_answers, checker, sandbox


def easy(rng: random.Random) -> tuple[str, str]:
    """AIME/GSM8K-like: an integer answer, decided by string or number comparison."""
    gold = rng.randint(0, 999)
    answer = gold if rng.random() < 0.4 else rng.randint(0, 999)
    body = "Let me work through this step by step.\n" * rng.randint(5, 200)
    line = rng.choice(["Answer: {:03d}", "Answer: {}", "**Answer:** {}", "so the answer is $\\boxed{{{}}}$",
                       "Answer: {:,} dollars"]).format(answer)
    return body + line, str(gold)


def symbolic_pair(rng: random.Random, index: int) -> tuple[str, str]:
    """An answer only sympy can decide; unique per index, so no verdict is a cache hit."""
    a, b = index % 97 + 2, rng.randint(2, 30)
    kind = index % 4
    if kind == 0:  # radicals: a*sqrt(b) vs sqrt(a^2 b)
        pred, gold = f"\\sqrt{{{a * a * b}}}", f"{a}\\sqrt{{{b}}}"
    elif kind == 1:  # polynomial identity
        pred, gold = f"x^2+{2 * a}x+{a * a + (index % 2)}", f"(x+{a})^2"
    elif kind == 2:  # sets in another order
        pred, gold = f"\\{{{a},{b},{index}\\}}", f"\\{{{index},{b},{a}\\}}"
    else:  # pi fractions
        pred, gold = f"\\frac{{{a}\\pi}}{{{2 * b}}}", f"\\frac{{{a}}}{{{2 * b}}}\\pi"
    return f"Reasoning...\nAnswer: ${pred}$", gold


def adversarial(rng: random.Random, index: int) -> tuple[str, str]:
    kind = index % 6
    if kind == 0:
        return "Answer: __import__('os').system('echo pwned')", "5"
    if kind == 1:
        return "x" * 1_000_000 + "\nAnswer: 5", "5"
    if kind == 2:
        return "\\boxed{" * 20_000 + "5" + "}" * 20_000, "5"
    if kind == 3:
        return "Answer: " + "(lambda: 1)()\x00\ud800" * 100, "1"
    if kind == 4:
        return f"Answer: {index % 7 + 2}^{{{index % 7 + 2}^{{{index % 7 + 2}^{{99}}}}}}", "3"  # tower
    return "Answer: " + "1+" * 10_000 + "1", "10001"


def aime_style(rng: random.Random) -> tuple[str, str]:
    """An AIME answer after a few lines of reasoning: what the fast path must decide in-process."""
    gold = rng.randint(0, 999)
    answer = gold if rng.random() < 0.4 else rng.randint(0, 999)
    body = "We compute the remainder step by step.\n" * rng.randint(3, 12)
    line = rng.choice(["Answer: {:03d}", "Answer: {}", "**Answer:** {}", "so the answer is $\\boxed{{{}}}$"])
    return body + line.format(answer), str(gold)


def decided_in_process(checker_module) -> Callable[[str, str], bool]:
    """Whether a checker module's fast stages decide a pair (no worker needed), as a function."""
    if hasattr(checker_module, "_fast_verdict"):
        read, verdict = checker_module._read_answers, checker_module._fast_verdict
        return lambda response, gold: verdict(read(response, gold)) is not None
    fast_check = checker_module._fast_check  # before the split: a verdict, or a tuple for the worker
    return lambda response, gold: not isinstance(fast_check(response, gold), tuple)


fast_stages = decided_in_process(checker)


def base_checker(revision: str):
    """The checker module at git `revision`: evals/*.py read with `git show` into a package of their
    own (`base_evals`) and imported in this process; None when git cannot read them."""
    root = Path(__file__).resolve().parent.parent
    try:
        names = subprocess.run(["git", "ls-tree", "--name-only", revision, "evals/"], cwd=root, check=True,
                               capture_output=True, text=True).stdout.split()
        sources = {
            Path(name).stem: subprocess.run(["git", "show", f"{revision}:{name}"], cwd=root, check=True,
                                            capture_output=True, text=True).stdout
            for name in names if name.endswith(".py") and not name.endswith("__init__.py")
        }
    except (OSError, subprocess.CalledProcessError):
        return None
    package = types.ModuleType("base_evals")
    package.__path__ = []
    sys.modules["base_evals"] = package
    for stem in ("extract", "compare", "symbolic", "sandbox", "checker"):  # dependency order
        if stem not in sources:
            continue
        module = types.ModuleType(f"base_evals.{stem}")
        sys.modules[module.__name__] = module
        source = sources[stem].replace("fipo_bench.evals.", "base_evals.")
        exec(compile(source, f"{revision}:evals/{stem}.py", "exec"), module.__dict__)
    return sys.modules["base_evals.checker"]


def fast_path_rate(decided, items) -> tuple[float, float]:
    """(responses/s, share decided without a worker) of the fast stages (`decided_in_process`)."""
    count = 0
    start = time.perf_counter()
    for response, gold in items:
        count += decided(response, gold)
    return len(items) / (time.perf_counter() - start), count / len(items)


def before_after(items, revision: str, seed: int) -> None:
    base = base_checker(revision)
    if base is None:
        print(f"before/after: git cannot read evals/ at {revision!r}; skipped")
        return
    rng = random.Random(seed)
    aime = [aime_style(rng) for _ in range(20_000)]
    rates = {}
    for name, decided in ((f"before ({revision})", decided_in_process(base)), ("after", fast_stages)):
        fast_path_rate(decided, aime[:500])  # warm caches and regexes
        best = max(fast_path_rate(decided, aime)[0] for _ in range(3))  # least disturbed of 3
        overall, share = fast_path_rate(decided, items)
        rates[name] = best
        print(f"{name:>16}: {best:,.0f} AIME-style checks/s on one core (target >= 10,000); workload: "
              f"fast stages {overall:,.0f} responses/s, decided without a worker {share:.1%}")
    before, after = rates.values()
    print(f"after/before AIME-style speed: {after / before:.2f}x")


def make_workload(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    items = []
    symbolic_count = adversarial_count = 0
    for _ in range(n):
        roll = rng.random()
        if roll < 0.90:
            items.append(easy(rng))
        elif roll < 0.995:
            items.append(symbolic_pair(rng, symbolic_count))
            symbolic_count += 1
        else:
            items.append(adversarial(rng, adversarial_count))
            adversarial_count += 1
    return items


def timed_run(items, workers: int, timeout: float) -> tuple[float, list, list[float]]:
    """Wall time of check_answers on a fresh pool, the results, and each symbolic verdict's latency."""
    sandbox.reset_pool()
    pool = sandbox.get_pool()
    pool.warm_up(workers)  # importing sympy in the workers is not checking
    latencies: list[float] = []
    original = pool.equal

    def timed_equal(*, gold, pred, timeout):
        start = time.perf_counter()
        verdict = original(gold=gold, pred=pred, timeout=timeout)
        latencies.append(time.perf_counter() - start)
        return verdict

    pool.equal = timed_equal
    start = time.perf_counter()
    results = check_answers([r for r, _ in items], [g for _, g in items], timeout=timeout, workers=workers)
    return time.perf_counter() - start, results, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base", default="main", help="git revision to compare the fast path with")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    items = make_workload(args.n, args.seed)
    if args.base:
        before_after(items, args.base, args.seed)

    fast_latencies = []
    easy_time = 0.0
    easy_count = 0
    start = time.perf_counter()
    for response, gold in items:
        t = time.perf_counter()
        decided = fast_stages(response, gold)
        elapsed = time.perf_counter() - t
        fast_latencies.append(elapsed)
        if decided and len(response) < 20_000:
            easy_time += elapsed
            easy_count += 1
    fast_time = time.perf_counter() - start

    one_time, one_results, one_latencies = timed_run(items, 1, args.timeout)
    all_time, all_results, all_latencies = timed_run(items, cores, args.timeout)
    sandbox.reset_pool()

    verdicts: dict[str, int] = {}
    for result in one_results:
        verdicts[result.verdict] = verdicts.get(result.verdict, 0) + 1
    differing = sum(a.verdict != b.verdict for a, b in zip(one_results, all_results, strict=True))
    print(f"responses: {len(items)}; symbolic checks: {len(one_latencies)}; verdicts (1 worker): {verdicts}")
    print(f"verdicts that differ between the two runs: {differing}")
    print(f"fast path (in-process, no worker): {len(items) / fast_time:,.0f} responses/s over all; "
          f"{easy_count / easy_time:,.0f}/s over the {easy_count} decided without a worker (< 20 kB)")
    print(f"1 worker:        {len(items) / one_time:,.0f} responses/s ({one_time:.1f} s)")
    print(f"{cores} workers:       {len(items) / all_time:,.0f} responses/s ({all_time:.1f} s)")
    print(f"speed-up:        {one_time / all_time:.2f}x on {cores} cores (target >= 1.6x on 2 cores)")
    slowest = max([*fast_latencies, *one_latencies, *all_latencies])
    print(f"slowest single verdict: {slowest:.2f} s (timeout {args.timeout:.1f} s); "
          f"slowest fast-path verdict: {max(fast_latencies) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
