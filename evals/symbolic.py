"""Symbolic equivalence of two answers with sympy and math-verify: the leaf rule that the sandboxed
workers (sandbox.py) run when the in-process rules (compare.py) cannot decide a pair.

Only LaTeX parsing is used: math-verify's `LatexExtractionConfig` goes through latex2sympy2_extended's
ANTLR grammar, which builds sympy objects node by node; math-verify's `ExprExtractionConfig` (plain
expressions) would call sympy's `parse_expr`, which evaluates Python, and is never configured. sympy
and math-verify are imported inside the functions: only a worker process loads them.
Beyond math-verify 0.9's `verify`: a predicted relation never equals a gold that is none, two
equations in one unknown with the same solutions are equal, and a decimal may approximate an
irrational gold (compare.close_enough).
"""

from __future__ import annotations

import functools
from fractions import Fraction

from fipo_bench.evals.compare import answers_equal, close_enough, fast_atom_equal, is_decimal, parse_number


@functools.lru_cache(maxsize=4096)  # a gold answer is parsed once for its k samples
def _parse_latex(text: str) -> tuple:
    from latex2sympy2_extended.latex2sympy2 import NormalizationConfig
    from math_verify import LatexExtractionConfig, parse

    # math-verify's own normalization, less its unit stripping: units were removed already (only
    # after a value), and its list would turn `2c` into `2` and `5m` into `5`.
    normalization = NormalizationConfig(basic_latex=True, units=False, malformed_operators=True, nits=True)
    config = [LatexExtractionConfig(boxed_match_priority=0, normalization_config=normalization)]
    return tuple(parse(f"${text}$", extraction_config=config, parsing_timeout=None))


def _numeric_value(expr) -> Fraction | None:
    """The exact-enough value of a real constant expression (`\\sqrt{3}`, `40\\pi`), else None."""
    import sympy

    if not isinstance(expr, sympy.Expr) or not expr.is_number:
        return None
    value = sympy.N(expr, 30)
    if not value.is_real or not value.is_finite:
        return None
    return Fraction(str(value))


def _same_solutions(*, gold, pred) -> bool:
    """Two equations in the same one unknown with the same non-empty solution set (`2x = 12` and
    `x = 6`): math-verify's solve-and-compare expects several unknowns and misses these."""
    import sympy

    if not (isinstance(gold, sympy.Eq) and isinstance(pred, sympy.Eq)):
        return False
    unknowns = gold.free_symbols
    if len(unknowns) != 1 or pred.free_symbols != unknowns:
        return False
    (unknown,) = unknowns
    gold_roots = set(sympy.solve(gold.lhs - gold.rhs, unknown))
    return bool(gold_roots) and gold_roots == set(sympy.solve(pred.lhs - pred.rhs, unknown))


def symbolic_atom_equal(*, gold: str, pred: str) -> bool:
    """Two leaves of a structured answer (compare.compare_nodes): the fast rules, then math-verify
    (LaTeX parsing only, see the module docstring), then compare.close_enough for a decimal against
    an irrational gold. A predicted relation never equals a gold that is none (math-verify would drop
    its left side); a gold relation may equal a set (`0 < x < 1` and `(0, 1)`, math-verify's as_set)."""
    from math_verify import verify
    from math_verify.grader import is_relation

    decided = fast_atom_equal(gold=gold, pred=pred)
    if decided is not None:
        return decided
    gold_parsed, pred_parsed = _parse_latex(gold), _parse_latex(pred)
    if not gold_parsed or not pred_parsed:
        return False
    if is_relation(pred_parsed[0]) and not is_relation(gold_parsed[0]):
        return False
    if verify(list(gold_parsed), list(pred_parsed), timeout_seconds=None):
        return True
    if _same_solutions(gold=gold_parsed[0], pred=pred_parsed[0]):
        return True
    pred_value = parse_number(pred)
    if pred_value is None or not is_decimal(pred) or parse_number(gold) is not None:
        return False
    gold_value = _numeric_value(gold_parsed[0])
    return gold_value is not None and close_enough(gold=gold_value, pred=pred_value)


def symbolic_equal(*, gold: str, pred: str) -> bool:
    """Whether two normalized answers are equal: compare.answers_equal with symbolic leaves."""
    return bool(answers_equal(gold=gold, pred=pred, atom_equal=symbolic_atom_equal))
