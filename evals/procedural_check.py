"""Grading procedural (reasoning-gym) problems: reasoning-gym's own scorer on the extracted answer, in a
killable worker process with a hard timeout.

Model output is untrusted, and several reasoning-gym 0.1.25 scorers evaluate it as Python: `eval(answer)`
(binary_matrix, spiral_matrix, n_queens, string_insertion) or sympy's `parse_expr`, which calls eval
(countdown, puzzle24, polynomial_multiplication, the integration tasks). So scorers run only in a worker
process with a hard wall-clock timeout per answer (killed and restarted: verdict "timeout"), a 3 GiB
address-space limit (verdict "error"), and a guard on `eval`/`exec`/`compile` (`refusal`). The guard is
defence in depth, not a sandbox; the process boundary and limits are the hard part. reasoning-gym is
imported only in the worker.
"""

from __future__ import annotations

import atexit
import math
import os
import re
import subprocess
import sys
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from fipo_bench.evals.extract import answer_line, last_boxed
from fipo_bench.evals.result import CheckResult

# A worker that cannot import reasoning-gym within this time is broken (not a hard answer).
STARTUP_TIMEOUT_S = 120.0
WORKER_MEMORY_LIMIT_BYTES = 3 << 30
# Where answers are looked for: the end of a response; longer "answers" are not answers.
TAIL_CHARS = 20_000
MAX_ANSWER_CHARS = 4_000
TASKS_EXTRA_HINT = "pip install -e '.[tasks]' in the fipo-bench checkout (reasoning-gym)"


class ProceduralGold(str):
    """A gold answer that knows how it is graded: the generator's answer as the string value, plus the
    reasoning-gym task name, the generator configuration and the whole generated entry.

    `checker.check_answers` sends such golds to `check_procedural`, so the trainer, `fipo-bench eval` and
    `fipo-bench score` need no special case."""

    task: str
    config: dict[str, Any]
    entry: dict[str, Any]

    def __new__(cls, task: str, config: dict[str, Any], entry: dict[str, Any]) -> ProceduralGold:
        answer = entry.get("answer")
        self = super().__new__(cls, "" if answer is None else str(answer))
        self.task, self.config, self.entry = task, config, entry
        return self

    def __reduce__(self):
        return ProceduralGold, (self.task, self.config, self.entry)


def extract_procedural_answer(response: str) -> str | None:
    """The final answer of a response: last `<answer>` tags (the format reasoning-gym's own prompts ask
    for, and the `tags` prompt template), else last DAPO `Answer:` line (the `dapo` template), else last
    `\\boxed{}`; None when there is none (or it is empty or longer than MAX_ANSWER_CHARS)."""
    if not isinstance(response, str):
        return None
    tail = response[-TAIL_CHARS:]
    for read in (_last_tags, answer_line, last_boxed):
        answer = (read(tail) or "").strip()
        if answer:  # an empty stage ("Answer:" then nothing, `<answer></answer>`) leaves it to the next
            boxed = last_boxed(answer)
            if answer == f"\\boxed{{{boxed}}}":  # "Answer: \boxed{7}": the box's content is the answer
                answer = boxed.strip()
            return answer if answer and len(answer) <= MAX_ANSWER_CHARS else None
    return None


def _last_tags(text: str) -> str | None:
    """The content of the last `<answer>...</answer>` pair."""
    close = text.lower().rfind("</answer>")
    open_ = text.lower().rfind("<answer>", 0, max(close, 0))
    return text[open_ + len("<answer>"):close] if close >= 0 and open_ >= 0 else None


def is_correct(score: float | None) -> bool:
    """The binary reward's view of a score: only full marks count.

    reasoning-gym's scores lie in [0, 1] and give partial credit (the base class gives
    len(gold)/len(answer) when the gold is a substring of the answer, so "112" scores 0.33 against "12";
    countdown gives 0.01 to any wrong expression). The reward is binary, DAPO's +1/-1 like every other
    task of the benchmark, so a response is correct only at score == 1.0; the raw score is kept
    (`CheckResult.score`, the `score` column of generations.jsonl)."""
    return score is not None and score == 1.0


