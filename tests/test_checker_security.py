"""Adversarial model output: nothing it contains runs, no verdict takes longer than its timeout + 1 s,
and the checker keeps working afterwards."""

import os
import signal
import sys
import threading
import time

import pytest

from fipo_bench.evals import check_answer, check_answers
from fipo_bench.evals.sandbox import SymbolicPool, _guarded_parse_expr, get_pool

TIMEOUT = 3.0  # long enough for the standby worker to finish importing before the next kill


@pytest.fixture(scope="module")
def warm_pool():
    """Workers started before timing anything: the bound is on checking, not on importing sympy."""
    get_pool().warm_up(2)
    return get_pool()


def code_payloads(marker) -> list[str]:
    command = f"touch {marker}"
    return [
        f"__import__('os').system('{command}')",
        f'__import__("os").system("{command}")',
        f"(lambda: __import__('os').system('{command}'))()",
        f"eval(\"__import__('os').system('{command}')\")",
        f"exec('import os; os.system(\"{command}\")')",
        f"[c for c in ().__class__.__base__.__subclasses__()]; __import__('os').system('{command}')",
        f"getattr(__import__('os'), 'system')('{command}')",
        f"open('{marker}', 'w').write('x')",
        f"x+__import__('os').system('{command}')",
        f"\\text{{__import__('os').system('{command}')}}",
        f"\\frac{{__import__('os').system('{command}')}}{{2}}",
        f"1 if __import__('os').system('{command}') else 2",
        f"lambda x: __import__('os').system('{command}')",
    ]


def test_code_in_answers_never_runs(tmp_path, warm_pool):
    marker = tmp_path / "MARKER"
    for payload in code_payloads(marker):
        for response in (f"Answer: {payload}", f"\\boxed{{{payload}}}", f"**Answer:** ${payload}$"):
            for gold in ("1", "x+1", payload):
                result = check_answer(response, gold, timeout=TIMEOUT)
                assert result.verdict in ("correct", "incorrect", "timeout", "error")
    assert not marker.exists()


def test_code_sent_straight_to_a_worker_never_runs(tmp_path, warm_pool):
    """The whitelist in front of the workers is bypassed: LaTeX-only parsing and the parse_expr
    tripwire alone must keep the code inert."""
    marker = tmp_path / "MARKER"
    for payload in code_payloads(marker):
        verdict = warm_pool.equal(gold="1", pred=payload, timeout=TIMEOUT)
        assert verdict in ("incorrect", "timeout", "error")
        verdict = warm_pool.equal(gold=payload, pred="1", timeout=TIMEOUT)
        assert verdict in ("incorrect", "timeout", "error")
    assert not marker.exists()


def test_parse_expr_tripwire():
    calls = []
    guarded = _guarded_parse_expr(lambda text, *a, **k: calls.append(text) or text)
    assert guarded("12") == "12" and guarded(" 3.5 ") == " 3.5 " and guarded("yotta") == "yotta"
    for text in ("__import__('os')", "1+1", "a.b", "f(1)", "lambda: 1", "1;2"):
        with pytest.raises(RuntimeError, match="disabled"):
            guarded(text)
    assert calls == ["12", " 3.5 ", "yotta"]


PATHOLOGICAL = [
    "Answer: 9^9^9^9",
    "Answer: 9^{9^{9^{9}}}",
    "Answer: $10^{10^{10^{10}}}$",
    "\\boxed{2^{2^{2^{2^{2^{2^{2}}}}}}}",
    "Answer: (10^{100})!",
    "\\boxed{" * 5_000 + "1" + "}" * 5_000,
    "\\boxed{" * 200_000,
    "Answer: " + "(" * 10_000 + "1" + ")" * 10_000,
    "Answer: " + "{" * 10_000 + "1" + "}" * 10_000,
    "x" * 1_000_000,
    "Answer: " + "1+" * 500_000 + "1",
    "Answer: " + "\\frac{1}{" * 100 + "2" + "}" * 100,
    "Answer: 1\x00 2\x00",
    "\x00" * 100_000 + "Answer: 5",
    "Answer: \ud800\udfff\udc80 5",
    "Answer: " + "\udcff\udcfe" * 1000,
    "Answer: \\sqrt{" * 300 + "2" + "}" * 300,
    "Answer: " + "a^" * 100 + "2",
    "answer" + " " * 1_000_000 + "x",  # regex backtracking bait
    "answer**" + "\n" * 1_000_000 + "x",
    ("answer" + " " * 100) * 10_000,
    "Answer: " + "$" * 1_000_000,
    "Answer: " + "\\text{" * 100_000,
]


