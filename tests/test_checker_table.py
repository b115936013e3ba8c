"""The answer checker against a table of hand-written cases, one block per kind of answer, each with the
verdict a careful grader gives and the rule it follows; and plain math-verify on the same table.

Sources named in the comments: math-verify 0.9 (`grader.py` / `parser.py` rules), MATH's `is_equiv`
(Hendrycks et al. 2021), MARIO_EVAL's `is_equiv`, NeMo-Skills' `math_equal`, Qwen2.5-Math's grader,
DAPO's reward (verl `math_dapo.py`), Minerva's answer format (Lewkowycz et al. 2022), and issue 10's
rules. The cases are written for this suite (no public test is copied).
"""

import logging

import pytest

from fipo_bench.evals import check_answers

C, W, N = "correct", "incorrect", "no_answer"  # W: wrong


def box(answer: str) -> str:
    return f"Reasoning.\nSo the answer is $\\boxed{{{answer}}}$."


def line(answer: str) -> str:
    return f"Reasoning.\nAnswer: {answer}"


NUMBERS = [
    (line("42"), "42", C),  # exact integers
    (line("025"), "25", C),  # AIME: integers 0-999, leading zeros are notation (DAPO)
    (box("007"), "7", C),  # AIME leading zeros
    (line("70"), "7", W),  # a trailing zero is a different number
    (line("-7"), "7", W),  # sign matters
    (line("+7"), "7", C),  # an explicit plus sign
    (line("7.0"), "7", C),  # exact value: 7.0 == 7
    (line("7.000"), "7", C),  # exact value
    (line("7.001"), "7", W),  # an integer gold is matched exactly (NeMo-Skills: 5 != 5.001)
    (line("6.9999999"), "7", W),  # no tolerance against an integer gold (issue 10: exact first)
    (line(".5"), "0.5", C),  # leading decimal point (MATH is_equiv: .1 == 0.1)
    (line("0.50"), "0.5", C),  # trailing zeros
    (line("0.05"), "0.5", W),  # a misplaced point
    (line("1,000"), "1000", C),  # thousands separator, unambiguous (issue 10)
    (line("1{,}000"), "1000", C),  # LaTeX thousands separator
    (line("1,\\!000"), "1000", C),  # LaTeX thousands with a negative space (MARIO_EVAL)
    (line("70 000"), "70000", C),  # space-grouped thousands (math-verify's number regex)
    (line("12,345,678"), "12345678", C),  # several groups
    (line("1,234.5"), "1234.5", C),  # groups and a decimal part
    (line("1,001"), "1000", W),  # one off
    (line("7,0000"), "70000", W),  # not a thousands grouping
    (line("32, 349"), "32349", W),  # a space after the comma: a list of two numbers (issue 10)
    (line("32, 349"), "32, 349", C),  # the same list
    (line("2.3\\times10^{-3}"), "0.0023", C),  # scientific notation (issue 10)
    (line("2.3 \\times 10^{-3}"), "\\frac{23}{10000}", C),  # scientific notation against a fraction
    (line("2.3\\times10^{-4}"), "0.0023", W),  # wrong exponent
    (line("1e3"), "1000", C),  # e-notation (issue 10)
    (line("1e4"), "1000", W),  # wrong exponent
    (line("10^3"), "1000", C),  # a power of ten is exact
    (line("2^{10}"), "1024", C),  # powers (math-verify symbolic)
    (line("2^{10}"), "1000", W),  # a power is not its rounding
    (line("1.5\\times 10^{2}"), "150", C),  # scientific notation, positive exponent
    (line("-0"), "0", C),  # negative zero is zero
    (line("0"), "000", C),  # AIME zero
    (line("100"), "10", W),  # magnitude
    (line("17"), "71", W),  # swapped digits
    (box("3.14"), "3.14", C),  # decimal gold, same decimal
    (box("3.141"), "3.14", W),  # a decimal gold is matched exactly (issue 10: exact first)
    (box("3.1416"), "\\pi", C),  # decimal vs irrational: relative 1e-4 (Qwen2.5-Math, MARIO_EVAL 3.1416 ~ pi)
    (box("3.14"), "\\pi", W),  # relative error 5e-4 is too far (Qwen2.5-Math rel_tol 1e-4)
    (box("1.732"), "\\sqrt{3}", C),  # MARIO_EVAL: 1.732 ~ sqrt(3)
    (box("1.7"), "\\sqrt{3}", W),  # too coarse
    (box("125.66"), "40\\pi", C),  # relative 1e-4 (MARIO_EVAL: 40 pi ~ 125.663)
    (box("125.6"), "40\\pi", W),  # relative 5e-4
    (box("0.8660254"), "\\frac{\\sqrt{3}}{2}", C),  # 6-decimal rounding (math-verify float_rounding=6)
    (box("0.866"), "\\frac{\\sqrt{3}}{2}", C),  # relative 1e-5
    (box("0.87"), "\\frac{\\sqrt{3}}{2}", W),  # relative 5e-3
    (box("2.7183"), "e", C),  # Euler's number, relative 1e-4
    (box("2.7"), "e", W),  # too coarse
]