def check_procedural(responses: Sequence[str], golds: Sequence[ProceduralGold],
                     timeout: float = 5.0) -> list[CheckResult]:
    """Grade responses against procedural golds with each task's own scorer: `score_answer(answer,
    entry)` of the task's dataset, built with the configuration that generated the problem (some scorers
    read it)."""
    results = []
    for response, gold in zip(responses, golds, strict=True):
        if not isinstance(response, str):
            results.append(CheckResult("error", None, None, None))
            continue
        answer = extract_procedural_answer(response)
        outcome = _scorer().score(gold.task, gold.config, answer, gold.entry, timeout)
        if answer is None:  # scored all the same: some scorers give None partial credit (countdown 0.01)
            score = outcome[1] if outcome[0] == "score" else None
            results.append(CheckResult("no_answer", None, "procedural", score))
        elif outcome[0] == "timeout":
            results.append(CheckResult("timeout", answer, "procedural", None))
        elif outcome[0] == "error":
            results.append(CheckResult("error", answer, "procedural", None))
        else:
            score = outcome[1]
            verdict = "correct" if is_correct(score) else "incorrect"
            results.append(CheckResult(verdict, answer, "procedural", score))
    return results


# ---------------------------------------------------------------------------------------------------
# Parent side: one worker process, restarted after a timeout or crash


class _Scorer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._to_worker = self._from_worker = None
        self._pid = os.getpid()

    def _start(self) -> None:
        # A fresh interpreter (not multiprocessing's spawn, which re-runs the caller's __main__), talking
        # over two pipes; its own session, so a terminal's Ctrl-C reaches only this process.
        to_read, to_write = os.pipe()
        from_read, from_write = os.pipe()
        entry = "from fipo_bench.evals.procedural_check import worker_entry; worker_entry()"
        # As the symbolic sandbox's workers: what a scorer prints goes nowhere (not into the progress bar),
        # and one BLAS thread, whose reservations would otherwise count against the memory limit.
        process = subprocess.Popen([sys.executable, "-c", entry, str(to_read), str(from_write)],
                                   pass_fds=(to_read, from_write), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
        os.close(to_read)
        os.close(from_write)
        self._process = process
        self._to_worker = Connection(to_write, readable=False)
        self._from_worker = Connection(from_read, writable=False)
        if not self._from_worker.poll(STARTUP_TIMEOUT_S):
            self._stop()
            raise RuntimeError(f"the reasoning-gym scoring worker did not start in {STARTUP_TIMEOUT_S:.0f} s")
        try:
            message = self._from_worker.recv()
        except EOFError:
            message = ("error", "the reasoning-gym scoring worker exited on start")
        if message[0] != "ready":
            self._stop()
            raise (ImportError if message[0] == "import-error" else RuntimeError)(message[1])

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        for conn in (self._to_worker, self._from_worker):
            if conn is not None:
                conn.close()
        self._process = self._to_worker = self._from_worker = None

    def score(self, task: str, config: dict, answer: str | None, entry: dict, timeout: float) -> tuple:
        """("score", value) | ("timeout",) | ("error", message)."""
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._stop()
                self._start()
            try:
                self._to_worker.send((task, config, answer, entry))
                if not self._from_worker.poll(timeout):
                    self._stop()
                    return ("timeout",)
                return self._from_worker.recv()
            except (EOFError, OSError, BrokenPipeError) as e:  # the worker died (memory limit, a crash)
                self._stop()
                return ("error", f"scoring worker died: {e}")

    def close(self) -> None:
        with self._lock:
            if os.getpid() == self._pid:
                self._stop()


_SCORER: _Scorer | None = None
_SCORER_LOCK = threading.Lock()


def _scorer() -> _Scorer:
    global _SCORER
    with _SCORER_LOCK:
        if _SCORER is None or _SCORER._pid != os.getpid():
            _SCORER = _Scorer()
        return _SCORER


def reset_scorer() -> None:
    """Stop the worker (tests)."""
    global _SCORER
    with _SCORER_LOCK:
        scorer, _SCORER = _SCORER, None
    if scorer is not None:
        scorer.close()


@atexit.register
def _close_scorer() -> None:
    if _SCORER is not None:
        _SCORER.close()


# ---------------------------------------------------------------------------------------------------
# Worker side

# Names a guarded source may call: arithmetic, Python's number and container constructors, and what
# sympy's parser writes (Integer, Float, Rational, Symbol, Function) and math answers use.
ALLOWED_CALLS = frozenset((
    "Integer", "Float", "Rational", "Symbol", "Function", "Integral", "Derivative", "Abs", "sign", "floor",
    "ceiling", "factorial", "binomial", "gamma", "sqrt", "cbrt", "root", "exp", "log", "ln", "sin", "cos",
    "tan", "cot", "sec", "csc", "asin", "acos", "atan", "acot", "atan2", "sinh", "cosh", "tanh", "asinh",
    "acosh", "atanh", "Max", "Min", "int", "float", "complex", "abs", "round", "min", "max", "pow", "sum",
    "len", "list", "tuple", "set", "sorted", "range", "bool", "str",
))
_ATTRIBUTE = re.compile(r"\.\s*[A-Za-z_]")
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")
_KEYWORD = re.compile(r"\b(?:import|lambda|exec|eval|compile|globals|locals|getattr|setattr|open)\b")
_SYMPY_PRELUDE = "from sympy import *"  # what sympy's parse_expr runs to fill its namespace


def refusal(source: object) -> str | None:
    """Why the guard refuses to evaluate `source` (None: it may run).

    Refused: a double underscore, an attribute access (`.name`), `import`/`lambda`, or a call of any name
    outside ALLOWED_CALLS (arithmetic and sympy constructors). sympy's `parse_expr` turns `94*4 - 61` into
    `Integer (94 )*Integer (4 )-Integer (61 )`, which passes; `eval(chr(95)...)`, `__import__('os')` and
    `open(...)` do not. A refused answer gets the verdict "error" and no score."""
    if not isinstance(source, str):  # a code object: compiled through the guarded compile
        return None
    if source.strip() == _SYMPY_PRELUDE:
        return None
    if "__" in source:
        return "a double underscore"
    if _ATTRIBUTE.search(source):
        return "an attribute access"
    if (keyword := _KEYWORD.search(source)) is not None:
        return f"{keyword.group(0)!r}"
    for call in _CALL.finditer(source):
        if call.group(1) not in ALLOWED_CALLS:
            return f"a call of {call.group(1)!r}"
    return None


class _Guard:
    """eval/exec/compile that refuse what `refusal` refuses while `armed`; `refused` records a refusal."""

    def __init__(self) -> None:
        import builtins

        self.armed = False
        self.refused: str | None = None
        self.real = {name: getattr(builtins, name) for name in ("eval", "exec", "compile")}
        for name, real in self.real.items():
            setattr(builtins, name, self._wrap(name, real))

    def _wrap(self, name, real):
        def guarded(source, *args, **kwargs):
            if self.armed and (reason := refusal(source)) is not None:
                self.refused = f"{name} of a source with {reason}"
                raise PermissionError(f"fipo-bench refused to {name} model output ({reason})")
            return real(source, *args, **kwargs)

        return guarded


def _limit_memory() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_LIMIT_BYTES, WORKER_MEMORY_LIMIT_BYTES))
    except (ImportError, ValueError, OSError):  # not on Linux, or a lower limit already set
        pass


