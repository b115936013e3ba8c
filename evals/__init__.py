"""Evaluation: datasets, prompt templates, answer checking, metrics, generation (see DESIGN.md, Evaluation).

Importing this package is light (stdlib only); sympy/math-verify load in checker worker processes,
torch/transformers/vLLM inside the generation functions.
"""

from fipo_bench.evals.checker import check_answer, check_answers
from fipo_bench.evals.datasets import DATASETS, Problem, load_dataset, normalize_gold
from fipo_bench.evals.prompts import TEMPLATES, format_prompt
from fipo_bench.evals.result import VERDICTS, CheckResult

__all__ = [
    "DATASETS",
    "TEMPLATES",
    "VERDICTS",
    "CheckResult",
    "Problem",
    "check_answer",
    "check_answers",
    "format_prompt",
    "load_dataset",
    "normalize_gold",
]