FRACTIONS = [
    (line("\\frac{1}{2}"), "0.5", C),  # exact value (math-verify)
    (line("0.5"), "\\frac{1}{2}", C),  # exact value
    (line("1/2"), "\\frac{1}{2}", C),  # slash fraction (MATH is_equiv test_half)
    (line("\\dfrac{1}{2}"), "1/2", C),  # \dfrac is \frac (MATH is_equiv)
    (line("\\tfrac{3}{4}"), "0.75", C),  # \tfrac is \frac
    (line("\\frac34"), "\\frac{3}{4}", C),  # \frac34 shorthand (MATH is_equiv _fix_fracs)
    (line("\\frac{2}{4}"), "\\frac{1}{2}", C),  # unreduced fraction, same value
    (line("\\frac{-1}{2}"), "-\\frac{1}{2}", C),  # sign inside
    (line("-\\frac{1}{2}"), "-0.5", C),  # negative fraction
    (line("\\frac{1}{2}"), "-\\frac{1}{2}", W),  # sign
    (line("\\frac{2}{1}"), "\\frac{1}{2}", W),  # inverted
    (line("\\frac{14}{3}"), "\\frac{13}{3}", W),  # one off
    (line("0.333"), "\\frac{1}{3}", W),  # 3 digits are too few (math-verify, Qwen2.5-Math)
    (line("0.3333"), "\\frac{1}{3}", C),  # relative 1e-4 (Qwen2.5-Math rel_tol)
    (line("0.333333"), "\\frac{1}{3}", C),  # 6-decimal rounding (math-verify float_rounding=6)
    (line("0.33"), "\\frac{1}{3}", W),  # relative 1e-2
    (line("0.1428"), "\\frac{1}{7}", W),  # relative 4e-4
    (line("0.142857"), "\\frac{1}{7}", C),  # 6-decimal rounding
    (line("0.25"), "\\frac{1}{4}", C),  # terminating decimal: exact
    (line("0.2"), "\\frac{1}{4}", W),  # wrong value
    (line("1 1/2"), "1.5", C),  # mixed number with a space (MARIO_EVAL; issue 10: `1 1/2` is not `11/2`)
    (line("1\\frac{1}{2}"), "\\frac{3}{2}", C),  # LaTeX mixed number (MARIO_EVAL 1\frac12 = 1.5)
    (line("2\\frac{5}{8}"), "2.625", C),  # mixed number (MARIO_EVAL)
    (line("918\\frac{1}{2}"), "918.5", C),  # mixed number (NeMo-Skills)
    (line("1 1/2"), "\\frac{11}{2}", W),  # the merged reading is wrong (issue 10)
    (line("\\frac{1}{0}"), "0", W),  # division by zero is not a number
    (line("3/6"), "0.5", C),  # unreduced slash fraction
    (line("\\frac{\\sqrt{3}}{2}"), "\\frac{\\sqrt3}{2}", C),  # \sqrt3 shorthand (MATH _fix_sqrt)
    (line("\\frac{\\pi}{2}"), "\\frac{\\pi}{3}", W),  # different value
    (line("\\pi/2"), "\\frac{\\pi}{2}", C),  # slash with a constant (math-verify symbolic)
]

