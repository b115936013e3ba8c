"""The verdict of one response against one gold answer (CheckResult): what the answer checker and a
procedural task's scorer both return (a leaf module, so that neither imports the other for it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Verdict = Literal["correct", "incorrect", "no_answer", "timeout", "error"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
Method = Literal["string", "number", "symbolic", "procedural"]
"""The stage that decided: text or structure, exact numbers, the symbolic worker, or a procedural task's
own scorer (reasoning-gym, procedural_check)."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """Verdict of one response against one gold answer."""

    verdict: Verdict
    extracted: str | None
    """The final answer found in the response (before normalization), None when there is none."""
    method: Method | None = None
    """Stage that decided, None when none compared the answers (no answer, filtered out, error)."""
    score: float | None = None
    """A procedural task's raw score in [0, 1] (procedural_check); None for math answers."""

    @property
    def correct(self) -> bool:
        return self.verdict == "correct"
