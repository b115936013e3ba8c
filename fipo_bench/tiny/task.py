"""The built-in tasks: generated sums that a response answers directly or by writing partial sums.

Two tasks share the prompt format (``7+3+5?``), the tokenizer and the grading; a run picks one with
the config key ``tiny_task.name`` (`task_from_config`):

``chain`` (`ChainTask`, the default since issue 20)
    Sums of 4-10 single digits. A response writes the running partial sums for as many steps as it
    chooses, then answers; the number of steps is a dial from 0 (direct) to terms - 1 (the full chain):

        0 steps   Answer:15
        1 step    7+3=10;Answer:15
        2 steps   7+3=10;10+5=15;Answer:15

    Each step leaves one term fewer to add in the final answer, so accuracy rises step by step and RL
    can lengthen the reasoning a little at a time instead of in one switch; more terms (difficulty)
    need more steps for the same accuracy. The warm-up writes each further step with a fixed chance,
    so long chains are rare but present in the base model (fipo_bench.tiny.warmup).

``sums`` (`SumsTask`, the default before issue 20; preset ``tiny-sums``)
    Sums of 2-6 integers in 1..20, answered directly or with every step:

        direct        Answer:40
        step-by-step  17+8=25;25+15=40;Answer:40

Only the final line is graded (an outcome reward, as in DAPO/FIPO): a chain with a wrong intermediate
sum but the right final number is correct. Measured numbers: benchmarks/tiny_task_design.py.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Literal

from fipo_bench.evals import CheckResult, Problem

ANSWER_PREFIX = "Answer:"
PROMPT_END = "?"
STEP_END = ";"
Style = Literal["direct", "steps"]
# Longest answer compared as a number (bounds int() on untrusted text; the largest sum has 4 digits).
_MAX_ANSWER_CHARS = 100
_INTEGER = re.compile(r"-?\d+")


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


def prompt(terms: tuple[int, ...]) -> str:
    return "+".join(map(str, terms)) + PROMPT_END


def parse_prompt(text: str) -> tuple[int, ...]:
    body = text.removesuffix(PROMPT_END)
    if not text.endswith(PROMPT_END) or not re.fullmatch(r"\d+(\+\d+)+", body):
        raise ValueError(f"not a tiny-task prompt: {text!r}")
    return tuple(int(t) for t in body.split("+"))


def partial_sums_response(terms: tuple[int, ...], steps: int) -> str:
    """The first `steps` additions of the chain (``a+b=c;``), then the final line (no EOS token)."""
    if not 0 <= steps < len(terms):
        raise ValueError(f"steps: expected 0..{len(terms) - 1} for {len(terms)} terms, got {steps!r}")
    written, partial = [], terms[0]
    for term in terms[1 : steps + 1]:
        written.append(f"{partial}+{term}={partial + term}{STEP_END}")
        partial += term
    return "".join(written) + f"{ANSWER_PREFIX}{sum(terms)}"


def steps_written(response: str) -> int:
    """How many steps a response wrote before its final line (``;`` before the last ``Answer:``)."""
    return response.rpartition(ANSWER_PREFIX)[0].count(STEP_END)


class _Splits:
    """The deterministic, disjoint train/test split shared by the tasks.

    The test split is the first `test_size` distinct problems of a stream seeded with `seed`; training
    problems come from a second stream and never repeat a test problem. A subclass is a frozen
    dataclass with `seed` and `test_size` fields, `sample_terms` and a `_stream_prefix`.
    """

    name: ClassVar[str]
    _stream_prefix: ClassVar[str]
    seed: int
    test_size: int

    check = staticmethod(check)
    prompt = staticmethod(prompt)
    parse_prompt = staticmethod(parse_prompt)

    def sample_terms(self, rng: random.Random) -> tuple[int, ...]:
        raise NotImplementedError

    def _rng(self, stream: str) -> random.Random:
        # Separate streams so drawing more training problems never shifts the test split.
        return random.Random(f"{self._stream_prefix}/{stream}/{self.seed}")

    @cached_property
    def _test_terms(self) -> tuple[tuple[int, ...], ...]:
        rng = self._rng("test")
        seen: dict[tuple[int, ...], None] = {}
        for _ in range(1000 * self.test_size):
            seen.setdefault(self.sample_terms(rng), None)
            if len(seen) == self.test_size:
                return tuple(seen)
        raise ValueError(
            f"{type(self).__name__}: fewer than test_size={self.test_size} distinct problems exist")

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

    @staticmethod
    def problem(terms: tuple[int, ...], problem_id: str) -> Problem:
        return Problem(id=problem_id, problem=prompt(terms), answer=str(sum(terms)))

    def warmup_response(self, terms: tuple[int, ...], rng: random.Random, step_chance: float) -> str:
        """A reference response for the SFT warm-up, its length drawn with `rng` (see each task)."""
        raise NotImplementedError


@dataclass(frozen=True)
class ChainTask(_Splits):
    """Sums of single digits whose responses write the running partial sums for a chosen number of steps.

    Measured on the base model of the ``tiny`` preset (`python benchmarks/tiny_task_design.py --preset
    tiny --settings sampled`, the 256 test problems, sampling at T=1 as in RL rollouts; issue 20):
    accuracy 0.09, mean length 10.5 tokens; steps written 0: 54%, 1: 22%, 2: 13%, 3: 6%, 4 or more: 6%.
    With the number of steps forced (the model writes its own steps) accuracy is 0.10 direct, 0.06-0.07
    after 1-2 steps, then rises with each step to 0.29 for the full chain (length 4 -> 51 tokens). By
    term count the full chain reaches 0.58 (4 terms), 0.59 (5), 0.39 (6), 0.15 (7), 0.23 (8), 0.09 (9)
    and 0.08 (10), against 0.03-0.24 direct: harder problems need longer chains and leave headroom at
    the top. Two departures from the design's ideal, as measured: an answer after a partial chain is no
    better than a direct one (the 600-step warm-up learns the end points better than the middle), and
    long chains compound step errors, so the full chain itself is far from perfect.
    """

    name: ClassVar[str] = "chain"
    _stream_prefix: ClassVar[str] = "fipo-bench-tiny-chain"

    seed: int = 0
    """Seeds both splits; two tasks with the same fields produce the same problems."""
    min_terms: int = 4
    """Fewest digits in a sum."""
    max_terms: int = 10
    """Most digits in a sum: the full chain has max_terms - 1 steps (~70 tokens at 10 terms)."""
    max_digit: int = 9
    """Largest term; terms are drawn from 1..max_digit."""
    test_size: int = 256
    """Problems in the test split."""

    def __post_init__(self) -> None:
        if not 2 <= self.min_terms <= self.max_terms:
            raise ValueError(
                f"ChainTask: need 2 <= min_terms <= max_terms, got {self.min_terms}, {self.max_terms}")
        if not 1 <= self.max_digit <= 9:
            raise ValueError(f"ChainTask.max_digit: expected 1..9, got {self.max_digit}")
        if self.test_size < 1:
            raise ValueError(f"ChainTask.test_size: expected >= 1, got {self.test_size}")

    def sample_terms(self, rng: random.Random) -> tuple[int, ...]:
        n_terms = rng.randint(self.min_terms, self.max_terms)
        return tuple(rng.randint(1, self.max_digit) for _ in range(n_terms))

    @staticmethod
    def response(terms: tuple[int, ...], steps: int) -> str:
        """The reference response that writes `steps` partial sums (0 = direct, terms - 1 = full chain)."""
        return partial_sums_response(terms, steps)

    steps_written = staticmethod(steps_written)

    def warmup_response(self, terms: tuple[int, ...], rng: random.Random, step_chance: float) -> str:
        """Each further step is written with chance `step_chance`: the number of steps is geometric,
        truncated at the full chain, so long chains are rare in the base model but not absent."""
        steps = 0
        while steps < len(terms) - 1 and rng.random() < step_chance:
            steps += 1
        return self.response(terms, steps)


@dataclass(frozen=True)
class SumsTask(_Splits):
    """Sums of a few integers, answered directly or with every step (the default before issue 20).

    A small model guesses a multi-term sum badly in one shot but can add two numbers at a time, so the
    step-by-step style is the more accurate one. Problems are drawn uniformly: a term count in
    [min_terms, max_terms], then each term in [min_value, max_value].
    """

    name: ClassVar[str] = "sums"
    _stream_prefix: ClassVar[str] = "fipo-bench-tiny"

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
                f"SumsTask: need 2 <= min_terms <= max_terms, got {self.min_terms}, {self.max_terms}"
            )
        if not 0 <= self.min_value <= self.max_value:
            raise ValueError(
                f"SumsTask: need 0 <= min_value <= max_value, got {self.min_value}, {self.max_value}"
            )
        if self.test_size < 1:
            raise ValueError(f"SumsTask.test_size: expected >= 1, got {self.test_size}")

    def sample_terms(self, rng: random.Random) -> tuple[int, ...]:
        n_terms = rng.randint(self.min_terms, self.max_terms)
        return tuple(rng.randint(self.min_value, self.max_value) for _ in range(n_terms))

    @staticmethod
    def response(terms: tuple[int, ...], style: Style) -> str:
        """The reference response in either style (without the EOS token)."""
        if style not in ("direct", "steps"):
            raise ValueError(f"style: expected 'direct' or 'steps', got {style!r}")
        return partial_sums_response(terms, 0 if style == "direct" else len(terms) - 1)

    @staticmethod
    def style_prefix(prompt: str, style: Style) -> str:
        """The first token of a response in `style`; appending it to the prompt forces the style."""
        if style == "direct":
            return ANSWER_PREFIX
        return prompt[0]  # a step-by-step answer starts by repeating the first term

    @staticmethod
    def response_style(response: str) -> Style:
        return "direct" if response.startswith(ANSWER_PREFIX) else "steps"

    def warmup_response(self, terms: tuple[int, ...], rng: random.Random, step_chance: float) -> str:
        """Step by step with chance `step_chance`, else direct (one draw of `rng` per response)."""
        return self.response(terms, "steps" if rng.random() < step_chance else "direct")


TinyTask = SumsTask
"""The sums task under its name before issue 20 (`SumsTask`)."""

TASKS: dict[str, type[_Splits]] = {"chain": ChainTask, "sums": SumsTask}
DEFAULT_TASK = "chain"


def task_from_config(options: dict[str, Any]):
    """The task of a ``tiny_task`` config dict: ``name`` (chain | sums; default chain) and its fields."""
    options = dict(options)
    name = options.pop("name", DEFAULT_TASK)
    if name not in TASKS:
        raise ValueError(f"name: unknown tiny task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name](**options)
