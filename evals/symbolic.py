"""Symbolic equivalence of two answers, in killable worker processes with a hard wall-clock timeout.

Why processes: sympy can run for minutes or exhaust memory on a crafted answer (`9^{9^{9^9}}`), a
thread cannot be stopped, and math-verify's own timeout uses SIGALRM, which only works in the main
thread and cannot interrupt a long C-level integer power. A worker that misses its deadline is killed
and the caller gets the verdict "timeout" at the deadline; a standby worker, started ahead of need,
takes its place, so the next check does not wait for sympy to import.

Why it is safe (model output never reaches Python's eval):
1. only LaTeX parsing is used: math-verify's `LatexExtractionConfig` goes through latex2sympy2_extended's
   ANTLR grammar, which builds sympy objects node by node. math-verify's `ExprExtractionConfig`
   (plain expressions) calls sympy's `parse_expr`, which evaluates Python; it is never configured;
2. tripwire: in the worker, `sympy.parsing.sympy_parser.parse_expr` (which `sympify` of a string also
   calls) is replaced by a guard that passes only a decimal literal or a bare name (latex2sympy
   converts its NUMBER tokens with `sympy.Number(text)`) and raises on anything else, so a future
   library change that routed answer text to it would make the check fail, not evaluate anything;
3. the caller only sends answers that passed a character whitelist and a length cap (checker.py);
4. the worker runs under a 3 GiB address-space limit (a memory bomb becomes a MemoryError, verdict
   "error") and in its own session (a terminal's Ctrl-C reaches only the parent).

Protocol: one JSON object per line each way (ASCII-escaped, so lone surrogates survive). The worker
first writes {"ready": true}; then for each {"pred", "gold"} it answers {"equal": bool} or {"error": str}.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
import warnings
from collections import OrderedDict

# A worker that cannot import sympy + math-verify within this time is broken (not a hard answer).
STARTUP_TIMEOUT_S = 120.0
WORKER_MEMORY_LIMIT_BYTES = 3 << 30
RESULT_CACHE_SIZE = 100_000


class _Worker:
    """One worker process and its line-based pipe protocol."""

    def __init__(self) -> None:
        # `-c` with our sys.path, so the worker imports this very checkout (editable installs,
        # tests run from a source tree) without depending on the parent's __main__ module.
        bootstrap = (
            "import sys; sys.path[:0] = " + repr([p for p in sys.path if p]) + "; "
            "from fipo_bench.evals.symbolic import worker_main; worker_main()"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", bootstrap],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a terminal Ctrl-C goes to the parent, which then cleans up
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"},
        )
        self.ready = False
        self.exited = False
        self._buffer = b""

    def receive(self, timeout: float) -> dict | None:
        """The reply to the last request, or None when it is not there within `timeout` seconds."""
        return self._read_line(time.monotonic() + timeout)

    def _read_line(self, deadline: float) -> dict | None:
        """Next protocol message, or None at the deadline or when the worker died."""
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = max(0.0, deadline - time.monotonic())  # 0: poll once
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:  # EOF: the worker died
                self.exited = True
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT_S) -> bool:
        """Whether the worker has finished importing, waiting up to `timeout` seconds for it."""
        if not self.ready:
            message = self._read_line(time.monotonic() + timeout)
            self.ready = bool(message and message.get("ready"))
        return self.ready

    def send(self, pred: str, gold: str) -> bool:
        """Send a request; False if the worker was already dead (nothing was asked of it)."""
        payload = json.dumps({"pred": pred, "gold": gold}, ensure_ascii=True).encode() + b"\n"
        try:
            self.process.stdin.write(payload)
            self.process.stdin.flush()
        except OSError:  # BrokenPipeError: no process reads the pipe any more
            return False
        return True

    def kill(self) -> None:
        try:
            self.process.kill()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()


class SymbolicPool:
    """Thread-safe pool of symbolic workers; grows on demand up to `max_workers`."""

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max(1, max_workers)
        self._idle: list[_Worker] = []
        self._alive = 0
        self._cond = threading.Condition()
        self._standby: _Worker | None = None  # started ahead of need, replaces the next killed worker
        self._cache: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._pid = os.getpid()

    def ensure_capacity(self, workers: int) -> None:
        with self._cond:
            self.max_workers = max(self.max_workers, workers)
            self._cond.notify_all()

    def warm_up(self, workers: int) -> None:
        """Start `workers` processes now and wait until they can answer (hides import time)."""
        self.ensure_capacity(workers)
        with self._cond:
            to_start = max(0, workers - self._alive)
            self._alive += to_start
        started = [_Worker() for _ in range(to_start)]
        self._ensure_standby()
        for worker in started:
            if worker.wait_ready():
                self._release(worker)
            else:
                self._replace(worker)

    def _acquire(self) -> _Worker:
        with self._cond:
            while True:
                if self._idle:
                    # Prefer a worker that has finished importing over a freshly started one.
                    ready = [i for i, w in enumerate(self._idle) if w.ready or w.wait_ready(timeout=0)]
                    return self._idle.pop(ready[-1] if ready else -1)
                if self._alive < self.max_workers:
                    self._alive += 1
                    break
                self._cond.wait()
        try:
            worker = _Worker()
        except BaseException:
            self._discard()
            raise
        self._ensure_standby()
        return worker

    def _ensure_standby(self) -> None:
        with self._cond:
            if self._standby is not None:
                return
            self._standby = _Worker()  # Popen returns at once; the import runs in the child

    def _release(self, worker: _Worker) -> None:
        with self._cond:
            self._idle.append(worker)
            self._cond.notify()

    def _discard(self) -> None:
        with self._cond:
            self._alive -= 1
            self._cond.notify()

    def _replace(self, worker: _Worker) -> None:
        """Kill a stuck or dead worker; its successor is the standby (already importing or ready), and
        a new standby starts now, so the next caller does not wait for sympy to import."""
        worker.kill()
        with self._cond:
            successor, self._standby = self._standby, None
        try:
            if successor is None:
                successor = _Worker()
            standby = _Worker()
        except OSError:
            if successor is None:
                self._discard()
                return
            standby = None
        with self._cond:
            self._standby = standby
        self._release(successor)

    def equal(self, pred: str, gold: str, timeout: float) -> str:
        """"correct" | "incorrect" | "timeout" | "error" for two normalized answers."""
        key = (pred, gold)
        with self._cond:
            if key in self._cache:
                self._cache.move_to_end(key)
                return "correct" if self._cache[key] else "incorrect"
        worker = self._acquire()
        if not worker.wait_ready():
            warnings.warn(
                "an answer-checking worker failed to start; symbolic checks return 'error' "
                f"(try: {sys.executable} -c 'import math_verify')",
                RuntimeWarning,
                stacklevel=2,
            )
            self._replace(worker)
            return "error"
        if not worker.send(pred, gold):  # it died while idle (killed from outside): one fresh try
            self._replace(worker)
            worker = self._acquire()
            if not (worker.wait_ready() and worker.send(pred, gold)):
                self._replace(worker)
                return "error"
        reply = worker.receive(timeout)
        if reply is None:
            dead = worker.exited or worker.process.poll() is not None
            self._replace(worker)
            return "error" if dead else "timeout"
        self._release(worker)
        if "equal" not in reply:
            return "error"
        with self._cond:
            self._cache[key] = bool(reply["equal"])
            if len(self._cache) > RESULT_CACHE_SIZE:
                self._cache.popitem(last=False)
        return "correct" if reply["equal"] else "incorrect"

    def close(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
            self._alive -= len(idle)
            if self._standby is not None:
                idle.append(self._standby)
                self._standby = None
        if os.getpid() == self._pid:  # a forked child must not kill its parent's workers
            for worker in idle:
                worker.kill()


_POOL: SymbolicPool | None = None
_POOL_LOCK = threading.Lock()


def get_pool() -> SymbolicPool:
    """The process-wide pool (re-created after a fork: pipes shared with a parent are unusable)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._pid != os.getpid():
            _POOL = SymbolicPool(os.cpu_count() or 1)
        return _POOL