LATEX = [
    (line("\\sqrt{8}"), "2\\sqrt{2}", C),  # symbolic equality (math-verify simplify)
    (line("3\\sqrt{2}"), "\\sqrt{18}", C),  # symbolic equality
    (line("\\sqrt{2}"), "\\sqrt{3}", W),  # different radicand
    (line("2\\sqrt{3}"), "3\\sqrt{2}", W),  # swapped coefficient and radicand
    (line("10\\sqrt3+\\sqrt{4}"), "10\\sqrt{3}+\\sqrt4", C),  # \sqrt shorthand (MATH is_equiv test_sqrt)
    (line("x^2+2x+1"), "(x+1)^2", C),  # polynomial identity (math-verify simplify)
    (line("x^2+2x+1"), "(x+1)^3", W),  # different polynomial
    (line("x^2+2x+1"), "x^2 + 2*x + 1", C),  # explicit product (NeMo-Skills)
    (line("(r+5)(r+5)"), "(r+5)^2", C),  # NeMo-Skills
    (line("\\left(x-2\\right)\\left(x+2\\right)"), "(x-2)(x+2)", C),  # \left/\right (MATH is_equiv)
    (line("(x-2)(x+2)"), "(x-2)(x-2)", W),  # different factor
    (line("-q+p"), "p - q", C),  # reordered terms
    (line("q-p"), "p - q", W),  # sign
    (line("2^6 3^5"), "2^6\\cdot 3^5", C),  # a space is a product, not `2^63^5` (issue 10, MARIO_EVAL)
    (line("2^6 3^5"), "2^{63}", W),  # the merged reading is wrong (issue 10)
    (line("11z^{7}(5+11z^{7})"), "11z^7(11z^7+5)", C),  # braces and order (MARIO_EVAL)
    (line("\\frac{8-7x}{6}"), "4/3-7x/6", C),  # MARIO_EVAL
    (line("\\sec x"), "\\frac{1}{\\cos x}", C),  # trigonometric identity (MARIO_EVAL)
    (line("\\sin x"), "\\cos x", W),  # different function
    (line("\\tan x"), "\\frac{\\sin x}{\\cos x}", C),  # identity
    (line("2\\pi"), "2\\pi", C),  # identical
    (line("\\pi r^2"), "\\pi r^{2}", C),  # single-character braces are notation
    (line("\\pi r"), "\\pi", W),  # `\pi r` keeps its space: not the constant pi (issue 10)
    (line("\\infty"), "\\infty", C),  # infinity
    (line("-\\infty"), "\\infty", W),  # sign of infinity
    (line("4210_{7}"), "4210_7", C),  # base subscript braces (MARIO_EVAL)
    (line("4210_{7}"), "4210_8", W),  # different base
    (line("\\sqrt{2}\\sqrt{3}"), "\\sqrt{6}", C),  # product of radicals
    (line("\\log_2 8"), "3", C),  # logarithm
    (line("\\log_2 8"), "4", W),  # wrong value
    (line("\\binom{5}{2}"), "10", C),  # binomial coefficient
    (line("5!"), "120", C),  # factorial
    (line("\\frac{1}{2}+\\frac{1}{72}"), "\\tfrac{1}{2}+\\frac1{72}", C),  # MATH is_equiv test_dfrac
    (line("\\frac{1}{2}+2/3"), "\\tfrac{1}{2}+\\frac1{72}", W),  # MATH is_equiv test_fractions
    (line("\\frac34i"), "\\frac{3}{4}i", C),  # MATH is_equiv test_frac
]

UNITS = [
    (line("10\\text{ units}"), "10", C),  # \text unit after a value (MATH is_equiv test_units)
    (line("100\\text{ units}"), "10", W),  # MATH is_equiv test_units2
    (line("12 dollars"), "12", C),  # unit word (DAPO's unit list)
    (line("\\$12"), "12", C),  # currency sign (MATH is_equiv test_dollars)
    (line("\\$13"), "12", W),  # wrong amount
    (line("5 \\text{ cm}"), "5", C),  # MARIO_EVAL
    (line("5\\text{ cm}^2"), "5", C),  # unit with exponent (MARIO_EVAL)
    (line("5 square units"), "5", C),  # several unit words (MARIO_EVAL)
    (line("10 weeks"), "10", C),  # MARIO_EVAL
    (line("10weeks"), "10", C),  # a long unit may touch the number (MARIO_EVAL)
    (line("10cm"), "10", W),  # a short unit must be spaced: `10cm` may be 10c*m (MARIO_EVAL)
    (line("10 cm"), "10", C),  # spaced short unit (MARIO_EVAL)
    (line("10m"), "10", W),  # MARIO_EVAL: `10m` is not 10
    (line("8 \\text{ cm}^3"), "8", C),  # volume unit
    (line("45 mph"), "45", C),  # DAPO unit list
    (line("17\\text{ any text}"), "17", C),  # words after a value (NeMo-Skills)
    (line("18 \\text{ inches}"), "18", C),  # \text unit
    (line("19 \\text{ inches}"), "18", W),  # wrong value with a unit
    (line("3 hours"), "3", C),  # unit word
    (line("4 hours"), "3", W),  # wrong value with a unit
    (line("15 minutes"), "15", C),  # unit word
    (line("x \\text{ cm}"), "x", C),  # unit after a variable is still a unit word in \text
]

PERCENT = [
    (line("28\\%"), "28", C),  # percent the gold lacks (issue 10; MATH is_equiv test_percentage)
    (line("28 percent"), "28", C),  # the word (math-verify's percent synonyms)
    (line("28%"), "28", C),  # plain sign
    (line("28\\%"), "0.28", C),  # percent as a fraction of one (math-verify; MARIO_EVAL 10% == 0.1)
    (line("0.28"), "28\\%", C),  # the other direction
    (line("28"), "28\\%", C),  # gold has the sign, answer not
    (line("29\\%"), "28", W),  # wrong value
    (line("2.8\\%"), "28", W),  # neither 28 nor 0.28
    (line("28\\%"), "0.028", W),  # off by ten
    (line("50\\%"), "\\frac{1}{2}", C),  # percent against a fraction
    (line("28 pct"), "28\\%", C),  # math-verify's "pct"
    (line("28 percentage"), "28\\%", C),  # math-verify's "percentage"
]

