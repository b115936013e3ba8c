"""Final-answer extraction and normalization: pure string functions, no sympy, no I/O.

The rules follow DAPO's reward (verl `utils/reward_score/math_dapo.py`, itself after Minerva, Lewkowycz
et al. 2022): the answer is the text after the last `Answer:`; it is normalized by taking the part after
the last `=`, the content of a `$...$` pair, unwrapping `\\text{}`/`\\boxed{}`, dropping units and
spacing macros, expanding `\\frac12`/`\\sqrt2` shorthand and removing thousands separators. Deviations
from DAPO, each because DAPO's rule silently corrupts answers:

1. words are removed only as whole words (DAPO deletes the substrings "a " and "an " anywhere, so
   "banana " loses letters, and "cm" inside "\\cmd");
2. when there is no `Answer:` line, the last `\\boxed{}` is used (DAPO's loose mode scores it 0), with
   brace matching that honours escaped braces;
3. markdown bold/italics around the answer, a trailing period and control characters are dropped;
   `\\dfrac`/`\\tfrac` become `\\frac`; `\\left`/`\\right` and LaTeX spacing macros go; a trailing `%`
   goes (50% == 50).
"""

from __future__ import annotations

import re

# Where the search for the last `Answer:` starts; the rest of a long response is read only if needed.
TAIL_CHARS = 20_000
# A final answer longer than this is not an answer (MATH-500's longest gold answer has 159 chars).
MAX_ANSWER_CHARS = 1_000

# No two adjacent unbounded runs can trade characters before the ':', so a failed match costs linear
# time ("answer" followed by a million spaces must not take minutes).
_ANSWER_LINE = re.compile(r"answer\s*(?:\*\*\s*)?:\s*(?:\*\*)?[ \t]*([^\n]*)", re.IGNORECASE)
_ANSWER_NEXT_LINE = re.compile(r"\s*\n\s*([^\n]*)")
_DISPLAY_CLOSERS = {"\\[": "\\]", "$$": "$$", "\\(": "\\)"}

_UNIT_WORDS = (
    "square", "ways", "integers", "dollars", "dollar", "mph", "inches", "inch", "hours", "hour", "km",
    "units", "unit", "points", "feet", "foot", "minutes", "minute", "digits", "cents", "cent", "degrees",
    "degree", "cm", "gm", "pounds", "meters", "meter", "meals", "edges", "students", "multiples",
    "seconds", "second", "days", "day", "miles", "mile", "years", "year",
)
_UNITS = re.compile(  # "cm^2" goes with its exponent
    r"(?<![\\A-Za-z])(?:" + "|".join(sorted(_UNIT_WORDS, key=len, reverse=True)) + r")(?![A-Za-z])"
    r"(?:\s*\^\s*\{?\s*[23]\s*\}?)?"
)
_TEXT_WRAPPERS = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_SPACING = re.compile(r"\\[,;:! ]|\\q?quad\b|~")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°")
_FRAC_SHORTHAND = re.compile(r"\\frac\s*([0-9A-Za-z])\s*([0-9A-Za-z])")
_FRAC_HALF_SHORTHAND = re.compile(r"\\frac\s*\{([^{}]*)\}\s*([0-9A-Za-z])")
_SQRT_SHORTHAND = re.compile(r"\\sqrt\s*([0-9A-Za-z])")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # invisible; NUL bytes in model output
_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)")
_DOLLAR_PAIR = re.compile(r"\$+([^$]+?)\$+", re.DOTALL)
_UNICODE_MATH = str.maketrans({"π": "\\pi ", "−": "-", "×": "\\times ", "·": "\\cdot ", "∞": "\\infty ",
                               "√": "\\sqrt ", "≤": "\\le ", "≥": "\\ge ", "\u2009": " ", "\xa0": " "})


