"""Wall time and peak memory of one `fipo-bench run` matrix, one run at a time vs in parallel on a local
Ray, measured side by side in one invocation; and Ray's own start-up overhead.

    python benchmarks/bench_matrix.py                                    # grpo,dapo,fipo x seeds 0,1,2
    python benchmarks/bench_matrix.py --seeds 0,1 --parallel 2           # the issue's done-when check
    python benchmarks/bench_matrix.py --algos dapo,fipo --seeds 0 --steps 4 --set rollout_batch_size=4 \\
        --set samples_per_prompt=4 --set mini_batch_size=2                # a quick smaller matrix

Each mode is a fresh `fipo-bench run` process (its own run name in a temporary --output-dir); memory is
the peak of the summed resident set of that process and all its descendants (the Ray head and its
workers included), sampled every 0.2 s from /proc (Linux). The base checkpoint is prepared before either
is timed. Both modes use --cpus-per-run (1 by default), so the script also checks that their files hold
the same numbers. On a shared machine the ratio is what to read; the load average is printed with it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(root: int) -> int:
    """Bytes resident in `root` and every descendant process."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/statm") as f:
                rss[int(entry)] = int(f.read().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total


def timed(command: list[str], env: dict) -> tuple[float, int, int]:
    """(wall seconds, peak tree RSS bytes, exit code) of one command."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    sampler.join()
    if proc.returncode:
        print(err[-3000:], file=sys.stderr)
    return time.perf_counter() - start, peak[0], proc.returncode


RAY_STARTUP = """
import logging, time, warnings
t0 = time.perf_counter()
import ray
t1 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    ray.init(address="local", num_cpus=1, include_dashboard=False, object_store_memory=128 * 2**20,
             log_to_driver=False, logging_level=logging.WARNING)
t2 = time.perf_counter()
ray.get(ray.remote(num_cpus=1)(lambda: 1).remote())
t3 = time.perf_counter()
ray.shutdown()
t4 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, t4 - t3)
"""


def same_numbers(a: Path, b: Path) -> tuple[bool, int]:
    """Whether two results/<run> dirs hold the same metrics (timings aside) and evals, and how many runs."""
    from fipo_bench.io import read_jsonl
    from fipo_bench.results import TIMING_FIELDS

    runs = sorted(p.name for p in a.iterdir() if (p / "metrics.jsonl").is_file())
    for name in runs:
        for file in ("metrics.jsonl", "evals.jsonl"):
            rows = [[{k: v for k, v in r.items() if k not in TIMING_FIELDS}
                     for r in read_jsonl(d / name / file)] for d in (a, b)]
            if rows[0] != rows[1]:
                return False, len(runs)
    return True, len(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algos", default="grpo,dapo,fipo")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    parser.add_argument("--parallel", type=int, default=2, help="--max-parallel of the parallel mode")
    parser.add_argument("--cpus-per-run", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], dest="sets", help="passed on as --set")
    parser.add_argument("--keep", action="store_true", help="keep the results directories")
    args = parser.parse_args()

    from fipo_bench.config import build_config
    from fipo_bench.tasks import prepare_base

    base_args = ["--algos", args.algos, "--seeds", args.seeds, "--cpus-per-run", str(args.cpus_per_run)]
    base_args += ["--steps", str(args.steps)] if args.steps else []
    for item in args.sets:
        base_args += ["--set", item]
    options = {"algos": args.algos, "seeds": args.seeds, "num_steps": args.steps}
    cfg = build_config("tiny", options=options, sets=args.sets)
    print("preparing the base checkpoint (not timed) ...", flush=True)
    prepare_base(cfg)

    out = Path(tempfile.mkdtemp(prefix="bench-matrix-"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    fipo_bench = [sys.executable, "-m", "fipo_bench.cli", "run", "--output-dir", str(out)]
    load_before = os.getloadavg()
    rows = {}
    for mode, parallel in (("sequential", 1), (f"parallel ({args.parallel})", args.parallel)):
        name = "sequential" if parallel == 1 else "parallel"
        print(f"timing {mode} ...", flush=True)
        command = [*fipo_bench, *base_args, "--run-name", name, "--max-parallel", str(parallel)]
        rows[name] = timed(command, env)
    ray = subprocess.run([sys.executable, "-c", RAY_STARTUP], capture_output=True, text=True, env=env)
    load_after = os.getloadavg()

    runs = len(args.algos.split(",")) * len(args.seeds.split(","))
    print(f"\nmatrix: {args.algos} x seeds {args.seeds} = {runs} runs, steps {args.steps or cfg.num_steps}, "
          f"{args.cpus_per_run} CPU thread(s) per run, {len(os.sched_getaffinity(0))} cores")
    print(f"load average (1/5/15 min) before {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f}, "
          f"after {load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f}")
    print(f"{'mode':<16}{'wall s':>10}{'peak RSS GB':>14}{'exit':>6}")
    for mode, (wall, peak, code) in rows.items():
        label = mode if mode == "sequential" else f"parallel ({args.parallel})"
        print(f"{label:<16}{wall:>10.1f}{peak / 2**30:>14.2f}{code:>6}")
    (seq_wall, seq_peak, _), (par_wall, par_peak, _) = rows["sequential"], rows["parallel"]
    print(f"speed-up (sequential / parallel wall time): {seq_wall / par_wall:.2f}x; "
          f"memory (parallel / sequential peak): {par_peak / max(seq_peak, 1):.2f}x")
    identical, n = same_numbers(out / "sequential", out / "parallel")
    print(f"same numbers (metrics without timings, evals) in {n} of {runs} runs: "
          f"{'yes' if identical and n == runs else 'NO'}")
    if ray.returncode == 0:
        imp, init, first, stop = map(float, ray.stdout.split()[-4:])
        print(f"Ray start-up: import {imp:.1f} s + ray.init(address='local') {init:.1f} s + first task "
              f"{first:.1f} s + shutdown {stop:.1f} s = {imp + init + first + stop:.1f} s")
    else:
        print(f"Ray start-up: not measured ({ray.stderr.strip().splitlines()[-1:]})")
    problems = [f"{mode} exited with {code}" for mode, (_, _, code) in rows.items() if code]
    problems += [] if identical else ["the two modes' numbers differ"]
    problems += [] if n == runs else [f"{runs - n} run(s) wrote no metrics"]
    if args.keep:
        print(f"results kept in {out}")
    else:
        import shutil

        shutil.rmtree(out, ignore_errors=True)
    if problems:  # a matrix whose runs failed times nothing worth reading
        sys.exit(f"benchmark invalid: {'; '.join(problems)} (--keep keeps the run directories)")


if __name__ == "__main__":
    main()