DEGREES = [
    (line("30^\\circ"), "30", C),  # degrees the gold lacks (issue 10)
    (line("30^{\\circ}"), "30", C),  # braced
    (line("30°"), "30", C),  # unicode degree sign
    (line("90"), "90^\\circ", C),  # gold has the sign
    (line("31^\\circ"), "30", W),  # wrong value
    (line("\\sin(90^\\circ - x)"), "\\cos x", C),  # degrees in an argument (MARIO_EVAL)
    (line("\\sin(90 - x)"), "\\cos x", W),  # without the sign it is radians
    (line("\\sin 30^\\circ"), "\\frac{1}{2}", C),  # sin of 30 degrees
    (line("\\sin 30"), "\\frac{1}{2}", W),  # sin of 30 radians
    (line("\\cos 60^{\\circ}"), "0.5", C),  # cos of 60 degrees
]

SETS = [
    (line("\\{1,2\\}"), "\\{2,1\\}", C),  # sets are unordered (math-verify FiniteSet)
    (line("\\{1,2\\}"), "\\{1,3\\}", W),  # different element
    (line("\\{1,2\\}"), "\\{1,2,3\\}", W),  # missing element
    (line("\\{1,2,3\\}"), "\\{1,2\\}", W),  # extra element
    (line("1, 3, 2"), "1, 2, 3", C),  # "find all" list: unordered (issue 10, MARIO_EVAL)
    (line("7, -2, -5"), "-5,-2,7", C),  # MARIO_EVAL
    (line("-5, -2, 7, \\text{ and } 8"), "-5,-2,7", W),  # an extra solution
    (line("7, -2, \\text{ and } -5"), "-5,-2,7", C),  # "and" joins list items (MARIO_EVAL)
    (line("1, 2"), "1, 2, 3", W),  # a solution missing
    (line("2, 2"), "2", W),  # a list is not one value
    (line("2"), "2, 3", W),  # one of two solutions is not the answer
    (line("\\sqrt{67}"), "\\sqrt{67},-\\sqrt{85}", W),  # NeMo-Skills
    (line("\\{5\\}"), "5", C),  # a one-element set is its element (math-verify singleton set)
    (line("\\{x, x-1\\}"), "\\{x-1, x\\}", C),  # symbolic elements (MARIO_EVAL)
    (line("\\{x, x+1\\}"), "\\{x-1, x\\}", W),  # a wrong symbolic element
    (line("1/3, 1.7321, 3.1416"), "\\frac13, \\sqrt3, \\pi", C),  # decimals per element (MARIO_EVAL)
    (line("1/3, 1.4142, 3.1416"), "\\frac13, \\sqrt3, \\pi", W),  # one element wrong
    (line("{1,2}"), "\\{1,2\\}", C),  # bare braces around a list read as a set (math-verify)
    (line("[2,5)"), "[2,5)", C),  # intervals: identical
    (line("(2,5]"), "[2,5)", W),  # intervals are ordered and their brackets matter
    (line("[2,5]"), "[2,5)", W),  # one end open
    (line("(5,2)"), "(2,5)", W),  # reversed interval
    (line("[0.5, \\infty)"), "[\\frac{1}{2}, \\infty)", C),  # endpoints by value (MARIO_EVAL)
    (line("x \\in [0.5, \\infty)"), "[1/2, \\infty)", C),  # a lone variable in a set (MARIO_EVAL)
    (line("[-3,2]"), "(-3,2)", W),  # MARIO_EVAL
    (line("(-\\infty, 1) \\cup (2, \\infty)"), "(-\\infty,1)\\cup(2,\\infty)", C),  # union, spacing
    (line("(-\\infty, 1) \\cup (3, \\infty)"), "(-\\infty,1)\\cup(2,\\infty)", W),  # wrong endpoint
    (line("(-\\infty, 2]"), "(-\\infty, 2)", W),  # closed vs open end
    (line("1 \\pm \\sqrt{2}"), "1+\\sqrt2, 1-\\sqrt2", C),  # plus-minus is both values
    (line("1 \\pm \\sqrt{3}"), "1+\\sqrt2, 1-\\sqrt2", W),  # wrong radicand
    (line("\\pm 2021"), "-2021, 2021", C),  # plus-minus alone (math-verify)
    (line("\\emptyset"), "\\emptyset", C),  # the empty set
    (line("0.1, 4, 2"), "4, .1, 2", C),  # elements by value, unordered (issue 10)
]

