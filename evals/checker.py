"""Answer checking: a response and a gold answer in, a verdict out (`check_answer`, `check_answers`).

Stages. The fast stages run in-process (thousands of checks per second) and decide every pair of
plain numbers, so AIME's integer answers and nearly all of GSM8K never reach sympy: extraction and
normalization (extract.py), then normalized string equality, multiple-choice letters, exact numbers,
and the structural comparison when each of its leaves is a number or a string (the rules are in
compare.py). What is left goes, whole, to a sandboxed worker (sandbox.py) that runs the same
structural comparison with math-verify deciding the leaves (symbolic.py), under a hard timeout, and
only if it passes a whitelist: ASCII math characters, bounded length, no plain-text words that the
gold lacks.

Verdicts: "correct", "incorrect", "no_answer" (nothing extracted), "timeout" (the symbolic check hit
its deadline), "error" (invalid input, or a worker crashed).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from fipo_bench.evals.compare import answers_equal, choice_letter, numbers_equal
from fipo_bench.evals.extract import answer_parts, extract_answer, normalize_answer
from fipo_bench.evals.procedural_check import ProceduralGold, check_procedural
from fipo_bench.evals.result import CheckResult
from fipo_bench.evals.sandbox import get_pool

# Longest answer sent to the symbolic stage; the longest MATH-500 gold answer has 159 characters.
MAX_SYMBOLIC_CHARS = 300

# Characters LaTeX math answers use; anything else (quotes, backticks, `#`, `@`, control characters,
# non-ASCII) means the string is not a math answer, and it never reaches sympy.
_SYMBOLIC_CHARS = re.compile(r"[0-9A-Za-z\\{}()\[\]^_+\-*/.,=<>|!:;& %]+")
_PLAIN_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")


class _Answers(NamedTuple):  # a tuple: cheaper to build than a frozen dataclass, once per response
    """A response's final answer next to its gold: what every stage compares."""

    extracted: str | None
    """As written in the response; None when there is none."""
    pred: str
    """Normalized; "" when nothing was extracted."""
    gold: str | None
    """Normalized; None when the input is invalid (a response or gold that is no string, an empty gold)."""


def symbolic_candidate(*, gold: str, pred: str) -> bool:
    """Whether a pair the fast stages could not decide may go to sympy (see the module docstring)."""
    if not pred or len(pred) > MAX_SYMBOLIC_CHARS or len(gold) > MAX_SYMBOLIC_CHARS:
        return False
    if not (_SYMBOLIC_CHARS.fullmatch(pred) and _SYMBOLIC_CHARS.fullmatch(gold)):
        return False
    return set(_PLAIN_WORD.findall(pred)) <= set(_PLAIN_WORD.findall(gold))


@functools.lru_cache(maxsize=65_536)
def _gold_answer(gold: str) -> str:
    """The normalized gold; a gold that is a whole solution (math-verify's tests use such) is read
    like a response first."""
    if len(gold) > 100 or "\n" in gold.strip():
        gold = extract_answer(gold, anchored=True) or gold
    return normalize_answer(gold)


def _read_answers(response: object, gold: object) -> _Answers:
    """Extract and normalize; a numeric gold (`42`, `0.5`) is read as its text."""
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        gold = str(gold)
    if not isinstance(response, str) or not isinstance(gold, str) or not gold.strip():
        return _Answers(extracted=None, pred="", gold=None)
    gold_norm = _gold_answer(gold)
    extracted = extract_answer(response, answer_parts(gold_norm))
    pred_norm = "" if extracted is None else normalize_answer(extracted)
    return _Answers(extracted=extracted, pred=pred_norm, gold=gold_norm)


def _fast_verdict(answers: _Answers) -> CheckResult | None:
    """The verdict of the in-process stages; None when only the symbolic stage can decide."""
    extracted, pred, gold = answers.extracted, answers.pred, answers.gold
    if gold is None:
        return CheckResult("error", None)
    if not pred:
        return CheckResult("no_answer", extracted)
    if pred == gold:
        return CheckResult("correct", extracted, "string")
    by_number = numbers_equal(gold=gold, pred=pred)
    if by_number is not None:
        return CheckResult("correct" if by_number else "incorrect", extracted, "number")
    by_choice = choice_letter(gold=gold, pred=pred)
    if by_choice is not None:
        return CheckResult("correct" if by_choice else "incorrect", extracted, "string")
    by_structure = answers_equal(gold=gold, pred=pred)
    if by_structure is not None:
        return CheckResult("correct" if by_structure else "incorrect", extracted, "string")
    if not symbolic_candidate(gold=gold, pred=pred):
        return CheckResult("incorrect", extracted)
    return None


def _symbolic_verdict(answers: _Answers, timeout: float) -> CheckResult:
    assert answers.gold is not None  # _fast_verdict decides invalid input
    verdict = get_pool().equal(gold=answers.gold, pred=answers.pred, timeout=timeout)
    return CheckResult(verdict, answers.extracted, "symbolic")


def check_answer(response: str, gold: str, timeout: float = 5.0) -> CheckResult:
    """Grade one response against a gold answer; thread-safe, returns within `timeout` + a little.

    (The first symbolic check of a process also waits for a worker to start: about a second.)
    """
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
    if isinstance(gold, ProceduralGold):
        return check_procedural([response], [gold], timeout)[0]
    answers = _read_answers(response, gold)
    decided = _fast_verdict(answers)
    return decided if decided is not None else _symbolic_verdict(answers, timeout)


def check_answers(
    responses: Sequence[str], golds: Sequence[str], timeout: float = 5.0, workers: int | None = None
) -> list[CheckResult]:
    """Grade many responses: fast stages in this thread, symbolic ones on `workers` processes
    (default: all cores). Results are in input order. A gold that is a procedural_check.ProceduralGold
    (an `rg:` dataset's problem) is graded by its reasoning-gym scorer instead."""
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
    if len(responses) != len(golds):
        raise ValueError(f"check_answers: {len(responses)} responses but {len(golds)} gold answers")
    procedural = {i: gold for i, gold in enumerate(golds) if isinstance(gold, ProceduralGold)}
    if procedural:  # graded by their own task's scorer (procedural_check); the rest as math below
        scored = check_procedural([responses[i] for i in procedural], list(procedural.values()), timeout)
        graded = dict(zip(procedural, scored, strict=True))
        rest = [i for i in range(len(golds)) if i not in graded]
        math_results = check_answers([responses[i] for i in rest], [golds[i] for i in rest], timeout,
                                     workers) if rest else []
        graded.update(zip(rest, math_results, strict=True))
        return [graded[i] for i in range(len(golds))]
    answers = [_read_answers(response, gold) for response, gold in zip(responses, golds, strict=True)]
    results = [_fast_verdict(item) for item in answers]
    pending = [index for index, result in enumerate(results) if result is None]
    symbolic: dict[int, CheckResult] = {}
    if pending:
        workers = max(1, min(workers or os.cpu_count() or 1, len(pending)))
        get_pool().ensure_capacity(workers)
        with ThreadPoolExecutor(max_workers=workers) as executor:
            verdicts = executor.map(lambda index: _symbolic_verdict(answers[index], timeout), pending)
            symbolic = dict(zip(pending, verdicts, strict=True))
    return [result if result is not None else symbolic[index] for index, result in enumerate(results)]