def reset_pool() -> None:
    """Stop the process-wide pool's idle workers and forget its cache (benchmarks, tests)."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        pool.close()


@atexit.register
def _close_pool() -> None:
    if _POOL is not None:
        _POOL.close()


# ---------------------------------------------------------------------------------------------------
# Worker side


# Strings that cannot run code when evaluated: a decimal literal or a bare name (no call, no
# attribute, no operator). latex2sympy converts NUMBER tokens with `sympy.Number(text)` and sympy's
# own modules sympify constant names (units, prefixes) when they are first imported.
_INERT_TEXT = re.compile(r"\s*(?:\d+(?:\.\d*)?|\.\d+|[A-Za-z][A-Za-z0-9]*)\s*")


def _guarded_parse_expr(real_parse_expr):
    """parse_expr that only accepts inert text (above) and raises on anything else."""

    def parse_expr(text, *args, **kwargs):
        if isinstance(text, str) and _INERT_TEXT.fullmatch(text):
            return real_parse_expr(text, *args, **kwargs)
        raise RuntimeError("parse_expr is disabled in the answer-checking worker (it evaluates Python)")

    return parse_expr


def _install_tripwires() -> None:
    import latex2sympy2_extended.latex2sympy2 as l2s
    import math_verify.parser as mv_parser
    import sympy.parsing
    import sympy.parsing.sympy_parser as sympy_parser

    guarded = _guarded_parse_expr(sympy_parser.parse_expr)
    sympy_parser.parse_expr = guarded  # sympify(str) imports it from here at call time
    sympy.parsing.parse_expr = guarded
    mv_parser.parse_expr = guarded
    l2s.parse_expr = guarded


@functools.lru_cache(maxsize=4096)  # a gold answer is parsed once for its k samples
def _parse_latex(text: str) -> tuple:
    from math_verify import LatexExtractionConfig, parse

    config = [LatexExtractionConfig(boxed_match_priority=0)]
    return tuple(parse(f"${text}$", extraction_config=config, parsing_timeout=None))


def symbolic_equal(pred: str, gold: str) -> bool:
    """math-verify equivalence of two LaTeX answers, LaTeX parsing only (see the module docstring)."""
    from math_verify import verify

    gold_parsed, pred_parsed = _parse_latex(gold), _parse_latex(pred)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(list(gold_parsed), list(pred_parsed), timeout_seconds=None))


# Loads the parser and the comparison code (lazily imported by sympy) before readiness is declared.
_WARM_UP_PAIRS = (("1", "1"), ("x^2+1", "(x+1)^2"))


def worker_main() -> None:
    """Entry point of a worker process: answer requests on stdin until it closes."""
    import logging

    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_LIMIT_BYTES, WORKER_MEMORY_LIMIT_BYTES))
    except (ImportError, ValueError, OSError):
        pass
    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    protocol = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    logging.disable(logging.CRITICAL)
    # Import and warm the lazily loaded parts of the parser and comparer before declaring readiness.
    for pred, gold in _WARM_UP_PAIRS:
        symbolic_equal(pred, gold)
    _install_tripwires()

    def send(message: dict) -> None:
        protocol.write(json.dumps(message, ensure_ascii=True).encode() + b"\n")
        protocol.flush()

    send({"ready": True})
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            send({"equal": symbolic_equal(request["pred"], request["gold"])})
        except Exception as e:  # noqa: BLE001 (any failure of the libraries is a verdict, not a crash)
            send({"error": f"{type(e).__name__}: {str(e)[:200]}"})