TUPLES = [
    (line("(1,2)"), "(1, 2)", C),  # spacing
    (line("(2,1)"), "(1,2)", W),  # tuples are ordered (math-verify Tuple)
    (line("(3, \\frac{\\pi}{2})"), "\\left( 3, \\frac{\\pi}{2} \\right)", C),  # a point in polar coordinates
    (line("(3, \\frac{\\pi}{3})"), "\\left( 3, \\frac{\\pi}{2} \\right)", W),  # wrong angle
    (line("(1, 2, 3)"), "(1, 2)", W),  # different length
    (line("(0.5, 1)"), "(\\frac{1}{2}, 1)", C),  # coordinates by value
    (line("(-1, 2)"), "(1, 2)", W),  # sign of one coordinate
    (line("1, 2"), "(1, 2)", C),  # a bare pair against a tuple: in order (math-verify)
    (line("2, 1"), "(1, 2)", W),  # in order
    (line("(x, y) = (3, 2)"), "(3, 2)", C),  # a tuple of lone variables assigned
    (line("(3, 2)"), "(p,q)=(3,2)", C),  # gold assigns the tuple (math-verify)
    (line("(2, 3)"), "(p,q)=(3,2)", W),  # in order
    (line("(7,11), (11,7)"), "(11,7), (7,11)", C),  # a set of pairs: unordered, each pair ordered
    (line("(7,11), (7,11)"), "(11,7), (7,11)", W),  # one pair twice is one pair
    (line("(1, 3, 2)"), "[1, 2, 3]", W),  # MARIO_EVAL: [1,2,3] vs (1,3,2)
    (line("[x, 1 + x]"), "[x, x + 1]", C),  # ordered lists, symbolic entries (MARIO_EVAL)
    (line("[x + 1, x]"), "[x, x + 1]", W),  # MARIO_EVAL
    (line("(37,3,3,13), (3,3,2,3)"), "(3,3,2,3),(37,3,3,13)", C),  # a set of quadruples
    (line("(37,3,3,13), (3,3,3,2)"), "(3,3,2,3),(37,3,3,13)", W),  # one quadruple reordered
    (line("(1, \\sqrt{2})"), "(1, \\sqrt{2})", C),  # identical
]

def env(name: str, *rows: str) -> str:
    return f"\\begin{{{name}}}" + " \\\\ ".join(rows) + f"\\end{{{name}}}"


def pm(*rows: str) -> str:
    return env("pmatrix", *rows)


SYSTEM = env("cases", "a+b=\\frac12", "a-b=\\sqrt3")

MATRICES = [
    (line(pm("1&2", "3&4")), pm("1 & 2", "3 & 4"), C),  # rows survive normalization (issue 10)
    (line(pm("1&2", "4&3")), pm("1 & 2", "3 & 4"), W),  # entries compare one by one
    (line(pm("1&3", "2&4")), pm("1 & 2", "3 & 4"), W),  # the transpose
    (line(pm("1&2&3&4")), pm("1 & 2", "3 & 4"), W),  # another shape
    (line(env("bmatrix", "1&2", "3&4")), pm("1&2", "3&4"), C),  # bmatrix is pmatrix (NeMo-Skills)
    (line(pm("1 & 0.5", "1/3 & 4")), pm("1 & 1/2", "1/3 & 4"), C),  # entry-wise by value (MARIO_EVAL)
    (line(pm("1 & 0.6", "1/3 & 4")), pm("1 & 1/2", "1/3 & 4"), W),  # one entry wrong
    (line(pm("6", "3", "0")), pm("6", "3", "0"), C),  # a column vector
    (line(pm("6", "0", "3")), pm("6", "3", "0"), W),  # entries swapped
    (line(pm("\\sqrt{8}", "1")), pm("2\\sqrt2", "1"), C),  # symbolic entries
    (line(pm("\\sqrt{8}", "1")), pm("2\\sqrt3", "1"), W),  # a wrong symbolic entry
    (line("[0.5, 1]"), env("matrix", "\\frac12", "1"), C),  # a vector as a list (MARIO_EVAL)
    (line("[1, 0.5]"), env("matrix", "\\frac12", "1"), W),  # in order
    (line(env("cases", "a+b=0.5", "a-b=1.7321")), SYSTEM, C),  # a system, row by row (MARIO_EVAL)
    (line(env("cases", "a+b=0.5", "a-b=1.5")), SYSTEM, W),  # one equation wrong
    (line(pm("1&0", "0&1")), pm("1&0", "0&-1"), W),  # a sign
]

