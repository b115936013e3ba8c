"""The sandbox for symbolic answer checks: killable worker processes with a hard wall-clock timeout.

sympy can run for minutes or exhaust memory on a crafted answer (`9^{9^{9^9}}`), and a thread cannot be
stopped, so each check runs in a worker process that is killed when it misses its deadline (verdict
"timeout"). What a worker computes is symbolic.symbolic_equal; this module is only the plumbing and the
guards that keep model output away from Python's eval (`SymbolicPool` lists them).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections import OrderedDict
from typing import Literal

from fipo_bench.evals.symbolic import symbolic_equal

# A worker that cannot import sympy + math-verify within this time is broken (not a hard answer).
STARTUP_TIMEOUT_S = 120.0
WORKER_MEMORY_LIMIT_BYTES = 3 << 30
RESULT_CACHE_SIZE = 100_000

SymbolicVerdict = Literal["correct", "incorrect", "timeout", "error"]


class _Zygote:
    """A process that imported and warmed up sympy + math-verify once and forks workers on request.

    Why: importing sympy costs about a second of CPU. Replacing a worker killed on a timeout by a fresh
    interpreter would take that second from the live workers (on 2 cores with 2 busy workers, about a
    tenth of the wall time); a fork of the warm zygote costs milliseconds.

    Protocol on a SOCK_SEQPACKET pair (one message per send, no framing needed):
    {"spawn"} with one socket attached as SCM_RIGHTS -> {"pid": n}, the child serving that socket;
    {"reap": n} -> nothing (wait for child n, which the caller has killed). The zygote reaps only on
    request, so a worker's pid cannot be reused while the parent may still signal it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # one request/reply exchange at a time
        self._process: subprocess.Popen | None = None
        self._control: socket.socket | None = None

    def _start(self) -> socket.socket:
        """Start the zygote; returns the control socket once it is ready."""
        control, remote = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # `-c` with our sys.path, so the zygote imports this very checkout (editable installs,
        # tests run from a source tree) without depending on the parent's __main__ module.
        bootstrap = (
            "import sys; sys.path[:0] = " + repr([p for p in sys.path if p]) + "; "
            f"from fipo_bench.evals.sandbox import zygote_main; zygote_main({remote.fileno()})"
        )
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", bootstrap],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # anything a library prints goes nowhere
                stderr=subprocess.DEVNULL,
                pass_fds=(remote.fileno(),),
                start_new_session=True,  # a terminal Ctrl-C goes to the parent, which then cleans up
                env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"},
            )
        finally:
            remote.close()
        self._control = control
        if self._reply(control, STARTUP_TIMEOUT_S) != {"ready": True}:
            self._stop()
            raise OSError("the answer-checking zygote failed to start")
        return control

    @staticmethod
    def _reply(control: socket.socket, timeout: float) -> dict | None:
        readable, _, _ = select.select([control], [], [], timeout)
        message = control.recv(4096) if readable else b""
        return json.loads(message) if message else None

    def _stop(self) -> None:
        if self._control is not None:
            self._control.close()  # on EOF the zygote kills and reaps its workers, then exits
            self._control = None
        if self._process is not None:
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def spawn(self, channel: socket.socket) -> int:
        """Pid of a new worker serving `channel` (its other end stays with the caller); one restart
        of a dead zygote is tried; raises OSError if no worker can be made."""
        with self._lock:
            for _ in range(2):
                try:
                    control = self._control or self._start()
                    socket.send_fds(control, [b'{"spawn": true}'], [channel.fileno()])
                    reply = self._reply(control, STARTUP_TIMEOUT_S)
                    if reply and "pid" in reply:
                        return reply["pid"]
                except OSError:
                    pass
                self._stop()
            raise OSError("the answer-checking zygote failed to start")

    def reap(self, pid: int) -> None:
        with self._lock:
            if self._control is not None:
                with contextlib.suppress(OSError):
                    self._control.send(json.dumps({"reap": pid}).encode())

    def close(self) -> None:
        with self._lock:
            self._stop()


