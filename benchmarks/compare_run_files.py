"""Are two matrix directories' run files equal, timing aside? The check that a refactor of the trainer
changed no number (issue 23): run one fixed configuration before and after, then

    python benchmarks/compare_run_files.py BEFORE/<run-name> AFTER/<run-name>

The configuration issue 23's trainer refactor and issue 22's critic were checked on (6 steps; micro-batches
of 16 rows in 2 length buckets, 2 updates per step with the recomputed old_logp, dynamic sampling,
a reference model, checkpoints and evals at steps 3 and 6), run once per commit with OUT = BEFORE, AFTER:

    fipo-bench run --preset tiny --algos grpo,dapo,fipo --seeds 0 --steps 6 --output-dir OUT \
      --run-name equiv --device cpu --max-parallel 1 --set micro_batch_size=16 --set eval_every=3 \
      --set checkpoint_every=3 --set keep_checkpoints=0 --set eval_limit=64 --set grpo.kl_coef=0.001

Every file of every run directory is compared: JSON/JSONL values after dropping the wall-clock fields
(results.TIMING_FIELDS), each side's own directory and output dir written as placeholders; checkpoint
tensors (safetensors and torch.save'd states) with torch.equal; anything else byte for byte. The matrix's
report/ and run.json (start times, the command line) and lock files are not run outputs and are skipped.
Prints one line per file and exits 1 on the first difference found in any file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from fipo_bench.results import TIMING_FIELDS

SKIPPED = ("report", "run.json", ".lock")


def _scrub(value, root: str):
    if isinstance(value, dict):
        return {k: _scrub(v, root) for k, v in value.items() if k not in TIMING_FIELDS}
    if isinstance(value, list):
        return [_scrub(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "<root>").replace(str(Path(root).parent), "<output-dir>")
    return value


def _same_state(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return (type(a) is type(b) and len(a) == len(b)
                and all(_same_state(x, y) for x, y in zip(a, b, strict=True)))
    return a == b


def compare_file(a: Path, b: Path, root_a: Path, root_b: Path) -> str:
    """'' when equal, else what differs."""
    if a.suffix == ".jsonl":
        rows_a = [_scrub(json.loads(line), str(root_a)) for line in a.read_text().splitlines() if line]
        rows_b = [_scrub(json.loads(line), str(root_b)) for line in b.read_text().splitlines() if line]
        if len(rows_a) != len(rows_b):
            return f"{len(rows_a)} vs {len(rows_b)} rows"
        for i, (x, y) in enumerate(zip(rows_a, rows_b, strict=True)):
            if x != y:
                keys = sorted(k for k in x.keys() | y.keys() if x.get(k) != y.get(k))
                return f"row {i + 1} differs in {keys}"
        return ""
    if a.suffix == ".json":
        x, y = (_scrub(json.loads(p.read_text()), str(r)) for p, r in ((a, root_a), (b, root_b)))
        return "" if x == y else "values differ"
    if a.suffix == ".safetensors":
        x, y = load_file(str(a)), load_file(str(b))
        if x.keys() != y.keys():
            return f"tensor names differ: {sorted(x.keys() ^ y.keys())}"
        bad = [k for k in x if not _same_state(x[k], y[k])]
        return f"tensors differ: {bad[:5]}" if bad else ""
    if a.suffix == ".pt":
        same = _same_state(torch.load(a, weights_only=True), torch.load(b, weights_only=True))
        return "" if same else "saved state differs"
    return "" if a.read_bytes() == b.read_bytes() else "bytes differ"


def main(before: str, after: str) -> int:
    root_a, root_b = Path(before).resolve(), Path(after).resolve()

    def files(root: Path) -> set[Path]:
        return {p.relative_to(root) for p in root.rglob("*") if p.is_file()
                and not any(part in SKIPPED for part in p.relative_to(root).parts)}

    left, right = files(root_a), files(root_b)
    failed = False
    for only, side in ((left - right, "before"), (right - left, "after")):
        for path in sorted(only):
            print(f"ONLY {side:6s} {path}")
            failed = True
    for path in sorted(left & right):
        diff = compare_file(root_a / path, root_b / path, root_a, root_b)
        print(f"{'DIFF' if diff else 'same'}  {path}{': ' + diff if diff else ''}")
        failed |= bool(diff)
    print(f"{len(left & right)} files compared: {'DIFFERENCES FOUND' if failed else 'all equal'}")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
