"""One problem with its gold answer: what every dataset loader (named, local file, procedural) returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One evaluation problem."""

    id: str
    """Stable identifier: the dataset's own id field when it has one, else the 0-based row index."""
    problem: str
    """Problem statement (no prompt template applied)."""
    answer: str
    """Gold answer, normalized for the dataset (fipo_bench.evals.datasets says how, per dataset)."""
