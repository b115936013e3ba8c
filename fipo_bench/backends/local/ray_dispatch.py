"""The Ray dispatch of the local matrix: every algorithm x seed is one Ray task with declared resources.

Only the matrix (matrix.py) calls this module, and only for two or more runs at once; `ray` itself is
imported inside the functions (an optional dependency: pip install -e '.[ray]').

- Resources: a task asks for `cpus_per_run` CPUs (the run pins torch to as many threads, so runs never
  oversubscribe the cores) and `gpus_per_run` GPUs (Ray sets CUDA_VISIBLE_DEVICES, so device "cuda" is
  the task's own GPU); at most `parallel` tasks are in flight.
- Ray: `--ray-address` joins that cluster; otherwise the command starts a local Ray with
  address="local" (which never attaches to another Ray running on the machine) and stops it at the end.
  A Ray already initialised in this process (a notebook, a test) is used as it is and left running.
- Results on a cluster: workers write their own run directories, so the results directory must be on a
  file system that every node mounts at the same path; before any run starts, a probe task on every
  node writes and reads a file there, and checks that the base checkpoint is readable. This was chosen
  over shipping metrics to the driver because a run's files are more than metrics: its checkpoints (GBs
  for a real model) must be where a retry on another node can resume from, and its eval generations
  where `fipo-bench report` reads them (the OpenRLHF backend needs the same shared file system).
  Relative paths in the config (--model, --dataset, data_dir) resolve in each worker's own directory:
  use absolute ones on a cluster.
- Progress: a worker's reporter events go through a Ray queue actor to the driver's reporter (one live
  view); workers print nothing (their logs stay in Ray's session directory).
- Failures: an exception inside a run is that run's result ("failed", one_run.execute). A
  worker process that dies (out of memory, kill -9, a lost node) is retried once by Ray, resuming from
  the run's last checkpoint; a second loss marks the run failed. The other runs go on either way.
- Ctrl-C: the driver cancels the tasks (their workers are killed, so no one writes afterwards); the
  matrix then marks the unfinished runs "interrupted".
- kill -9 of the driver: the local Ray's processes are the driver's and die with it, its workers within
  seconds (their run directories' locks with them); unfinished runs stay "running" and the same command
  resumes each from its newest checkpoint. On a joined cluster Ray kills a dead driver's tasks likewise.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
import warnings
from pathlib import Path
from typing import Any

from fipo_bench.backends.base import Execution, Reporter, RunResult
from fipo_bench.backends.local.one_run import RunSpec, execute, run_lost
from fipo_bench.config import ConfigError

MAX_RETRIES = 1
"""Automatic retries of a run whose worker process died (each resumes from the last checkpoint)."""
POLL_S = 0.2
OBJECT_STORE_BYTES = 128 * 2**20  # only run specs, results and progress events travel through it
PROBE_DIR = ".probe"
PROBE_TIMEOUT_S = 120.0


def run_on_ray(specs: list[RunSpec], reporter: Reporter, *, root: Path, execution: Execution, parallel: int,
               gpus: float, local_cpus: int) -> list[RunResult]:
    """Run `specs` as Ray tasks, at most `parallel` at once, each with execution.cpus_per_run CPUs and
    `gpus` GPUs (a local Ray gets `local_cpus` CPUs); returns their results in order."""
    import ray

    started_here = _connect(execution.ray_address, local_cpus)
    try:
        check_shared_results(root, specs[0].base)
        return _dispatch(specs, reporter, parallel, {"num_cpus": execution.cpus_per_run, "num_gpus": gpus})
    finally:
        if started_here:
            ray.shutdown()


def _connect(ray_address: str | None, local_cpus: int) -> bool:
    """Join or start Ray; True when this call started it (and the caller must stop it)."""
    import ray

    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    with warnings.catch_warnings():  # Ray's notice about future CUDA_VISIBLE_DEVICES behaviour
        warnings.simplefilter("ignore", FutureWarning)
        if ray_address:
            ray.init(address=ray_address, **options)
        else:
            import torch

            ray.init(address="local", num_cpus=local_cpus, num_gpus=torch.cuda.device_count(),
                     include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES, **options)
    return True


# -- the shared file system -----------------------------------------------------------------------------


def _probe(probe_dir: str, token: str, base: str) -> dict:
    """On one node: write a file into the results directory, read the driver's, look at the base."""
    import socket

    import ray

    node = ray.get_runtime_context().get_node_id()
    info = {"node": node, "host": socket.gethostname(), "write_error": None}
    try:
        (Path(probe_dir) / f"{token}-{node}").write_text(info["host"])
    except OSError as e:
        info["write_error"] = f"{type(e).__name__}: {e}"
    info["sees_driver_file"] = (Path(probe_dir) / f"{token}-driver").is_file()
    info["base_readable"] = not _is_local_path(base) or Path(base).exists()
    return info


