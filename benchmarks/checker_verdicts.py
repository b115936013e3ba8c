"""Every verdict and deciding stage of the answer checker on a fixed set of inputs, one JSON line each,
so that two revisions of the checker can be compared case by case (a refactor must change none).

    python benchmarks/checker_verdicts.py OUT.jsonl [--data ../shared/data]
    python benchmarks/checker_verdicts.py --diff BEFORE.jsonl AFTER.jsonl

Inputs: the 379-case table (tests/test_checker_table.py) and the same pairs with the roles swapped
(the extracted answer becomes the gold, the gold is boxed as the response: several rules are
asymmetric); tests/test_checker.py's format table; MATH-500's gold answers, each boxed against
itself and against the next problem's gold, and its reference solutions; and the non-adversarial
part of benchmarks/bench_checker.py's generated workload (adversarial inputs are left out because a
timeout verdict depends on the machine's load); and inputs of the wrong type. Only the public
`check_answers` is called, so the script runs unchanged on any revision. The per-check timeout is
generous (30 s) for the same reason.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# Inputs of the wrong type or empty: an "error" verdict, or a numeric gold read as its text.
INVALID = [(None, "5"), (5, "5"), ("Answer: 5", 5), ("Answer: 0.5", 0.5), ("Answer: 5", ""),
           ("Answer: 5", "  "), ("Answer: 1", True), ("Answer: 5", None), ("", "5"), ("Answer:", "5")]


def inputs(data_dir: Path | None) -> list[tuple[str, str, str]]:
    """(set name, response, gold) triples, in a fixed order."""
    table = _load(ROOT / "tests" / "test_checker_table.py", "checker_table_cases").TABLE
    formats = _load(ROOT / "tests" / "test_checker.py", "checker_format_cases").TABLE
    bench = _load(ROOT / "benchmarks" / "bench_checker.py", "bench_checker_workload")
    items = [("table", response, gold) for _, response, gold, _ in table]
    items += [("invalid", response, gold) for response, gold in INVALID]
    items += [("formats", response, gold) for response, gold, _ in formats]
    rng = random.Random(0)
    symbolic_index = 0
    for _ in range(3000):
        if rng.random() < 0.8:
            items.append(("workload", *bench.easy(rng)))
        else:
            items.append(("workload", *bench.symbolic_pair(rng, symbolic_index)))
            symbolic_index += 1
    if data_dir is not None and (data_dir / "math500.jsonl").exists():
        rows = [json.loads(line) for line in (data_dir / "math500.jsonl").read_text().splitlines()]
        golds = [row["answer"] for row in rows]
        items += [("math500_self", f"\\boxed{{{gold}}}", gold) for gold in golds]
        items += [("math500_next", f"Answer: ${golds[i - 1]}$", gold) for i, gold in enumerate(golds)]
        items += [("math500_solution", row["solution"], row["answer"]) for row in rows]
    return items


def dump(out: Path, data_dir: Path | None) -> None:
    from fipo_bench.evals import check_answers

    items = inputs(data_dir)
    results = check_answers([r for _, r, _ in items], [g for _, _, g in items], timeout=30.0, workers=2)
    # The table's pairs again with gold and answer in each other's places.
    swapped = [
        ("table_swapped", f"Reasoning.\nSo the answer is $\\boxed{{{gold}}}$.", result.extracted)
        for (name, _, gold), result in zip(items, results, strict=True)
        if name == "table" and result.extracted
    ]
    results += check_answers([r for _, r, _ in swapped], [g for _, _, g in swapped], timeout=30.0, workers=2)
    items += swapped
    with out.open("w") as f:
        for (name, response, gold), result in zip(items, results, strict=True):
            f.write(json.dumps({"set": name, "gold": gold, "response": repr(response)[-200:],
                                "verdict": result.verdict, "method": result.method,
                                "extracted": result.extracted}) + "\n")
    counts: dict[str, int] = {}
    for result in results:
        counts[result.verdict] = counts.get(result.verdict, 0) + 1
    print(f"{len(items)} checks written to {out}; verdicts: {counts}")


def diff(before: Path, after: Path) -> int:
    old = before.read_text().splitlines()
    new = after.read_text().splitlines()
    if len(old) != len(new):
        print(f"different number of cases: {len(old)} before, {len(new)} after")
        return 1
    changed = [(i, a, b) for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b]
    for i, a, b in changed[:20]:
        print(f"case {i}:\n  before {a}\n  after  {b}")
    print(f"{len(old)} cases, {len(changed)} differ (verdict, method or extracted answer)")
    return 1 if changed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--diff", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.diff:
        return diff(*args.diff)
    if args.out is None:
        parser.error("give an output file or --diff BEFORE AFTER")
    dump(args.out, args.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