RELATIONS = [
    (line("x = 5"), "5", C),  # a lone variable's assignment against a value (issue 10)
    (line("5"), "x = 5", C),  # gold assignment against a value (math-verify)
    (line("n = 12"), "12", C),  # any lone variable
    (line("x_1 = 3"), "3", C),  # a subscripted variable
    (line("\\theta = \\frac{\\pi}{4}"), "\\frac{\\pi}{4}", C),  # a Greek variable
    (line("2x+3y=6"), "x=6", W),  # an equation is compared whole, not by its right side (issue 10)
    (line("2x+3y=6"), "6", W),  # an equation is not a value (math-verify would accept it)
    (line("\\sin x = \\frac{42}{59}"), "\\cos x = \\frac{42}{59}", W),  # issue 10 / MARIO_EVAL
    (line("\\sin(x)=\\frac{42}{59}"), "\\sin x=\\frac{42}{59}", C),  # same equation
    (line("5x - 7y + 11z + 4 = 0"), "x + y - z + 2 = 0", W),  # MATH is_equiv test_expression
    (line("x = 6"), "x = 5", W),  # same variable, other value
    (line("y = 5"), "x = 5", W),  # the variable matters when both assign (math-verify: x=1 != y=1)
    (line("2x = 12"), "x = 6", C),  # equivalent equations (math-verify solve)
    (line("y = 2x + 3"), "y = 3 + 2x", C),  # reordered right side
    (line("2x + 3 = y"), "y = 2x + 3", C),  # sides swapped (math-verify flipped relation)
    (line("y = 2x + 4"), "y = 2x + 3", W),  # different line
    (line("2x + 3"), "f(x) = 2x + 3", C),  # function notation as a lone variable (MARIO_EVAL)
    (line("y = 2x + 3"), "f(x) = 2x + 3", C),  # y = f(x) (MARIO_EVAL)
    (line("f(x) = 2x + 4"), "f(x) = 2x + 3", W),  # different function
    (line("x = 1, y = 2, z = 3"), "1, 2, 3", C),  # assignment list element-wise (MARIO_EVAL coordinates)
    (line("x = 1, y = 2, z = 4"), "1, 2, 3", W),  # one value wrong
    (line("x=1, y=2"), "x=1, y=2", C),  # same assignment list
    (line("x=2, y=1"), "x=1, y=2", W),  # values swapped between variables
    (line("a=1, b=2"), "2", W),  # two assignments are not one value (DAPO kept the last `=`)
    (line("x = 2, x = -3"), "x = 2, x = -3", C),  # rllm: both roots
    (line("x = -3, x = 2"), "x = 2, x = -3", C),  # roots in any order
    (line("x = 2"), "x = 2, x = -3", W),  # a root missing
    (line("x \\le 5"), "x \\leq 5", C),  # \le is \leq
    (line("x \\leq 5"), "x < 5", W),  # strict vs non-strict
    (line("5 \\ge x"), "x \\le 5", C),  # flipped inequality (math-verify INVERSE_RELATIONS)
    (line("x \\ge 5"), "x \\le 5", W),  # direction
    (line("x > 5"), "x \\gt 5", C),  # \gt is >
    (line("x >= 5"), "x \\geq 5", C),  # ASCII >=
    (line("x \\neq 3"), "x \\ne 3", C),  # \neq is \ne
    (line("x \\ne 3"), "x = 3", W),  # not equal is not equal to
    (line("\\frac{\\sqrt{3}}{3} \\approx 0.577"), "\\frac{\\sqrt{3}}{3}", C),  # before \approx (NeMo-Skills)
    (line("x \\approx 11"), "11", C),  # an approximate value of a lone variable (math-verify)
    (line("x = 1/3 \\approx 0.33"), "x = 1/3", C),  # the exact value is the answer
    (line("AB = 4"), "4", C),  # a named length is a quantity (math-verify numina cases)
    (line("|AB| = 1"), "1", C),  # a named quantity
    (line("4"), "AB=4", C),  # gold names the quantity
    (line("5"), "AB=4", W),  # wrong value
    (line("x = 2 + 3 = 5"), "5", C),  # a chain of equalities assigning x (math-verify assignment chain)
    (line("(-793, 10)"), "-793 < a < 10", C),  # interval vs chain (math-verify as_set)
    (line("(-793, 11)"), "-793 < a < 10", W),  # wrong end
]

CHOICES = [
    (line("B"), "B", C),  # a choice letter
    (line("(B)"), "B", C),  # with parentheses
    (line("\\text{(B)}"), "B", C),  # in \text
    (line("B"), "\\text{(B)}", C),  # gold in \text (issue 10)
    (line("(b)"), "(B)", C),  # lower-case in parentheses
    (line("B. 12"), "B", C),  # the letter with its option text
    (line("(B) 12"), "(B)", C),  # the letter with its option text
    (box("\\textbf{(B)}"), "B", C),  # bold letter in a box
    (line("C"), "B", W),  # another letter
    (line("(C)"), "\\text{(B)}", W),  # another letter
    (line("(D) 12"), "(B)", W),  # another option
    (line("\\text{(A)}"), "(B)", W),  # another letter in \text
    (line("**B**"), "B", C),  # markdown bold
    (line("E"), "D", W),  # another letter
    (line("A"), "A", C),  # the same letter
]