def _is_local_path(base: str) -> bool:
    return base.startswith(("/", ".", "~")) or Path(base).exists()


def shared_results_problems(root: Path, base: str, probes: list[dict], seen_by_driver: set[str]) -> list[str]:
    """What the probes found wrong, one line per node (empty: every node shares the directory)."""
    problems = []
    for p in probes:
        where = f"node {p['host']} ({p['node'][:8]})"
        if p["write_error"]:
            problems.append(f"{where} cannot write {root}: {p['write_error']}")
        elif not p["sees_driver_file"] or p["node"] not in seen_by_driver:
            problems.append(f"{where} writes {root} but it is not the driver's directory (a local disk?)")
        if not p["base_readable"]:
            problems.append(f"{where} cannot read the base checkpoint {base}")
    return problems


def check_shared_results(root: Path, base: str) -> None:
    """Raise ConfigError unless every alive node can write `root` and see what the driver wrote there."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe_dir = root / PROBE_DIR
    probe_dir.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    (probe_dir / f"{token}-driver").write_text("driver")
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    probe = ray.remote(num_cpus=0)(_probe)
    try:
        refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
                .remote(str(probe_dir), token, base) for node in nodes]
        probes = ray.get(refs, timeout=PROBE_TIMEOUT_S)
        seen = {p.name.removeprefix(f"{token}-") for p in probe_dir.glob(f"{token}-*")}
    finally:
        for path in probe_dir.glob(f"{token}-*"):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            probe_dir.rmdir()
    problems = shared_results_problems(root, base, probes, seen)
    if problems:
        raise ConfigError("the results directory must be on a file system that every Ray node mounts at the "
                          "same path (pass such a --output-dir, and a --model every node can read):\n  "
                          + "\n  ".join(problems))


# -- dispatch ---------------------------------------------------------------------------------------------


class QueueReporter(Reporter):
    """A worker's reporter: every per-run event goes to the driver through a Ray queue."""

    def __init__(self, events):
        self.events = events

    def _send(self, *event) -> None:
        self.events.put_nowait(event)

    def run_started(self, run: str, step: int) -> None:
        self._send("run_started", run, step)

    def run_step(self, run: str, step: int, metrics: dict) -> None:
        self._send("run_step", run, step, metrics)

    def run_eval(self, run: str, dataset: str, step: int) -> None:
        self._send("run_eval", run, dataset, step)

    def run_finished(self, run: str, status: str, step: int) -> None:
        self._send("run_finished", run, status, step)

    def message(self, text: str) -> None:
        self._send("message", text)


def _execute_remotely(spec: RunSpec, events) -> RunResult:
    return execute(spec, QueueReporter(events))


def _forward(events, reporter: Reporter) -> None:
    size = events.qsize()
    if size:
        for method, *args in events.get_nowait_batch(size):
            getattr(reporter, method)(*args)


def _dispatch(specs: list[RunSpec], reporter: Reporter, parallel: int, resources: dict) -> list[RunResult]:
    import ray
    from ray.util.queue import Queue

    events = Queue(actor_options={"num_cpus": 0})
    task = ray.remote(_execute_remotely)
    waiting, running, outcomes = list(specs), {}, {}
    try:
        while waiting or running:
            while waiting and len(running) < parallel:
                spec = waiting.pop(0)
                options = {"name": spec.name, "max_retries": MAX_RETRIES, **resources}
                running[task.options(**options).remote(spec, events)] = spec
            done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
            _forward(events, reporter)
            for ref in done:
                spec = running.pop(ref)
                try:
                    outcomes[spec.name] = ray.get(ref)
                except ray.exceptions.RayError as e:  # its worker died twice, its node was lost, ...
                    reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
                    result = run_lost(spec, f"the Ray task failed ({type(e).__name__}: {reason})")
                    reporter.message(f"{spec.name} failed: {result.error}")
                    reporter.run_finished(spec.name, "failed", result.step)
                    outcomes[spec.name] = result
        _forward(events, reporter)
    except KeyboardInterrupt:
        for ref in running:
            ray.cancel(ref, force=True)
        with contextlib.suppress(Exception):
            ray.wait(list(running), num_returns=len(running), timeout=10)
        raise
    finally:
        with contextlib.suppress(Exception):
            events.shutdown(force=True)
    return [outcomes[s.name] for s in specs]