class _Worker:
    """One worker (a fork of the zygote) and its line-based socket protocol.

    One JSON object per line each way on a socket per worker (ASCII-escaped, so lone surrogates
    survive). The worker first writes {"ready": true}; then for each {"pred", "gold"} it answers
    {"equal": bool} or {"error": str}."""

    def __init__(self, zygote: _Zygote) -> None:
        self.channel, remote = socket.socketpair()
        try:
            self.pid = zygote.spawn(remote)
        except OSError:
            self.channel.close()
            raise
        finally:
            remote.close()
        self._zygote = zygote
        # A pidfd names this very process even after it is reaped, so a kill never hits a reused pid.
        self._pidfd = os.pidfd_open(self.pid) if hasattr(os, "pidfd_open") else None
        self.ready = False
        self.exited = False
        self._buffer = b""

    def receive(self, timeout: float) -> dict | None:
        """The reply to the last request, or None when it is not there within `timeout` seconds."""
        return self._read_line(time.monotonic() + timeout)

    def _read_line(self, deadline: float) -> dict | None:
        """Next protocol message, or None at the deadline or when the worker died."""
        fd = self.channel.fileno()
        while b"\n" not in self._buffer:
            remaining = max(0.0, deadline - time.monotonic())  # 0: poll once
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return None
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # ECONNRESET
                chunk = b""
            if not chunk:  # EOF: the worker died
                self.exited = True
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def has_exited(self) -> bool:
        """Whether the worker is gone (its end of the socket is closed), without waiting."""
        if not self.exited:
            readable, _, _ = select.select([self.channel], [], [], 0)
            with contextlib.suppress(BlockingIOError):
                self.exited = bool(readable) and self.channel.recv(1, socket.MSG_PEEK) == b""
        return self.exited

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT_S) -> bool:
        """Whether the worker has said it is ready, waiting up to `timeout` seconds for it."""
        if not self.ready:
            message = self._read_line(time.monotonic() + timeout)
            self.ready = bool(message and message.get("ready"))
        return self.ready

    def send(self, *, gold: str, pred: str) -> bool:
        """Send a request; False if the worker was already dead (nothing was asked of it)."""
        payload = json.dumps({"pred": pred, "gold": gold}, ensure_ascii=True).encode() + b"\n"
        try:
            self.channel.sendall(payload)
        except OSError:  # EPIPE / ECONNRESET: no process reads the socket any more
            return False
        return True

    def kill(self) -> None:
        self.exited = True
        with contextlib.suppress(OSError):
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.channel.close()
            if self._pidfd is not None:
                os.close(self._pidfd)
        self._zygote.reap(self.pid)


class SymbolicPool:
    """Thread-safe pool of symbolic workers; grows on demand up to `max_workers`.

    Processes, not threads or signals: a thread cannot be stopped, and math-verify's own timeout uses
    SIGALRM, which only works in the main thread and cannot interrupt a long C-level integer power. A
    worker that misses its deadline is killed and the caller gets "timeout" at the deadline; workers are
    forks of a zygote (_Zygote), so a replacement costs milliseconds.

    Why it is safe (model output never reaches Python's eval):
    1. only LaTeX parsing is used (symbolic.py), never sympy's `parse_expr`;
    2. tripwire: in the worker, `sympy.parsing.sympy_parser.parse_expr` (which `sympify` of a string
       also calls) is replaced by a guard that passes only a decimal literal or a bare name (latex2sympy
       converts its NUMBER tokens with `sympy.Number(text)`) and raises on anything else, so a library
       change that routed answer text to it would make the check fail, not evaluate anything;
    3. the caller only sends answers that passed a character whitelist and a length cap (checker.py);
    4. the worker runs under a 3 GiB address-space limit (a memory bomb becomes a MemoryError, verdict
       "error") and in its own session (a terminal's Ctrl-C reaches only the parent); when the parent
       closes the pool or dies, the zygote kills its workers and exits.
    """

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max(1, max_workers)
        self._zygote = _Zygote()
        self._idle: list[_Worker] = []
        self._alive = 0
        self._cond = threading.Condition()
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
        for _ in range(to_start):
            worker = self._new_worker()
            if worker is not None and worker.wait_ready():
                self._release(worker)
            else:
                self._retire(worker)

    def _new_worker(self) -> _Worker | None:
        try:
            return _Worker(self._zygote)
        except OSError:
            return None

    def _acquire(self) -> _Worker | None:
        """An idle worker, or a new one (a fork: milliseconds once the zygote is up); None if none
        can be started."""
        with self._cond:
            while True:
                if self._idle:
                    return self._idle.pop()
                if self._alive < self.max_workers:
                    self._alive += 1
                    break
                self._cond.wait()
        worker = self._new_worker()
        if worker is None:
            self._retire(None)
        return worker

    def _release(self, worker: _Worker) -> None:
        with self._cond:
            self._idle.append(worker)
            self._cond.notify()

    def _retire(self, worker: _Worker | None) -> None:
        """Kill a stuck or dead worker and free its place; the next caller forks a successor."""
        if worker is not None:
            worker.kill()
        with self._cond:
            self._alive -= 1
            self._cond.notify()

    def _ready_worker(self) -> _Worker | None:
        worker = self._acquire()
        if worker is not None and worker.wait_ready():
            return worker
        if worker is not None:
            self._retire(worker)
        warnings.warn(
            "an answer-checking worker failed to start; symbolic checks return 'error' "
            f"(try: {sys.executable} -c 'import math_verify')",
            RuntimeWarning,
            stacklevel=3,
        )
        return None

    def equal(self, *, gold: str, pred: str, timeout: float) -> SymbolicVerdict:
        """The verdict of symbolic.symbolic_equal on two normalized answers, or "timeout" / "error"."""
        key = (pred, gold)
        with self._cond:
            if key in self._cache:
                self._cache.move_to_end(key)
                return "correct" if self._cache[key] else "incorrect"
        worker = self._ready_worker()
        if worker is None:
            return "error"
        if not worker.send(gold=gold, pred=pred):  # it died while idle (killed from outside): one fresh try
            self._retire(worker)
            worker = self._ready_worker()
            if worker is None:
                return "error"
            if not worker.send(gold=gold, pred=pred):
                self._retire(worker)
                return "error"
        reply = worker.receive(timeout)
        if reply is None:
            dead = worker.has_exited()
            self._retire(worker)
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
        if os.getpid() == self._pid:  # a forked child must not kill its parent's workers
            for worker in idle:
                worker.kill()
            self._zygote.close()


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