FORMATS = [
    ("Reasoning.\nAnswer: 42", "42", C),  # DAPO's Answer: line
    ("Reasoning.\n**Answer:** 25", "25", C),  # bold markdown (issue 10)
    ("Reasoning.\n**Answer: 25**", "25", C),  # bold around the line
    ("Reasoning.\n**Answer:** 24", "25", W),  # bold, wrong value
    ("Final Answer: The final answer is 18. I hope it is correct.", "18", C),  # Minerva without $ (issue 10)
    ("Final Answer: The final answer is $18$. I hope it is correct.", "18", C),  # Minerva with $
    ("Final Answer: The final answer is $17$. I hope it is correct.", "18", W),  # Minerva, wrong value
    ("Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.", "0.5", C),  # Minerva
    ("We add them up, so the answer is 7.", "7", C),  # the last sentence (issue 10)
    ("We add them up, so the answer is 8.", "7", W),  # last sentence, wrong value
    ("Thus the final answer is $\\frac{3}{4}$.", "0.75", C),  # "final answer is" with math
    ("Answer: The number of ways is 25.", "25", C),  # an Answer: line with prose (issue 10)
    ("Answer: The volume of $ABCD$ is 120.", "120", C),  # prose with math in it
    ("Answer: 25 ways", "25", C),  # a unit word after the value
    ("Answer: 25, because 5 squared is 25.", "25", C),  # a reason after the value
    ("Answer: 26, because 5 squared is 25.", "25", W),  # a reason after a wrong value
    ("Reasoning.\n\\boxed{12}", "12", C),  # the last box
    ("\\boxed{11} first, then \\boxed{12}", "12", C),  # the last box wins when the gold has one part
    ("\\boxed{12} first, then \\boxed{11}", "12", W),  # the last box wins
    ("Reasoning.\n\\fbox{12}", "12", C),  # \fbox (issue 10)
    ("Answer: 3\nFinally, \\boxed{4}", "3", C),  # an Answer: line beats a later box (DAPO)
    ("Answer: 1\nWait.\nAnswer: 2", "2", C),  # the last Answer: line
    ("Answer: 1\nWait.\nAnswer: 2", "1", W),  # the last Answer: line
    ("Answer:\n42", "42", C),  # the value on the next line (DAPO's \s*)
    ("Answer: \\[ 7 \\]", "7", C),  # display math
    ("Answer: $$\n5\n$$", "5", C),  # display math over lines
    ("Reasoning.\nThe solution is $x = 3$.", "3", C),  # no anchor: the last math segment (math-verify)
    ("Reasoning.\nThe solution is $x = 4$.", "3", W),  # the last math segment, wrong
    ("So the probability is 2/3.", "\\frac{2}{3}", C),  # no anchor: the last number (math-verify expr)
    ("So the probability is 3/4.", "\\frac{2}{3}", W),  # the last number, wrong
    ("The answer is 2/3. <|im_start|>user", "2/3", C),  # a chat token after the answer
    ("", "5", N),  # empty response
    ("I don't know.", "5", N),  # nothing that is an answer
    ("Let me think about \\boxed{5", "5", N),  # a box cut off: a truncated response
    ("Answer:", "5", N),  # an empty Answer: line
    ("\\boxed{}", "5", N),  # an empty box
    ("Answer: \\boxed{\\frac{1}{2}}", "0.5", C),  # a box in the Answer: line
    ("Answer: $\\$18$", "18", C),  # an escaped dollar inside math
    ("So $x=\\boxed{5}$.", "5", C),  # a box inside an equation
    ("Answer: 42\n", "42", C),  # trailing newline
]

MULTI_PART = [
    ("So \\boxed{2} and \\boxed{3}.", "2, 3", C),  # boxes form one multi-part answer (issue 10)
    ("So \\boxed{3} and \\boxed{2}.", "2, 3", C),  # unordered parts
    ("So \\boxed{2} and \\boxed{4}.", "2, 3", W),  # one part wrong
    ("First \\boxed{2}. Then more work. Then \\boxed{2, 3}.", "2, 3", C),  # the last box has both parts
    ("\\boxed{1}, \\boxed{2}, \\boxed{3}", "\\{1,2,3\\}", C),  # three boxes, a set gold
    ("\\boxed{1}, \\boxed{2}", "\\{1,2,3\\}", W),  # one missing
    ("So \\boxed{2} and \\boxed{3}.", "3", C),  # a one-part gold takes the last box
    ("So \\boxed{2} and \\boxed{3}.", "2", W),  # a one-part gold takes the last box
    ("Answer: $1$ and $2$", "1, 2", C),  # math segments joined by "and" (math-verify)
    ("Answer: $1$ and $3$", "1, 2", W),  # one wrong
    ("Answer: $x = 2$ or $x = -2$", "\\pm 2", C),  # both roots with "or"
    ("Answer: $x = 2$ or $x = 3$", "\\pm 2", W),  # one root wrong
]

TEXT = [
    (line("\\text{Evelyn}"), "\\text{Evelyn}", C),  # text answers
    (line("Evelyn"), "\\text{Evelyn}", C),  # with or without \text
    (line("evelyn"), "\\text{Evelyn}", C),  # text answers compare case-blind
    (line("Alice"), "\\text{Evelyn}", W),  # another name
    (line("odd"), "\\text{odd}", C),  # a word answer
    (line("\\text{oddd}"), "odd", W),  # NeMo-Skills: a misspelling is wrong
    (line("even"), "\\text{odd}", W),  # the other word
    (line("Yes"), "yes", C),  # case
    (line("No"), "yes", W),  # the other answer
    (line("\\mathrm{E}"), "E", C),  # \mathrm (NeMo-Skills)
]

