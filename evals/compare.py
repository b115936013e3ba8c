"""When two normalized answers are equal: the comparison rules, pure functions without sympy or I/O.

Every function takes the gold answer and the predicted one as the keyword arguments `gold=` and
`pred=`: several rules are asymmetric (a tolerance applies to a decimal prediction only, an assignment
may be dropped on one side only), so the roles must never be swapped by position. The rules follow
math-verify 0.9's grader.py; where they differ, the function says so (`compare_nodes`, `numbers_equal`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fractions import Fraction
from typing import Protocol

from fipo_bench.evals.extract import Node, is_lone_variable, is_named_quantity, parse_structure

# Longest string parsed as a number: bounds int() cost and stays under Python's 4300-digit limit.
MAX_NUMBER_CHARS = 100
ROUND_DECIMALS = 6  # math-verify's float_rounding
RELATIVE_TOLERANCE = Fraction(1, 10_000)  # Qwen2.5-Math's rel_tol

_DECIMAL = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_NUMBER = re.compile(_DECIMAL + r"(?:[eE][+-]?\d{1,3})?")  # exponent: bounded cost
_SCIENTIFIC = re.compile(r"(" + _DECIMAL + r")(?:\\times|\\cdot|\*)10\^(?:\{([+-]?\d{1,3})\}|([+-]?\d))")
_FRAC = re.compile(r"([+-]?)\\frac\{([+-]?\d+)\}\{([+-]?\d+)\}")
_SLASH = re.compile(r"([+-]?)(\d+)/(\d+)")
_MIXED = re.compile(r"([+-]?)(\d+)(?:\\frac\{(\d+)\}\{(\d+)\}| (\d+)/(\d+))")
_WORDS_ONLY = re.compile(r"[A-Za-z()]*[A-Za-z]{2,}[A-Za-z() ]*")  # text answers compare case-blind
_CHOICE = re.compile(r"\(?([A-J])\)?")
_PRED_CHOICE = re.compile(r"\(([A-Ja-j])\).*|([A-J])(?:[.:)]\s?.*)?", re.DOTALL)
_FUNCTION = re.compile(r"[A-Za-z]\((.*)\)")
_BASE_NUMBER = re.compile(r"(\d+)_\{?(\d+)\}?")  # `4210_{7}`: a numeral in base 7
_CHAIN = re.compile(r"<|>|\\le|\\ge")
_FLIPPED = {"<": ">", ">": "<", "\\le": "\\ge", "\\ge": "\\le", "=": "=", "\\ne": "\\ne"}


class AtomEqual(Protocol):
    """A rule for two leaves: True or False, or None when it cannot tell."""

    def __call__(self, *, gold: str, pred: str) -> bool | None: ...


def parse_number(text: str) -> Fraction | None:
    """Exact value of a normalized plain number (`-12`, `0.50`, `3/4`, `\\frac{3}{4}`, `1\\frac12`,
    `2.5\\times10^{-3}`, `1e3`), else None."""
    if len(text) > MAX_NUMBER_CHARS:
        return None
    try:
        if _NUMBER.fullmatch(text):
            return Fraction(text)
        scientific = _SCIENTIFIC.fullmatch(text)
        if scientific:
            exponent = int(scientific.group(2) or scientific.group(3))
            return Fraction(scientific.group(1)) * Fraction(10) ** exponent
        mixed = _MIXED.fullmatch(text)
        if mixed:
            sign, whole, *fraction = mixed.groups()
            top, bottom = (int(x) for x in fraction if x is not None)
            value = int(whole) + Fraction(top, bottom)
            return -value if sign == "-" else value
        match = _FRAC.fullmatch(text) or _SLASH.fullmatch(text)
        if match is None:
            return None
        sign, numerator, denominator = match.groups()
        value = Fraction(int(numerator), int(denominator))
        return -value if sign == "-" else value
    except (ValueError, ZeroDivisionError):
        return None


def is_decimal(text: str) -> bool:
    """Whether a number is written with a decimal point or in scientific notation (`0.33`, `1e-3`)."""
    return "." in text or "e" in text.lower() or "10^" in text


def close_enough(*, gold: float | Fraction, pred: float | Fraction) -> bool:
    """The tolerance for a decimal against a non-decimal gold (module docstring)."""
    pred, gold = Fraction(pred), Fraction(gold)
    if round(pred, ROUND_DECIMALS) == round(gold, ROUND_DECIMALS):
        return True
    return abs(pred - gold) <= RELATIVE_TOLERANCE * abs(gold)


def split_percent(text: str) -> tuple[str, bool]:
    return (text[:-2], True) if text.endswith("\\%") else (text, False)


def numbers_equal(*, gold: str, pred: str) -> bool | None:
    """Both plain numbers: whether they are equal; else None.

    Exact first (Fractions: `0.5` is `\\frac{1}{2}`, `025` is `25`, `1\\frac12`
    is 3/2, `2.3\\times10^{-3}` is 23/10000). Then, only for a decimal written against a gold that is not
    a decimal (a fraction here, an irrational in the worker), a tolerance: equal after rounding both to 6
    decimal places (math-verify 0.9 `grader.sympy_numeric_eq`, `float_rounding=6`), or within a relative
    1e-4 (Qwen2.5-Math's `evaluation/grader.py` `numeric_equal`, `isclose(rel_tol=1e-4)`, copied by many RL
    math graders; MARIO_EVAL allows a relative 1e-3). An integer or decimal gold is never matched
    approximately (`5.001` is not `5`; NeMo-Skills' tests ask the same).
    A percent on one side only: `28\\%` matches `28` and `0.28` (math-verify's percent rule).
    """
    gold, gold_percent = split_percent(gold)
    pred, pred_percent = split_percent(pred)
    gold_value, pred_value = parse_number(gold), parse_number(pred)
    if gold_value is None or pred_value is None:
        return None
    if gold_percent == pred_percent:
        candidates = [gold_value]
    else:  # 28% against 28 or 0.28; 0.28 against 28%
        candidates = [gold_value, gold_value / 100] if gold_percent else [gold_value, gold_value * 100]
    if pred_value in candidates:
        return True
    if is_decimal(pred) and not is_decimal(gold) and gold_value.denominator != 1:
        return any(close_enough(gold=value, pred=pred_value) for value in candidates)
    return False


def fast_atom_equal(*, gold: str, pred: str) -> bool | None:
    """Two leaves decided without sympy: equal strings, numbers, or plain words; else None."""
    if gold == pred:
        return True
    by_number = numbers_equal(gold=gold, pred=pred)
    if by_number is not None:
        return by_number
    if _WORDS_ONLY.fullmatch(gold) and _WORDS_ONLY.fullmatch(pred):
        return gold.lower() == pred.lower()
    gold_base, pred_base = _BASE_NUMBER.fullmatch(gold), _BASE_NUMBER.fullmatch(pred)
    if gold_base and pred_base:  # math-verify drops the base: 4210_7 would equal 4210_8
        return gold_base.groups() == pred_base.groups()
    return None


def choice_letter(*, gold: str, pred: str) -> bool | None:
    """A multiple-choice gold (`B`, `(B)`, `\\text{(B)}`): whether the answer names the same option
    (`(B)`, `B`, `(b)`, `B. 12`, `(B) 12`); None if the gold is no option letter or the answer names
    none."""
    gold_choice = _CHOICE.fullmatch(gold)
    if gold_choice is None:
        return None
    pred_choice = _PRED_CHOICE.fullmatch(pred)
    if pred_choice is None:
        return None
    return (pred_choice.group(1) or pred_choice.group(2)).upper() == gold_choice.group(1)


def _all(results: Iterable[bool | None]) -> bool | None:
    """Three-valued AND: False as soon as one is False, None if any is unknown."""
    unknown = False
    for result in results:
        if result is False:
            return False
        unknown |= result is None
    return None if unknown else True


def _unordered(*, gold: tuple[Node, ...], pred: tuple[Node, ...], atom_equal: AtomEqual) -> bool | None:
    """Whether every gold item matches a distinct predicted item (greedy; equality is transitive)."""
    gold, pred = _distinct(gold), _distinct(pred)  # a set lists each element once
    if len(gold) != len(pred):
        return False
    unused = list(range(len(pred)))
    unknown = False
    for item in gold:
        results = []
        for j in unused:
            result = compare_nodes(gold=item, pred=pred[j], atom_equal=atom_equal)
            if result:
                unused.remove(j)
                break
            results.append(result)
        else:
            if all(result is False for result in results):
                return False
            unknown = True
    return None if unknown else True


def _distinct(items: tuple[Node, ...]) -> tuple[Node, ...]:
    return tuple({item.text.replace(", ", ","): item for item in items}.values())


def _ordered(*, gold: tuple[Node, ...], pred: tuple[Node, ...], atom_equal: AtomEqual) -> bool | None:
    if len(gold) != len(pred):
        return False
    return _all(compare_nodes(gold=g, pred=p, atom_equal=atom_equal) for g, p in zip(gold, pred, strict=True))


def _relation_equal(*, gold: Node, pred: Node, atom_equal: AtomEqual) -> bool | None:
    (gold_lhs, gold_rhs), (pred_lhs, pred_rhs) = gold.items, pred.items
    if gold.op == pred.op == "=" and is_lone_variable(gold_lhs.text) and is_lone_variable(pred_lhs.text):
        if not _same_unknown(gold=gold_lhs.text, pred=pred_lhs.text):
            return False  # y = 5 does not answer x = 5 (math-verify: both assignments keep their sides)
        return compare_nodes(gold=gold_rhs, pred=pred_rhs, atom_equal=atom_equal)  # the values decide
    if gold.op == "\\in" or pred.op == "\\in":
        if gold.op == pred.op and gold_lhs.text == pred_lhs.text:
            return compare_nodes(gold=gold_rhs, pred=pred_rhs, atom_equal=atom_equal)
        return False if gold.op == pred.op else None
    same = _ordered(gold=gold.items, pred=pred.items, atom_equal=atom_equal) if gold.op == pred.op else False
    flipped = (
        _ordered(gold=gold.items, pred=pred.items[::-1], atom_equal=atom_equal)
        if _FLIPPED.get(gold.op) == pred.op
        else False
    )
    if same or flipped:
        return True
    return atom_equal(gold=gold.text, pred=pred.text)  # the whole relation: equivalent equations


def _same_unknown(*, gold: str, pred: str) -> bool:
    """Whether two lone-variable left sides name the same unknown: the same variable, a function of
    the same arguments under another name (`f(x)`, `g(x)`), or `y` for a function of one argument."""
    if gold == pred:
        return True
    gold_args, pred_args = _FUNCTION.fullmatch(gold), _FUNCTION.fullmatch(pred)
    if gold_args and pred_args:
        return gold_args.group(1) == pred_args.group(1)
    single = gold_args or pred_args
    return single is not None and "," not in single.group(1) and "y" in (gold, pred)


def _assigned_value(node: Node) -> Node | None:
    """The right side of `x = 5`, `AB = 4` or `x \\in S`: a relation naming a quantity."""
    if node.kind == "relation" and node.op in ("=", "\\in") and is_named_quantity(node.items[0].text):
        return node.items[1]
    return None


def _as_vector(node: Node) -> tuple[Node, ...] | None:
    if node.kind == "matrix" and (len(node.items) == 1 or all(len(row) == 1 for row in node.items)):
        return tuple(entry for row in node.items for entry in row)
    return None


def compare_nodes(*, gold: Node, pred: Node, atom_equal: AtomEqual) -> bool | None:
    """Whether two parsed answers are equal, leaves decided by `atom_equal`; None when some leaf is
    undecided (`atom_equal` returned None).

    On `extract.parse_structure`'s nodes, following math-verify 0.9's grader.py:
    - a bare list or a set is unordered when the gold is one (a "find all" answer); a tuple, point or
      interval is ordered, and its brackets must match (`[2,5)` is not `(2,5]`); a bare list against a
      tuple is compared in order (math-verify compares an open interval with a 2-set as a tuple);
    - matrices compare entry-wise, shapes equal (`pmatrix` and `bmatrix` alike); a vector matches a list
      of its entries; `cases` rows compare as an unordered set;
    - an equation, inequality or relation is compared as one: the same operator with sides equal, the
      flipped inequality (`5 \\ge x` is `x \\le 5`), or else the leaf rule on the whole relation
      (equivalent equations, `2x = 12` and `x = 6`); only an assignment to a lone variable (`x = 5`,
      `f(x) = 2x+3`, `x \\in [0, 1)`) may be compared by its right side against a gold without one, and
      vice versa. math-verify itself drops the left side of any predicted equation against a non-equation
      gold, so it accepts `2x+3y=6` for gold `6`; we do not.
    The leaves are decided by a rule passed in (`AtomEqual`): `fast_atom_equal` here (numbers, strings),
    or symbolic.symbolic_atom_equal (math-verify) in a sandboxed worker.
    """
    if gold.text == pred.text:
        return True
    if gold.kind == "relation" or pred.kind == "relation":
        if gold.kind == pred.kind:
            return _relation_equal(gold=gold, pred=pred, atom_equal=atom_equal)
        gold_value, pred_value = _assigned_value(gold), _assigned_value(pred)
        if gold_value is not None:
            return compare_nodes(gold=gold_value, pred=pred, atom_equal=atom_equal)
        if pred_value is not None:
            return compare_nodes(gold=gold, pred=pred_value, atom_equal=atom_equal)
        return False  # an equation is not a value: `2x+3y=6` does not answer `6`
    if gold.kind == "matrix" or pred.kind == "matrix":
        if gold.kind == pred.kind:
            if len(gold.items) != len(pred.items) or any(
                len(g) != len(p) for g, p in zip(gold.items, pred.items, strict=True)
            ):
                return False
            rows = zip(gold.items, pred.items, strict=True)
            return _all(_ordered(gold=g, pred=p, atom_equal=atom_equal) for g, p in rows)
        if "matrix" in gold.text and "matrix" in pred.text:  # a product or sum of matrices: evaluated
            return atom_equal(gold=gold.text, pred=pred.text)
        gold_vector, pred_vector = _as_vector(gold), _as_vector(pred)
        if gold_vector is not None and pred.kind == "list" and pred.open != "\\{":
            return _ordered(gold=gold_vector, pred=pred.items, atom_equal=atom_equal)
        if pred_vector is not None and gold.kind == "list" and gold.open != "\\{":
            return _ordered(gold=gold.items, pred=pred_vector, atom_equal=atom_equal)
        return False
    if gold.kind == "cases" or pred.kind == "cases":
        if gold.kind != pred.kind:
            return False
        return _unordered(gold=gold.items, pred=pred.items, atom_equal=atom_equal)
    if gold.kind == "list" or pred.kind == "list":
        gold_items = gold.items if gold.kind == "list" else (gold,)
        pred_items = pred.items if pred.kind == "list" else (pred,)
        if gold.kind != pred.kind:  # a value against a list: only a one-element set can match it
            single = gold if gold.kind == "list" else pred
            is_interval = pred.open in "([" and len(pred.items) == 2
            if gold.kind == "atom" and _CHAIN.search(gold.text) and is_interval:
                return atom_equal(gold=gold.text, pred=pred.text)  # `0 < x < 1` and `(0, 1)`: as_set
            if single.open != "\\{" or len(single.items) != 1:
                return False
            return compare_nodes(gold=gold_items[0], pred=pred_items[0], atom_equal=atom_equal)
        gold_set, pred_set = gold.open in ("", "\\{"), pred.open in ("", "\\{")
        if gold_set and pred_set:
            return _unordered(gold=gold_items, pred=pred_items, atom_equal=atom_equal)
        if gold_set or pred_set:  # a bare list or set against a tuple: in order, if the tuple is open
            bracketed = pred if gold_set else gold
            if (bracketed.open, bracketed.close) != ("(", ")"):
                return False
            return _ordered(gold=gold_items, pred=pred_items, atom_equal=atom_equal)
        if (gold.open, gold.close) != (pred.open, pred.close):
            return False
        return _ordered(gold=gold_items, pred=pred_items, atom_equal=atom_equal)
    return atom_equal(gold=gold.text, pred=pred.text)


def answers_equal(*, gold: str, pred: str, atom_equal: AtomEqual = fast_atom_equal) -> bool | None:
    """Whether two normalized answers are equal; None when the leaf rule cannot tell."""
    return compare_nodes(gold=parse_structure(gold), pred=parse_structure(pred), atom_equal=atom_equal)
