"""The results layout: the per-directory lock across processes, repeated-line repair, checkpoint retention,
and the check that every Ray node shares the results directory."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from fipo_bench.io import read_jsonl
from fipo_bench.results import (
    TRAINER_STATE,
    RunDir,
    RunLockedError,
    deduplicated,
    latest_checkpoint,
    lock_holder,
    locked,
)

HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from fipo_bench.results import locked

    with locked(Path(sys.argv[1])):
        print("locked", flush=True)
        time.sleep(600)
""")


def hold_lock(directory):
    return subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(directory)], stdout=subprocess.PIPE,
                            text=True)


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path):
    holder = hold_lock(tmp_path)
    try:
        assert holder.stdout.readline().strip() == "locked"
        busy = rf"in use by another fipo-bench process \(pid {holder.pid} on "
        with pytest.raises(RunLockedError, match=busy), locked(tmp_path):
            pass
        assert lock_holder(tmp_path)["pid"] == holder.pid
        holder.send_signal(signal.SIGKILL)  # kill -9 leaves no stale lock: the kernel drops it
        holder.wait()
        with locked(tmp_path):
            assert lock_holder(tmp_path)["pid"] == os.getpid()
    finally:
        holder.kill()
        holder.wait()


def test_a_waiting_locker_gets_the_lock_once_the_holder_exits(tmp_path):
    holder = hold_lock(tmp_path)
    try:
        assert holder.stdout.readline().strip() == "locked"
        subprocess.Popen(["sh", "-c", f"sleep 0.5; kill -9 {holder.pid}"])
        start = time.monotonic()
        with locked(tmp_path, wait_s=30):
            assert time.monotonic() - start >= 0.4
    finally:
        holder.kill()
        holder.wait()


def write_lines(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_repeated_identical_steps_are_dropped_and_conflicts_name_both_lines(tmp_path):
    run = RunDir(tmp_path / "dapo-seed0")
    run.path.mkdir()
    rows = [{"step": s, "loss": 0.1 * s, "step_time_s": 1.0} for s in (1, 2, 3)]
    # Two processes appending: steps 2 and 3 again (other timings), then the first writer's step 4.
    write_lines(run.metrics_path, [*rows, {**rows[1], "step_time_s": 5.0}, {**rows[2], "step_time_s": 5.0},
                                   {"step": 4, "loss": 0.4, "step_time_s": 1.0}])
    write_lines(run.evals_path, [{"step": 0, "dataset": "tiny", "eval_accuracy": 0.5},
                                 {"step": 0, "dataset": "other", "eval_accuracy": 0.1},  # not a repeat
                                 {"step": 0, "dataset": "tiny", "eval_accuracy": 0.5}])
    notes = run.repair()
    assert [r["step"] for r in read_jsonl(run.metrics_path)] == [1, 2, 3, 4]
    assert [r["step_time_s"] for r in read_jsonl(run.metrics_path)] == [1.0, 1.0, 1.0, 1.0]  # first kept
    assert [r["dataset"] for r in read_jsonl(run.evals_path)] == ["tiny", "other"]
    assert notes[0] == f"{run.metrics_path}:4: repeats line 2 (key 2, same values); dropped"
    assert len(notes) == 3
    assert run.repair() == []  # nothing left to repair

    write_lines(run.metrics_path, [*rows, {**rows[1], "loss": 9.0}])
    before = run.metrics_path.read_text()
    with pytest.raises(ValueError, match=rf"{run.metrics_path}:4: repeats line 2 .*\['loss'\].*Delete"):
        run.repair()
    assert run.metrics_path.read_text() == before  # nothing rewritten
    with pytest.raises(ValueError, match="repeats line 2"):
        deduplicated(run.metrics_path)


def test_rewind_cuts_back_to_the_resume_step_and_drops_a_partial_line(tmp_path):
    run = RunDir(tmp_path / "fipo-seed1")
    run.path.mkdir()
    write_lines(run.metrics_path, [{"step": s} for s in (1, 2, 3)])
    with open(run.metrics_path, "a") as f:
        f.write('{"step": 4, "lo')  # what a killed writer leaves
    write_lines(run.evals_path, [{"step": 0, "dataset": "tiny"}, {"step": 2, "dataset": "tiny"},
                                 {"step": 3, "dataset": "tiny"}])
    kept = run.rewind(2)
    assert [r["step"] for r in read_jsonl(run.metrics_path)] == [1, 2]
    assert [r["step"] for r in kept] == [0, 2] == [r["step"] for r in read_jsonl(run.evals_path)]


def test_checkpoint_retention_keeps_what_resume_needs(tmp_path):
    run = RunDir(tmp_path / "grpo-seed0")
    for step in (10, 20, 30):
        run.checkpoint(step).mkdir(parents=True)
        (run.checkpoint(step) / "model.safetensors").write_text("w")
        (run.checkpoint(step) / TRAINER_STATE).write_text("s")
    (run.checkpoints / ".step-40.tmp").mkdir()  # a save in progress is not a checkpoint
    assert run.resume_point() == (30, run.checkpoint(30))
    run.prune_checkpoints(0)  # 0 = keep all
    assert latest_checkpoint(run.checkpoints) == (30, run.checkpoint(30))
    run.prune_checkpoints(1)
    assert sorted(p.name for p in run.checkpoints.iterdir()) == [".step-40.tmp", "step-30"]
    run.drop_resume_state(30)  # the run completed: the final model stays, the optimizer state goes
    assert sorted(p.name for p in run.checkpoint(30).iterdir()) == ["model.safetensors"]
    assert run.resume_point() == (0, None)


def test_every_node_must_share_the_results_directory():
    from fipo_bench.backends.local.ray_dispatch import shared_results_problems

    ok = {"node": "a" * 16, "host": "head", "write_error": None, "sees_driver_file": True,
          "base_readable": True}
    assert shared_results_problems("/r", "/base", [ok], {"a" * 16, "driver"}) == []
    local_disk = {**ok, "node": "b" * 16, "host": "worker1", "sees_driver_file": False}
    read_only = {**ok, "node": "c" * 16, "host": "worker2", "write_error": "PermissionError: denied",
                 "base_readable": False}
    problems = shared_results_problems("/r", "/base", [ok, local_disk, read_only], {"a" * 16, "driver"})
    assert problems == [
        "node worker1 (bbbbbbbb) writes /r but it is not the driver's directory (a local disk?)",
        "node worker2 (cccccccc) cannot write /r: PermissionError: denied",
        "node worker2 (cccccccc) cannot read the base checkpoint /base",
    ]