@pytest.mark.parametrize("response", PATHOLOGICAL, ids=range(len(PATHOLOGICAL)))
def test_pathological_answers_return_within_the_timeout(response, warm_pool):
    start = time.monotonic()
    result = check_answer(response, "\\frac{1}{2}", timeout=TIMEOUT)
    elapsed = time.monotonic() - start
    assert elapsed < TIMEOUT + 1.0, (response[:60], result, elapsed)
    assert result.verdict in ("incorrect", "no_answer", "timeout", "error")


def test_nul_and_surrogates_are_graded():
    assert check_answer("Answer: 5\x00", "5").verdict == "correct"  # control characters are dropped
    assert check_answer("\ud800 Answer: 7", "7").correct
    assert check_answer("Answer: 7\udcff", "7").verdict == "incorrect"


def test_the_checker_survives_a_timeout_and_keeps_answering(warm_pool):
    result = check_answer("Answer: 9^{9^{9^{9}}}", "3", timeout=1.0)
    assert result.verdict in ("timeout", "error")
    assert check_answer("Answer: \\sqrt{8}", "2\\sqrt{2}").verdict == "correct"
    assert check_answer("Answer: \\sqrt{8}", "3\\sqrt{2}").verdict == "incorrect"


def test_thread_safe_from_many_threads(warm_pool):
    cases = [
        ("Answer: \\sqrt{8}", "2\\sqrt{2}", "correct"),
        ("Answer: \\sqrt{8}", "3\\sqrt{2}", "incorrect"),
        ("Answer: x^2+2x+1", "(x+1)^2", "correct"),
        ("Answer: 025", "25", "correct"),
        ("Answer: 2^{10}", "1024", "correct"),
        ("no answer", "1", "no_answer"),
    ]
    failures = []

    def worker(offset: int) -> None:
        for i in range(12):
            response, gold, expected = cases[(offset + i) % len(cases)]
            verdict = check_answer(response, gold).verdict
            if verdict != expected:
                failures.append((response, gold, verdict))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert failures == []


def test_batch_with_pathological_items_keeps_order(warm_pool):
    responses = ["Answer: 9^{9^{9^{9}}}", "Answer: 12", "Answer: \\frac{\\pi}{2}", "Answer: 13"]
    golds = ["3", "12", "\\pi/2", "12"]
    results = check_answers(responses, golds, timeout=TIMEOUT, workers=2)
    assert [r.verdict for r in results[1:]] == ["correct", "correct", "incorrect"]
    assert results[0].verdict in ("timeout", "error", "incorrect")


def test_a_worker_that_cannot_start_gives_error_verdicts(monkeypatch):
    pool = SymbolicPool(1)
    monkeypatch.setattr(sys, "executable", "/bin/false")  # exits at once, never says "ready"
    try:
        with pytest.warns(RuntimeWarning, match="failed to start"):
            assert pool.equal(gold="y", pred="x", timeout=1.0) == "error"
    finally:
        pool.close()


def test_a_worker_killed_while_idle_is_replaced():
    pool = SymbolicPool(1)
    try:
        pool.warm_up(1)
        for worker in pool._idle:
            os.kill(worker.pid, signal.SIGKILL)  # as if the OOM killer had struck
            while not worker.has_exited():
                time.sleep(0.01)
        assert pool.equal(gold="2", pred="\\sqrt{4}", timeout=5.0) == "correct"  # retried on a fresh fork
        assert pool.equal(gold="4", pred="\\sqrt{9}", timeout=5.0) == "incorrect"
    finally:
        pool.close()


def test_a_replacement_after_a_timeout_is_a_fork_that_answers_at_once():
    """After a kill the next check runs on a fork of the warm zygote: a new process (new pid) that
    needs no import, so it answers well within the bound (a fresh interpreter needs about a second)."""
    pool = SymbolicPool(1)
    try:
        pool.warm_up(1)
        (first,) = pool._idle
        assert pool.equal(gold="3", pred="9^{9^{9^{9}}}", timeout=1.0) == "timeout"
        assert _gone_within(first.pid, 5.0)  # killed and reaped, not left running
        assert pool.equal(gold="2\\sqrt{2}", pred="\\sqrt{8}", timeout=TIMEOUT) == "correct"
        assert pool.equal(gold="(x+2)^2", pred="x^2+2x+1", timeout=TIMEOUT) == "incorrect"  # x^2+4x+4
        (second,) = pool._idle
        assert second.pid != first.pid
        assert second.pid != pool._zygote._process.pid
    finally:
        pool.close()


def test_closing_the_pool_ends_the_zygote_and_its_workers():
    pool = SymbolicPool(2)
    pool.warm_up(2)
    pids = [worker.pid for worker in pool._idle]
    zygote = pool._zygote._process
    pool.close()
    assert zygote.poll() is not None
    assert all(_gone_within(pid, 5.0) for pid in pids)  # killed and reaped by the zygote


def _gone_within(pid: int, seconds: float) -> bool:
    """Whether `pid` names no process (not even a zombie) within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.01)
    return False