LOOK_ALIKES = [
    (line("\\frac{1}{2}"), "\\frac{1}{3}", W),  # one digit
    (line("\\sqrt{8}"), "3\\sqrt{2}", W),  # close radical
    (line("x^2+2x+1"), "(x+2)^2", W),  # close polynomial
    (line("2x+3"), "2x-3", W),  # sign
    (line("\\frac{3}{2}"), "\\frac{2}{3}", W),  # inverted
    (line("x"), "y", W),  # another variable
    (line("12"), "21", W),  # digits swapped
    (line("1000"), "100", W),  # magnitude
    (line("3.5"), "\\frac{5}{2}", W),  # close decimal
    (line("-\\frac{5}{2}"), "\\frac{5}{2}", W),  # sign of a fraction
    (line("\\frac{\\pi}{6}"), "30", W),  # radians vs the degree value without its sign
    (line("2\\pi"), "\\pi", W),  # factor
    (line("(1,2)"), "[1,2]", W),  # open vs closed
    (line("\\{1,2\\}"), "(1,2,3)", W),  # set vs triple
    (line("x \\le 5"), "x \\ge 5", W),  # direction
    (line("x = 5"), "x = -5", W),  # sign in an assignment
    (line("y = x^2"), "y = x^3", W),  # exponent
    (line("banana"), "5", W),  # a word for a number
    (line("5 apples"), "6", W),  # a word and a wrong value
    (line("\\infty"), "0", W),  # infinity is no number
    (line("\\frac{1}{2}"), "0.51", W),  # close decimal gold
    (line("0.51"), "\\frac{1}{2}", W),  # close decimal answer
    (line("1.41"), "\\sqrt{2}", W),  # three digits are too few
    (line("(1, 2), (3, 4)"), "(1, 2), (3, 5)", W),  # one pair wrong
    (line("\\begin{pmatrix}1\\\\2\\end{pmatrix}"), "\\begin{pmatrix}2\\\\1\\end{pmatrix}", W),  # vector order
    (line("\\{2,3\\}"), "\\{2,3,3,4\\}", W),  # a set with a missing element (duplicates collapse)
    (line("\\{2,3,4\\}"), "\\{2,3,3,4\\}", C),  # duplicates collapse in a set (math-verify FiniteSet)
    (line("2x+3y=6"), "2x+3y=7", W),  # constant of an equation
    (line("a+b=\\frac12"), "a+b=\\frac13", W),  # value in an equation
    (line("f(x) = x^2"), "g(x) = x^2", C),  # different function names are lone variables with the same value
]

CATEGORIES = {
    "numbers": NUMBERS, "fractions": FRACTIONS, "latex": LATEX, "units": UNITS, "percent": PERCENT,
    "degrees": DEGREES, "sets_intervals": SETS, "tuples": TUPLES, "matrices": MATRICES,
    "relations": RELATIONS,
    "choices": CHOICES, "formats": FORMATS, "multi_part": MULTI_PART, "text": TEXT,
    "look_alikes": LOOK_ALIKES,
}
TABLE = [(name, *case) for name, cases in CATEGORIES.items() for case in cases]
IDS = [f"{name}-{i}" for name, cases in CATEGORIES.items() for i in range(len(cases))]


def test_table_size_and_balance():
    assert len(TABLE) >= 300
    assert sum(verdict == W for *_, verdict in TABLE) >= len(TABLE) / 3
    assert {verdict for *_, verdict in TABLE} == {C, W, N}


@pytest.fixture(scope="module")
def verdicts():
    results = check_answers([r for _, r, _, _ in TABLE], [g for _, _, g, _ in TABLE], workers=2)
    return [result.verdict for result in results]


@pytest.mark.parametrize("index", range(len(TABLE)), ids=IDS)
def test_checker_matches_the_table(index, verdicts):
    category, response, gold, expected = TABLE[index]
    assert verdicts[index] == expected, (category, response[-120:], gold)


def plain_math_verify(response: str, gold: str) -> str:
    """math-verify 0.9's `parse` + `verify` with their defaults; a bare gold is boxed first, as verl's
    math-verify reward does."""
    from math_verify import parse, verify

    gold_text = gold if "$" in gold or "\\boxed" in gold else f"\\boxed{{{gold}}}"
    pred = parse(response)
    if not pred:
        return N
    return C if verify(parse(gold_text), pred) else W


def test_checker_agrees_with_the_table_more_often_than_plain_math_verify(verdicts):
    """Side by side on the same table: the checker may not disagree with it more often than math-verify
    does (math-verify's no_answer counts as a disagreement only where the table says an answer is
    there)."""
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    ours_wrong = sum(got != expected for got, (*_, expected) in zip(verdicts, TABLE, strict=True))
    theirs = [plain_math_verify(response, gold) for _, response, gold, _ in TABLE]
    theirs_wrong = sum(
        (got == C) != (expected == C) for got, (*_, expected) in zip(theirs, TABLE, strict=True)
    )
    assert theirs_wrong > 0  # the comparison can fail: math-verify does get some of these wrong
    assert ours_wrong <= theirs_wrong, (ours_wrong, theirs_wrong)
