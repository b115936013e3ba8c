"""Answer checking: extraction, then normalized string, then exact number, then symbolic equivalence.

The first two stages run in-process (thousands of checks per second) and decide every pair of plain
numbers, so AIME's integer answers and nearly all of GSM8K never reach sympy. Only what is left goes
to math-verify, in a killable worker process with a hard timeout (symbolic.py), and only if it passes
a whitelist: ASCII math characters, bounded length, no plain-text words that the gold answer lacks.

Verdicts: "correct", "incorrect", "no_answer" (nothing extracted), "timeout" (the symbolic check hit
its deadline), "error" (invalid input, or a worker crashed).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction

from fipo_bench.evals.extract import extract_answer, normalize_answer

VERDICTS = ("correct", "incorrect", "no_answer", "timeout", "error")

# Longest answer sent to the symbolic stage; the longest MATH-500 gold answer has 159 characters.
MAX_SYMBOLIC_CHARS = 300
# Longest string parsed as a number: bounds int() cost and stays under Python's 4300-digit limit.
MAX_NUMBER_CHARS = 100
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?")  # exponent: bounded cost
_FRAC = re.compile(r"([+-]?)\\frac\{([+-]?\d+)\}\{([+-]?\d+)\}")
_SLASH = re.compile(r"([+-]?\d+)/([+-]?\d+)")
# Characters LaTeX math answers use; anything else (quotes, backticks, `#`, `@`, control characters,
# non-ASCII) means the string is not a math answer, and it never reaches sympy.
_SYMBOLIC_CHARS = re.compile(r"[0-9A-Za-z\\{}()\[\]^_+\-*/.,=<>|!:;&]+")
_WORDS_ONLY = re.compile(r"[A-Za-z()]*[A-Za-z]{2,}[A-Za-z()]*")  # text answers compare case-blind
_PLAIN_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")


@dataclass(frozen=True, slots=True)
class CheckResult:
    """Verdict of one response against one gold answer."""

    verdict: str
    """One of VERDICTS."""
    extracted: str | None
    """The final answer found in the response (before normalization), None when there is none."""
    method: str | None = None
    """Stage that decided: "string", "number", "symbolic", or None (no answer, filtered, error)."""

    @property
    def correct(self) -> bool:
        return self.verdict == "correct"


def parse_number(text: str) -> Fraction | None:
    """Exact value of a normalized plain number (`-12`, `0.50`, `3/4`, `\\frac{3}{4}`), else None."""
    if len(text) > MAX_NUMBER_CHARS:
        return None
    try:
        if _NUMBER.fullmatch(text):
            return Fraction(text)
        match = _FRAC.fullmatch(text) or _SLASH.fullmatch(text)
        if match is None:
            return None
        groups = match.groups()
        sign = -1 if len(groups) == 3 and groups[0] == "-" else 1
        numerator, denominator = int(groups[-2]), int(groups[-1])
        return None if denominator == 0 else sign * Fraction(numerator, denominator)
    except (ValueError, ZeroDivisionError):
        return None


def symbolic_candidate(pred: str, gold: str) -> bool:
    """Whether a pair the fast stages could not decide may go to sympy (see the module docstring)."""
    if not pred or len(pred) > MAX_SYMBOLIC_CHARS or len(gold) > MAX_SYMBOLIC_CHARS:
        return False
    if not (_SYMBOLIC_CHARS.fullmatch(pred) and _SYMBOLIC_CHARS.fullmatch(gold)):
        return False
    return set(_PLAIN_WORD.findall(pred)) <= set(_PLAIN_WORD.findall(gold))


def _fast_check(response: object, gold: object) -> CheckResult | tuple[str, str, str]:
    """Decide in-process if possible; else return (extracted, normalized pred, normalized gold)."""
    if not isinstance(response, str):
        return CheckResult("error", None)
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        gold = str(gold)
    if not isinstance(gold, str) or not gold.strip():
        return CheckResult("error", None)
    extracted = extract_answer(response)
    if extracted is None:
        return CheckResult("no_answer", None)
    pred_norm, gold_norm = normalize_answer(extracted), normalize_answer(gold)
    if not pred_norm:
        return CheckResult("no_answer", extracted)
    same_words = _WORDS_ONLY.fullmatch(gold_norm) and pred_norm.lower() == gold_norm.lower()
    if pred_norm == gold_norm or same_words:
        return CheckResult("correct", extracted, "string")
    pred_value, gold_value = parse_number(pred_norm), parse_number(gold_norm)
    if pred_value is not None and gold_value is not None:
        return CheckResult("correct" if pred_value == gold_value else "incorrect", extracted, "number")
    if not symbolic_candidate(pred_norm, gold_norm):
        return CheckResult("incorrect", extracted)
    return extracted, pred_norm, gold_norm


def check_answer(response: str, gold: str, timeout: float = 5.0) -> CheckResult:
    """Grade one response against a gold answer; thread-safe, returns within `timeout` + a little.

    (The first symbolic check of a process also waits for a worker to start: about a second.)
    """
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
    decided = _fast_check(response, gold)
    if isinstance(decided, CheckResult):
        return decided
    from fipo_bench.evals.symbolic import get_pool

    extracted, pred_norm, gold_norm = decided
    verdict = get_pool().equal(pred_norm, gold_norm, timeout)
    return CheckResult(verdict, extracted, "symbolic")


def check_answers(
    responses: Sequence[str], golds: Sequence[str], timeout: float = 5.0, workers: int | None = None
) -> list[CheckResult]:
    """Grade many responses: fast stages in this thread, symbolic ones on `workers` processes
    (default: all cores). Results are in input order."""
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
    if len(responses) != len(golds):
        raise ValueError(f"check_answers: {len(responses)} responses but {len(golds)} gold answers")
    results: list[CheckResult | None] = []
    pending: list[tuple[int, str, str, str]] = []
    for index, (response, gold) in enumerate(zip(responses, golds, strict=True)):
        decided = _fast_check(response, gold)
        if isinstance(decided, CheckResult):
            results.append(decided)
        else:
            results.append(None)
            pending.append((index, *decided))
    if pending:
        from fipo_bench.evals.symbolic import get_pool

        workers = max(1, min(workers or os.cpu_count() or 1, len(pending)))
        pool = get_pool()
        pool.ensure_capacity(workers)

        def run(item: tuple[int, str, str, str]) -> None:
            index, extracted, pred_norm, gold_norm = item
            results[index] = CheckResult(pool.equal(pred_norm, gold_norm, timeout), extracted, "symbolic")

        with ThreadPoolExecutor(max_workers=workers) as executor:
            list(executor.map(run, pending))
    return results  # type: ignore[return-value]
