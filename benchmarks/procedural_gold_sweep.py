"""Every registered reasoning-gym task through fipo-bench's procedural grading: generate a few eval
problems of `rg:<task>`, answer each with its own gold answer in `<answer>` tags, and report the
verdicts and the time per task. A gold graded anything but correct means a task that fipo-bench
cannot grade as reasoning-gym would (a guard refusal, a timeout), or a task without a single gold
answer (its scorer checks a solution instead; those print no_answer: the gold is empty).

    python benchmarks/procedural_gold_sweep.py [--size 24] [--per-task 3]
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=24, help="problems generated per task (size=)")
    parser.add_argument("--per-task", type=int, default=3, help="eval problems graded per task")
    args = parser.parse_args()

    from reasoning_gym.factory import DATASETS

    from fipo_bench.evals import check_answers, load_dataset

    not_correct: dict[str, object] = {}
    started = time.perf_counter()
    for task in sorted(DATASETS):
        t0 = time.perf_counter()
        try:
            problems = load_dataset(f"rg:{task}?size={args.size}", limit=args.per_task)
        except (ValueError, ImportError, OSError) as e:
            not_correct[task] = f"not generated: {e}"
            continue
        golds = [p.answer for p in problems]
        results = check_answers([f"<answer>{g}</answer>" for g in golds], golds, timeout=20)
        verdicts = [(r.verdict, r.score) for r in results]
        if any(not r.correct for r in results):
            not_correct[task] = verdicts
        print(f"{task:32s} {time.perf_counter() - t0:5.1f}s {verdicts}", flush=True)
    print(f"{len(DATASETS)} tasks in {time.perf_counter() - started:.0f}s; "
          f"{len(DATASETS) - len(not_correct)} graded every gold answer correct; the others:")
    for task, why in not_correct.items():
        print(f"  {task}: {why}")


if __name__ == "__main__":
    main()