# Loads the parser and the comparison code (lazily imported by sympy) before readiness is declared.
_WARM_UP_PAIRS = (("1", "1"), ("x^2+1", "(x+1)^2"), ("\\sqrt{3}", "1.732"), ("x \\le 1", "1 \\ge x"))


def zygote_main(control_fd: int) -> None:
    """Entry point of the zygote process: warm up, then fork a worker per request (see _Zygote)."""
    import gc
    import logging

    try:
        import resource

        # Inherited by every forked worker: a memory bomb there becomes a MemoryError.
        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_LIMIT_BYTES, WORKER_MEMORY_LIMIT_BYTES))
    except (ImportError, ValueError, OSError):
        pass
    logging.disable(logging.CRITICAL)
    # Import and warm the lazily loaded parts of the parser and comparer before declaring readiness.
    for pred, gold in _WARM_UP_PAIRS:
        symbolic_equal(gold=gold, pred=pred)
    _install_tripwires()
    gc.freeze()  # the workers' garbage collector then leaves the shared pages alone (fewer copies)
    control = socket.socket(fileno=control_fd)
    control.send(b'{"ready": true}')
    children: set[int] = set()
    while True:
        message, fds, _, _ = socket.recv_fds(control, 4096, 1)
        if not message:  # the parent closed the pool or died: no worker outlives it
            for pid in children:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            break
        request = json.loads(message)
        if "reap" in request:
            if request["reap"] in children:
                children.discard(request["reap"])
                os.waitpid(request["reap"], 0)
            continue
        pid = os.fork()
        if pid == 0:
            control.close()
            try:
                _serve(fds[0])
            finally:
                os._exit(0)
        children.add(pid)
        os.close(fds[0])
        control.send(json.dumps({"pid": pid}).encode())


def _serve(fd: int) -> None:
    """Answer requests on socket `fd` until it closes (runs in a forked worker)."""
    reader, writer = os.fdopen(fd, "rb"), os.fdopen(os.dup(fd), "wb")

    def send(message: dict) -> None:
        writer.write(json.dumps(message, ensure_ascii=True).encode() + b"\n")
        writer.flush()

    send({"ready": True})
    for line in reader:
        try:
            request = json.loads(line)
            send({"equal": symbolic_equal(gold=request["gold"], pred=request["pred"])})
        except Exception as e:  # noqa: BLE001 (any failure of the libraries is a verdict, not a crash)
            send({"error": f"{type(e).__name__}: {str(e)[:200]}"})