def worker_entry() -> None:
    """The worker process's main: its two pipe descriptors are the last two arguments."""
    receive, send = (Connection(int(fd), writable=i == 1, readable=i == 0)
                     for i, fd in enumerate(sys.argv[-2:]))
    _worker_main(receive, send)


def _worker_main(receive, conn) -> None:
    """Serve (task, config, answer, entry) -> ("score", float) | ("error", message) until the pipe closes."""
    _limit_memory()
    try:
        import reasoning_gym
    except ImportError as e:
        conn.send(("import-error", f"grading rg: datasets needs reasoning-gym ({e}): {TASKS_EXTRA_HINT}"))
        return
    guard = _Guard()
    datasets: dict[str, Any] = {}
    conn.send(("ready",))
    while True:
        try:
            task, config, answer, entry = receive.recv()
        except (EOFError, OSError):
            return
        try:
            key = repr((task, sorted(config.items())))
            if key not in datasets:
                datasets[key] = reasoning_gym.create_dataset(task, **config)
            guard.armed, guard.refused = True, None
            try:
                score = float(datasets[key].score_answer(answer, entry))
            finally:
                guard.armed = False
            if guard.refused is not None:
                reply: tuple = ("error", f"refused: {guard.refused}")
            elif not (math.isfinite(score) and 0.0 <= score <= 1.0):
                reply = ("error", f"score {score} is not in [0, 1]")
            else:
                reply = ("score", score)
        except Exception as e:  # a scorer that raises on odd input: no score
            guard.armed = False
            reply = ("error", f"{type(e).__name__}: {e}"[:500])
        conn.send(reply)