def find_closing_brace(text: str, open_index: int, end: int | None = None) -> int:
    """Index of the `}` closing the `{` at `open_index` (searching before `end`), or -1; `\\{` and
    `\\}` do not count. A plain loop: linear time, no recursion."""
    depth = 0
    i = open_index
    n = len(text) if end is None else end
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def last_boxed(text: str) -> str | None:
    """Content of the last complete `\\boxed{...}` (or `\\fbox{...}`) in `text`, else None.

    If a box never closes, every brace after it stays open too, so an earlier box can only close
    before it starts: each search stops where the previous unclosed box began, which keeps the whole
    scan linear even for `\\boxed{` repeated a million times.
    """
    close_limit = len(text)
    for box in reversed(list(_BOX_COMMAND.finditer(text))):
        brace = box.end()
        while brace < len(text) and text[brace] == " ":
            brace += 1
        if brace < len(text) and text[brace] == "{":
            close = find_closing_brace(text, brace, close_limit)
            if close >= 0:
                return text[brace + 1 : close]
            close_limit = box.start()
    return None


def _last_answer_line(response: str) -> re.Match | None:
    """Last `Answer:` match: a match in the tail is the last one overall, so the whole text is only
    scanned when the tail has none."""
    for start in (max(0, len(response) - TAIL_CHARS), 0):
        last = None
        for last in _ANSWER_LINE.finditer(response, start):  # noqa: B007 (keep the last)
            pass
        if last is not None or start == 0:
            return last
    return None


def extract_answer(response: str) -> str | None:
    """The raw final answer of a response: the last `Answer:` line, else the last `\\boxed{}`.

    An `Answer:` with nothing after it on its line takes the next non-empty line (DAPO's `\\s*` spans
    newlines too). Returns None when there is no answer, or only an empty one.
    """
    last = _last_answer_line(response)
    if last is not None:
        content = last.group(1)
        if not content.strip(" \t*_"):
            following = _ANSWER_NEXT_LINE.match(response, last.end())
            content = following.group(1) if following else ""
        opener = content.strip()
        if opener in _DISPLAY_CLOSERS:  # "Answer: \\[" then a display block over several lines
            close = response.find(_DISPLAY_CLOSERS[opener], last.end(1))
            if close >= 0:
                content = response[last.start(1) : close + len(_DISPLAY_CLOSERS[opener])]
        if content.strip(" \t*_."):
            return content.strip()
    boxed = last_boxed(response)
    if boxed is not None and boxed.strip():
        return boxed.strip()
    return None


def normalize_answer(answer: str) -> str:
    """Canonical string form of a final answer (gold or extracted); idempotent."""
    text = _CONTROL_CHARS.sub("", answer.translate(_UNICODE_MATH)).strip()
    if len(text) > MAX_ANSWER_CHARS:
        return text[:MAX_ANSWER_CHARS]
    boxed = last_boxed(text)
    if boxed is not None:
        text = boxed
    text = text.replace("\\$", "")  # an escaped dollar is currency, not math mode
    for _ in range(2):  # markdown emphasis may sit outside or inside $...$
        text = text.strip().strip("*_").strip()
        pair = _DOLLAR_PAIR.search(text)
        if pair:
            text = pair.group(1)
        text = text.replace("\\(", "").replace("\\)", "").replace("\\[", "").replace("\\]", "")
    text = text.replace("$", "")
    # `x = 5` and `\text{so } n=5` answer 5; a relation like `x \le 5` has no bare `=` and stays whole.
    if "=" in text:
        after = text.rsplit("=", 1)[1]
        if after.strip():
            text = after
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = text.replace("\\left", "").replace("\\right", "").replace("\\displaystyle", "")
    text = _DEGREES.sub("", text)
    text = text.replace("\\%", "").rstrip().removesuffix("%")
    for _ in range(3):  # nested wrappers: \text{\textbf{5}}
        text = _TEXT_WRAPPERS.sub(r"\1", text)
    text = _UNITS.sub("", text)
    text = _SPACING.sub("", text)
    text = text.replace("{,}", ",")
    text = _FRAC_SHORTHAND.sub(r"\\frac{\1}{\2}", text)
    text = _FRAC_HALF_SHORTHAND.sub(r"\\frac{\1}{\2}", text)
    text = _SQRT_SHORTHAND.sub(r"\\sqrt{\1}", text)
    text = "".join(text.split())
    text = text.rstrip(".").strip("*_")
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    return text
