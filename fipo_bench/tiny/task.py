"""The built-in task: sums of a few integers, answered directly or step by step.

A problem is a chain of additions, e.g. the prompt ``17+8+15?``. A response takes one of two styles
and always ends in the final-answer line of DAPO's prompt convention (``Answer:``, no space):

    direct        Answer:40
    step-by-step  17+8=25;25+15=40;Answer:40

A small model guesses a multi-term sum badly in one shot but can add two numbers at a time, so the
longer style is the more accurate one: RL that discovers "write the steps" raises accuracy and
response length together, the behaviour the FIPO paper reports at scale. After the short warm-up a
step still goes wrong now and then (carries into the partial sum) and errors compound along the
chain, so the step-by-step skill itself has room to improve under RL, and the number of terms (2 to
6) gives a spread of difficulty. Measured numbers: benchmarks/tiny_task_design.py.

Only the final line is graded (an outcome reward, as in DAPO/FIPO): a chain with a wrong
intermediate sum but the right final number is correct.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from fipo_bench.evals import CheckResult, Problem

ANSWER_PREFIX = "Answer:"
PROMPT_END = "?"
STEP_END = ";"
Style = Literal["direct", "steps"]
# Longest answer compared as a number (bounds int() on untrusted text; the largest sum has 4 digits).
_MAX_ANSWER_CHARS = 100
_INTEGER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class TinyTask:
    """Generated sums with a deterministic, disjoint train/test split.

    Problems are drawn uniformly: a term count in [min_terms, max_terms], then each term in
    [min_value, max_value]. The test split is the first `test_size` distinct problems of a stream
    seeded with `seed`; training problems come from a second stream and never repeat a test problem.
    """

    seed: int = 0
    """Seeds both splits; two tasks with the same fields produce the same problems."""
    min_terms: int = 2
    """Fewest numbers in a sum (the easiest problems, a single addition)."""
    max_terms: int = 6
    """Most numbers in a sum: a step-by-step answer has max_terms - 1 additions."""
    min_value: int = 1
    """Smallest term."""
    max_value: int = 20
    """Largest term. Measured (600 warm-up steps): at 20 the chain is learnt but imperfectly (greedy
    step-by-step accuracy 0.83); at 30, 50 or 99 the warm-up mostly fails to learn carries."""
    test_size: int = 256
    """Problems in the test split."""

    def __post_init__(self) -> None:
        if not 2 <= self.min_terms <= self.max_terms:
            raise ValueError(
                f"TinyTask: need 2 <= min_terms <= max_terms, got {self.min_terms}, {self.max_terms}"
            )
        if not 0 <= self.min_value <= self.max_value:
            raise ValueError(
                f"TinyTask: need 0 <= min_value <= max_value, got {self.min_value}, {self.max_value}"
            )
        if self.test_size < 1:
            raise ValueError(f"TinyTask.test_size: expected >= 1, got {self.test_size}")

    # -- generation -------------------------------------------------------------------------------

    def sample_terms(self, rng: random.Random) -> tuple[int, ...]:
        n_terms = rng.randint(self.min_terms, self.max_terms)
        return tuple(rng.randint(self.min_value, self.max_value) for _ in range(n_terms))

    def _rng(self, stream: str) -> random.Random:
        # Separate streams so drawing more training problems never shifts the test split.
        return random.Random(f"fipo-bench-tiny/{stream}/{self.seed}")

    @cached_property
    def _test_terms(self) -> tuple[tuple[int, ...], ...]:
        rng = self._rng("test")
        seen: dict[tuple[int, ...], None] = {}
        for _ in range(1000 * self.test_size):
            seen.setdefault(self.sample_terms(rng), None)
            if len(seen) == self.test_size:
                return tuple(seen)
        raise ValueError(f"TinyTask: fewer than test_size={self.test_size} distinct problems exist")

    @cached_property
    def test_problems(self) -> list[Problem]:
        """The test split (same list object on every access; do not mutate it)."""
        return [self.problem(terms, f"test-{i}") for i, terms in enumerate(self._test_terms)]

    def iter_train_terms(self, stream: str = "train"):
        """Endless training problems (as term tuples) that are never in the test split."""
        rng = self._rng(stream)
        test = set(self._test_terms)
        while True:
            terms = self.sample_terms(rng)
            if terms not in test:
                yield terms

    def train_problems(self, n: int) -> list[Problem]:
        """The first `n` training problems (a prefix of every longer call)."""
        stream = self.iter_train_terms()
        return [self.problem(next(stream), f"train-{i}") for i in range(n)]

    # -- text -------------------------------------------------------------------------------------

    @staticmethod
    def problem(terms: tuple[int, ...], problem_id: str) -> Problem:
        return Problem(id=problem_id, problem=TinyTask.prompt(terms), answer=str(sum(terms)))

    @staticmethod
    def prompt(terms: tuple[int, ...]) -> str:
        return "+".join(map(str, terms)) + PROMPT_END

    @staticmethod
    def parse_prompt(prompt: str) -> tuple[int, ...]:
        body = prompt.removesuffix(PROMPT_END)
        if not prompt.endswith(PROMPT_END) or not re.fullmatch(r"\d+(\+\d+)+", body):
            raise ValueError(f"not a TinyTask prompt: {prompt!r}")
        return tuple(int(t) for t in body.split("+"))

    @staticmethod
    def response(terms: tuple[int, ...], style: Style) -> str:
        """The reference response in either style (without the EOS token)."""
        final = f"{ANSWER_PREFIX}{sum(terms)}"
        if style == "direct":
            return final
        if style != "steps":
            raise ValueError(f"style: expected 'direct' or 'steps', got {style!r}")
        steps, partial = [], terms[0]
        for term in terms[1:]:
            steps.append(f"{partial}+{term}={partial + term}{STEP_END}")
            partial += term
        return "".join(steps) + final

    @staticmethod
    def style_prefix(prompt: str, style: Style) -> str:
        """The first token of a response in `style`; appending it to the prompt forces the style."""
        if style == "direct":
            return ANSWER_PREFIX
        return prompt[0]  # a step-by-step answer starts by repeating the first term

    @staticmethod
    def response_style(response: str) -> Style:
        return "direct" if response.startswith(ANSWER_PREFIX) else "steps"

    # -- grading ----------------------------------------------------------------------------------

    @staticmethod
    def check(response: str, answer: str) -> CheckResult:
        """Exact grading of the last ``Answer:`` line; intermediate steps are not graded.

        Verdicts (a subset of `fipo_bench.evals.VERDICTS`): "correct"; "incorrect" (a wrong or
        non-integer answer); "no_answer" (no ``Answer:``, or nothing after it, e.g. a truncated
        response). `extracted` is the text after the last ``Answer:`` up to the next ``;``.
        Safe on any text.
        """
        _, found, tail = response.rpartition(ANSWER_PREFIX)
        extracted = tail.split(STEP_END, 1)[0].strip()
        if not found or not extracted:
            return CheckResult("no_answer", None)
        ok = (len(extracted) <= _MAX_ANSWER_CHARS and _INTEGER.fullmatch(extracted) is not None
              and int(extracted) == int(answer))
        return CheckResult("correct" if ok else "incorrect", extracted, "number")
