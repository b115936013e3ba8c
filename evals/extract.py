"""Final-answer extraction, normalization and structure: pure string functions, no sympy, no I/O.

`extract_answer` finds the final answer of a response, `normalize_answer` rewrites its notation to one
canonical form, and `parse_structure` splits it into lists, matrices and relations for compare.py.

Normalization (`normalize_answer`) only rewrites notation, never meaning. Deviations from DAPO's
`normalize_final_answer`, each because DAPO's rule silently corrupts answers:

1. nothing is cut at an `=`: `2x+3y=6` stays an equation (DAPO keeps `6`); `parse_structure` splits a
   relation into its sides and the checker decides what may be dropped (a lone variable's `x =`);
2. whitespace goes only where no two tokens merge: `1 1/2` stays a mixed number and `2^6 3^5` a
   product (DAPO's deletion makes them `11/2` and `2^63^5`), `\\sin x` keeps its space;
3. `\\\\` (matrix and `cases` rows) and `&` survive;
4. words are removed only as whole words after a value (DAPO deletes "a " anywhere); a unit of one or
   two letters needs a space before it (`10 m` is 10, `10m` may be a product: MARIO_EVAL's rule);
5. degrees `^\\circ` go, except where a trigonometric function reads them: there `30^\\circ` becomes
   `\\frac{30\\pi}{180}` (math-verify reads `\\sin(90^\\circ-x)` as sin(90-x));
6. a percent sign is kept as `\\%` (the checker accepts 28% for 28 and for 0.28, as math-verify does);
7. thousands separators go only where unambiguous: `1,000`, `1{,}000`, `1,\\!000` and `70 000` are
   numbers, `32, 349` is a list of two.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

# Where the search for the last `Answer:` starts; the rest of a long response is read only if needed.
TAIL_CHARS = 20_000
# A final answer longer than this is not an answer (MATH-500's longest gold answer has 159 chars).
MAX_ANSWER_CHARS = 1_000
MAX_DEPTH = 12  # nesting levels of lists/relations parsed
# Where an answer without any anchor is looked for (the end of the response).
NO_ANCHOR_CHARS = 2_000
# Lists longer than this are not split into items (bounds the cost of an unordered comparison).
MAX_LIST_ITEMS = 32

# No two adjacent unbounded runs can trade characters before the ':', so a failed match costs linear
# time ("answer" followed by a million spaces must not take minutes).
_ANSWER_LINE = re.compile(r"answer\s*(?:\*\*\s*)?:\s*(?:\*\*)?[ \t]*([^\n]*)", re.IGNORECASE)
_ANSWER_NEXT_LINE = re.compile(r"\s*\n\s*([^\n]*)")
_ANSWER_SENTENCE = re.compile(r"\banswer\s+(?:is|=)[ \t]*:?[ \t]*([^\n]{1,300})", re.IGNORECASE)
_DISPLAY_CLOSERS = {"\\[": "\\]", "$$": "$$", "\\(": "\\)"}
_HOPE = re.compile(r"\.?\s*I hope it is correct\.?\s*$", re.IGNORECASE)
# Prose before the value ("The final answer is", "The volume of $ABCD$ is"): a clause that starts with
# two words and ends in a verb; math segments inside it are masked first.
_PROSE_PREFIX = re.compile(
    r"^[A-Za-z']+\s+[A-Za-z'][^\n]{0,200}?\s(?:is|are|equals|be|get|gives|obtain)\s*:?\s+(?=\S)",
    re.IGNORECASE,
)
_PROSE_START = re.compile(r"[A-Za-z']+\s+[A-Za-z']+\s+[A-Za-z']+\s")
_SENTENCE_END = re.compile(
    r"\.\s+(?=[A-Z])|\.\s*$|[;!?]\s|,?\s+(?:because|since|which|where|as|so|when)\s", re.IGNORECASE
)
# Code in a final paragraph without an anchor: a lambda, a function definition, an import, a dunder
# attribute or call (not LaTeX's `\lambda`, nor Markdown's `__bold__`).
_CODE = re.compile(
    r"(?<!\\)\blambda\b[\w\s,*]*:|(?<!\\)\bdef\s+[A-Za-z_]\w*\s*\(|(?:^|;)\s*(?:from\s+[\w.]+\s+)?import\s+[A-Za-z_]"
    r"|\.__[A-Za-z]\w*__|\b__[A-Za-z]\w*__\s*\(",
    re.MULTILINE,
)
_CHAT_TOKEN = re.compile(r"<\|[a-z_]+\|>\s*[a-z]*$")  # `<|im_start|>user` left after an answer
# Boxes form one answer when less than 10 characters, or less than 70 with a separator, lie between
# them (math-verify 0.9 / latex2sympy2_extended `extract_boxed_content`).
_NEAR_BOXES_GAP = 70
_BOX_SEPARATOR = re.compile(r"\b(?:and|or)\b|,|;")
_MATH_SEGMENT = re.compile(  # an escaped `\$` is currency inside math, not its end
    r"\$\$((?:\\.|[^$\\])+?)\$\$|\$((?:\\.|[^$\\\n])+?)\$"
    r"|\\\(([^\n]{1,1000}?)\\\)|\\\[(.{1,1000}?)\\\]",
    re.DOTALL,
)
_SEGMENT_JOINER = re.compile(r"\s*(?:,|,?\s*\band\b|,?\s*\bor\b)\s*", re.IGNORECASE)

_UNIT_WORDS = (
    "square", "sq", "ways", "integers", "dollars", "dollar", "mph", "kmph", "inches", "inch", "hours",
    "hour", "hrs", "hr", "km", "units", "unit", "points", "point", "feet", "foot", "ft", "minutes",
    "minute", "mins", "min", "digits", "digit", "cents", "cent", "degrees", "degree", "deg", "cm", "mm",
    "m", "gm", "g", "kg", "lb", "lbs", "pounds", "pound", "meters", "meter", "metres", "metre", "meals",
    "edges", "students", "people", "multiples", "seconds", "second", "sec", "s", "days", "day", "weeks",
    "week", "months", "month", "miles", "mile", "years", "year", "liters", "liter", "litres", "litre",
    "ml", "l", "gallons", "gallon", "yards", "yard", "acres", "acre", "grams", "gram", "ounces", "oz",
    "tiles", "coins", "apples", "pages", "times", "cubic", "sides", "boxes", "books", "numbers",
)
_UNIT = "|".join(sorted(_UNIT_WORDS, key=len, reverse=True))
_LONG_UNIT = "|".join(sorted((u for u in _UNIT_WORDS if len(u) > 2), key=len, reverse=True))
_UNIT_POWER = r"(?:\s*\^\s*\{?\s*[23]\s*\}?)?"
# A trailing unit after a value; one or two letters need a space before them (MARIO_EVAL: "10 cm" is
# 10, "10cm" is not). "cm^2" goes with its exponent; several units may follow ("square units").
_TRAILING_UNITS = re.compile(
    r"(?<=[0-9})])(?:\s*(?:" + _LONG_UNIT + r")|\s+(?:" + _UNIT + r"))(?![A-Za-z])" + _UNIT_POWER
    + r"(?:\s+(?:" + _UNIT + r")(?![A-Za-z])" + _UNIT_POWER + r")*\s*$"
)
_TEXT_UNIT = re.compile(  # `5\text{ cm}^2`: a word in \text after a value
    r"(?<=[0-9}) ])\s*\\(?:text|mbox|mathrm)\s*\{\s*[A-Za-z][A-Za-z .]*\}" + _UNIT_POWER + r"\s*$"
)
_TEXT_JOINER = re.compile(r",?\s*\\text\s*\{\s*(?:and|or)\s*\}\s*")
_WORD_JOINER = re.compile(r"(?<![A-Za-z\\])\s*,?\s*\b(?:and|or)\b\s*(?![A-Za-z])")
_TEXT_WRAPPERS = re.compile(
    r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mathit|mbox|operatorname|boldsymbol)\s*"
    r"\{([^{}]*)\}"
)
_SPACING = re.compile(r"(?<!\\)\\[,;: ]|\\q?quad(?![A-Za-z])|~")  # not the `\\ ` ending a row
_NEG_SPACE = re.compile(r"(?<!\\)\\!")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°")
_NUMBER_DEGREES = re.compile(r"(\d+(?:\.\d+)?)\s*(?:\^\s*\{?\s*\\circ\s*\}?|°)")
_TRIG = re.compile(r"\\(?:arc)?(?:sin|cos|tan|sec|csc|cot)h?(?![A-Za-z])")
_PERCENT = re.compile(
    r"\s*(?:\\?%|\\text\{\s*(?:percent|percentage|pct)\s*\}|\b(?:percent|percentage|pct)\b)\s*$",
    re.IGNORECASE,
)
_FRAC_SHORTHAND = re.compile(r"\\frac\s*([0-9A-Za-z])\s*([0-9A-Za-z])")
_FRAC_HALF_SHORTHAND = re.compile(r"\\frac\s*\{([^{}]*)\}\s*([0-9A-Za-z])")
_FRAC_NUM_SHORTHAND = re.compile(r"\\frac\s*([0-9A-Za-z])\s*\{")
_SQRT_SHORTHAND = re.compile(r"\\sqrt\s*([0-9A-Za-z])")
_SINGLE_BRACED = re.compile(r"([\^_])\{([0-9A-Za-z])\}")
_FRAC_VARIANTS = re.compile(r"\\[dtc]frac(?![A-Za-z])")
_LEFT_RIGHT = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![A-Za-z])\s*\.?|\\displaystyle")
_RELATION_MACROS = (  # (pattern, re.sub template)
    (re.compile(r"\\(?:leq?|leqslant)(?![A-Za-z])|<="), r"\\le "),
    (re.compile(r"\\(?:geq?|geqslant)(?![A-Za-z])|>="), r"\\ge "),
    (re.compile(r"\\(?:neq?)(?![A-Za-z])|!="), r"\\ne "),
    (re.compile(r"\\lt(?![A-Za-z])"), "<"),
    (re.compile(r"\\gt(?![A-Za-z])"), ">"),
)
_DOUBLED_COMMAND = re.compile(r"\\\\(?=[A-Za-z]{2})")  # `\\frac` written with an escaped backslash
_DOUBLED_COMMAND_IN_ROWS = re.compile(
    r"\\\\(?=(?:begin|end|frac|dfrac|sqrt|pi|cdot|times|text|infty)(?![a-z]))"
)
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SPACED_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?: \d{3})+(?:\.\d+)?")
_LATEX_THOUSANDS = re.compile(r"(?<=\d)(?:\{,\}|,\\!\s*)(?=\d{3})")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # invisible; NUL bytes in model output
_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)")
_UNCLOSED_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{([^{}]*\\)\}")  # `\boxed{185\}`
_DOLLAR_PAIR = re.compile(r"\$+([^$]+?)\$+", re.DOTALL)
_UNICODE_MATH = str.maketrans({"π": "\\pi ", "−": "-", "×": "\\times ", "·": "\\cdot ", "∞": "\\infty ",
                               "√": "\\sqrt ", "≤": "\\le ", "≥": "\\ge ", "≠": "\\ne ", "\u2009": " ",
                               "\xa0": " ", "\n": " ", "\t": " ", "\r": " "})


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


def boxed_spans(text: str, limit: int = MAX_LIST_ITEMS) -> list[tuple[int, int, str]]:
    """(start, end, content) of the last `limit` complete `\\boxed{...}` / `\\fbox{...}` in `text`, in
    text order; a box nested in a later one is not listed.

    If a box never closes, every brace after it stays open too, so an earlier box can only close
    before it starts: each search stops where the previous box began, which keeps the whole scan
    linear even for `\\boxed{` repeated a million times.
    """
    found: list[tuple[int, int, str]] = []
    close_limit = len(text)
    for box in reversed(list(_BOX_COMMAND.finditer(text))):
        if box.end() > close_limit:  # nested in a box already taken
            continue
        brace = box.end()
        while brace < len(text) and text[brace] == " ":
            brace += 1
        if brace < len(text) and text[brace] == "{":
            close = find_closing_brace(text, brace, close_limit)
            if close >= 0:
                found.append((box.start(), close + 1, text[brace + 1 : close]))
                if len(found) == limit:
                    break
        close_limit = box.start()
    return found[::-1]


def boxed_contents(text: str, limit: int = MAX_LIST_ITEMS) -> list[str]:
    """Contents of the last `limit` complete boxes in `text`, in text order (see boxed_spans)."""
    return [content for _, _, content in boxed_spans(text, limit)]


def last_boxed(text: str) -> str | None:
    """Content of the last complete `\\boxed{...}` (or `\\fbox{...}`) in `text`, else None."""
    found = boxed_contents(text, limit=1)
    return found[0] if found else None


def _last_match(pattern: re.Pattern, response: str) -> re.Match | None:
    """Last match of `pattern`: a match in the tail is the last one overall, so the whole text is only
    scanned when the tail has none."""
    for start in (max(0, len(response) - TAIL_CHARS), 0):
        last = None
        for last in pattern.finditer(response, start):  # noqa: B007 (keep the last)
            pass
        if last is not None or start == 0:
            return last
    return None


def strip_prose(content: str) -> str:
    """The value in an answer sentence: "The final answer is $18$. I hope it is correct." -> `18`.

    A leading clause of words ending in "is"/"are" goes; then a `\\boxed{}` or a math segment that
    starts the rest is the value (several segments joined by `,`/`and`/`or` are one multi-part
    answer); otherwise the rest up to the end of its sentence is.
    """
    content = _HOPE.sub("", content.strip()).strip()
    if _BOX_COMMAND.search(content):
        return content
    for _ in range(3):  # "The maximum number of points that could be in the domain of $f$ is 19"
        masked = _MATH_SEGMENT.sub(lambda m: "M" * len(m.group(0)), content)  # "is" in math is no verb
        prefix = _PROSE_PREFIX.match(masked)
        if not prefix:
            break
        content = content[prefix.end() :]
    segments = list(_MATH_SEGMENT.finditer(content))
    if segments and segments[0].start() == 0:
        parts, end = [_segment_text(segments[0])], segments[0].end()
        for segment in segments[1:]:
            if not _SEGMENT_JOINER.fullmatch(content[end : segment.start()]):
                break
            parts.append(_segment_text(segment))
            end = segment.end()
        return ", ".join(parts)
    sentence_end = _SENTENCE_END.search(_MATH_SEGMENT.sub(lambda m: "M" * len(m.group(0)), content))
    if sentence_end and sentence_end.start() > 0:
        content = content[: sentence_end.start()]
    if _PROSE_START.match(content) and not segments:  # "Jane started growing it 3 hours ago"
        numbers = [number.group(0) for number in _LAST_NUMBER.finditer(content)]
        if len(numbers) == 1:
            return numbers[0].strip()
    return content.strip()


def _segment_text(segment: re.Match) -> str:
    return next(group for group in segment.groups() if group is not None)


def answer_line(response: str) -> str | None:
    """The raw content of the last `Answer:` line (DAPO's `\\s*`: the next line when it is empty; a display
    block opened there, whole); None when there is none or it is empty. No prose is cut away: the
    procedural tasks' answers are not math."""
    last = _last_match(_ANSWER_LINE, response)
    if last is None:
        return None
    content = last.group(1)
    if not content.strip(" \t*_"):  # "Answer:" alone: DAPO's `\s*` takes the next line
        following = _ANSWER_NEXT_LINE.match(response, last.end())
        content = following.group(1) if following else ""
    opener = content.strip()
    if opener in _DISPLAY_CLOSERS:  # "Answer: \\[" then a display block over several lines
        close = response.find(_DISPLAY_CLOSERS[opener], last.end(1))
        if close >= 0:
            content = response[last.start(1) : close + len(_DISPLAY_CLOSERS[opener])]
    content = content.strip().strip("*").strip()
    return content if content.strip(" \t*_.") else None


def _from_answer_line(response: str) -> str | None:
    content = answer_line(response)
    return None if content is None else strip_prose(content[: 2 * MAX_ANSWER_CHARS].strip()) or None


def extract_answer(response: str, parts: int = 1, anchored: bool = False) -> str | None:
    """The raw final answer of a response; None when there is none (or only an empty one).

    In order: the last `Answer:` line (DAPO's reward, verl `utils/reward_score/math_dapo.py`, after
    Minerva, Lewkowycz et al. 2022); the last `\\boxed{}`/`\\fbox{}`; the last "the (final) answer is X"
    sentence; then, without any of these anchors (math-verify reads such responses too), the last math
    segment (`$...$`, `\\[...\\]`) of the final paragraph, or the value of a final sentence "... is X.".
    Prose around the value ("The final answer is $18$. I hope it is correct.") is cut away. A box that
    never closes marks a truncated response: no answer. Nor is there one in an unanchored final paragraph
    that reads as code (`lambda: 0`, `import os; 0`, `x.__class__`): a value inside a program is no final
    value (math-verify 0.9 grades `lambda: 0` correct against 0; an anchored answer still counts).
    `parts` is how many parts the gold answer has (`answer_parts`): when it is more than one and the
    last box alone holds fewer, the last boxes are joined into one answer (`\\boxed{2}, \\boxed{3}`).
    `anchored` reads only the anchors (the first three).
    """
    response = response.rstrip()
    for _ in range(3):  # searched in the last 40 characters only: linear in the response
        token = _CHAT_TOKEN.search(response, max(0, len(response) - 40))
        if token is None:
            break
        response = response[: token.start()].rstrip()
    answer = _from_answer_line(response)
    if answer is not None:
        return answer
    boxes = boxed_contents(response, limit=max(1, min(parts, MAX_LIST_ITEMS)))
    if boxes and boxes[-1].strip():
        if parts > 1 and len(boxes) > 1 and answer_parts(normalize_answer(boxes[-1])) < parts:
            return ", ".join(box.strip() for box in boxes if box.strip())
        return boxes[-1].strip()
    sentence = _last_match(_ANSWER_SENTENCE, response)
    if sentence is not None:
        return strip_prose(sentence.group(1)) or None
    if anchored:
        return None
    opened = _last_match(_BOX_COMMAND, response)
    if opened is not None:  # a box that never closes: `\boxed{185\}`, else a truncated response
        escaped = _UNCLOSED_BOX.match(response, opened.start())
        return escaped.group(1).rstrip("\\").strip() or None if escaped else None
    tail = response[-NO_ANCHOR_CHARS:].strip()
    paragraph = tail[tail.rfind("\n\n") + 2 :] if "\n\n" in tail else tail
    if _CODE.search(paragraph):
        return None
    segments = list(_MATH_SEGMENT.finditer(paragraph))
    after = paragraph[segments[-1].end() :] if segments else paragraph
    if not segments and "\n" not in paragraph and len(paragraph) <= 100 and "\\" in paragraph and not (
        _BOX_COMMAND.search(paragraph) and not _UNCLOSED_BOX.fullmatch(paragraph)  # a box cut off: truncated
    ):
        return paragraph  # a bare `\frac{10}{9}`
    number = _last_match(_LAST_NUMBER, after)
    if number is not None:  # "... the probability that Alice wins is 2/3.", "... increases by 100%."
        return number.group(0).strip()
    if segments:
        return _segment_text(segments[-1]).strip() or None
    return None


# The last number of an answer without any anchor (math-verify's ExprExtractionConfig reads these too).
_LAST_NUMBER = re.compile(
    r"(?<![\w.])[+-]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d{1,3}(?: \d{3})+(?!\d)|\d+|(?=\.\d))(?:\.\d+)?(?:/\d+)?"
    r"(?:\s*(?:\\?%|percent\b))?(?![\d/])"
)


@functools.lru_cache(maxsize=65_536)  # a gold answer is normalized once for its k samples
def normalize_answer(answer: str) -> str:
    """Canonical string form of a final answer (gold or extracted); idempotent."""
    text = _CONTROL_CHARS.sub("", answer.translate(_UNICODE_MATH)).strip()
    if len(text) > MAX_ANSWER_CHARS:
        return text[:MAX_ANSWER_CHARS]
    text = _joined_boxes(text)
    text = text.replace("\\$", "")  # an escaped dollar is currency, not math mode
    for _ in range(2):  # markdown emphasis may sit outside or inside $...$
        text = text.strip().strip("*_").strip()
        pair = _DOLLAR_PAIR.search(text)
        if pair:
            text = strip_prose(text) if text.count("$") > 2 else pair.group(1)
        text = text.replace("\\(", "").replace("\\)", "").replace("\\[", "").replace("\\]", "")
    text = text.replace("$", "")
    text = (_DOUBLED_COMMAND_IN_ROWS if "begin" in text else _DOUBLED_COMMAND).sub(r"\\", text)
    text = _FRAC_VARIANTS.sub(r"\\frac", text)
    text = _LEFT_RIGHT.sub("", text)
    for pattern, replacement in _RELATION_MACROS:
        text = pattern.sub(replacement, text)
    if _TRIG.search(text):  # degrees inside a function's argument keep their meaning, in radians
        text = _NUMBER_DEGREES.sub(r"\\frac{\1\\pi}{180}", text)
    text = _DEGREES.sub("", text)
    percent = _PERCENT.search(text)
    if percent:
        text = text[: percent.start()]
    text = _TEXT_JOINER.sub(", ", text)
    text = _TEXT_UNIT.sub("", text)
    for _ in range(3):  # nested wrappers: \text{\textbf{5}}
        text = _TEXT_WRAPPERS.sub(r"\1", text)
    text = text.strip().rstrip(".").strip()
    text = _TRAILING_UNITS.sub("", text)
    text = _WORD_JOINER.sub(", ", text) if re.search(r"[\d})\]]\s*,?\s*\b(?:and|or)\b", text) else text
    text = text.replace("+\\infty", "\\infty").rstrip("\\") if not text.endswith("\\\\") else text
    text = _LATEX_THOUSANDS.sub(",", text)
    text = _NEG_SPACE.sub("", text)
    text = _SPACING.sub(" ", text)
    text = _FRAC_SHORTHAND.sub(r"\\frac{\1}{\2}", text)
    text = _FRAC_HALF_SHORTHAND.sub(r"\\frac{\1}{\2}", text)
    text = _FRAC_NUM_SHORTHAND.sub(r"\\frac{\1}{", text)
    text = _SQRT_SHORTHAND.sub(r"\\sqrt{\1}", text)
    text = _SINGLE_BRACED.sub(r"\1\2", text)
    text = " ".join(text.split()).rstrip(".").strip("*_ ")
    if _THOUSANDS.fullmatch(text):  # before spaces go: `32, 349` is a list, `1,000` a number
        text = text.replace(",", "")
    elif _SPACED_THOUSANDS.fullmatch(text):
        text = text.replace(" ", "")
    text = _squeeze_spaces(text)
    if percent and text:
        text += "\\%"
    return text


def _joined_boxes(text: str) -> str:
    """The content of the last box, or of the last boxes when only short text lies between them
    (`\\boxed{1} and \\boxed{2}`: one answer in several boxes, as math-verify reads it); the text
    itself when it has no box."""
    spans = boxed_spans(text)
    if not spans:
        unclosed = _UNCLOSED_BOX.fullmatch(text)  # `\boxed{185\}`: the escaped brace never closes it
        return unclosed.group(1) if unclosed else text
    kept = [spans[-1]]
    for span in reversed(spans[:-1]):
        gap = text[span[1] : kept[-1][0]]
        if not (len(gap) < 10 or len(gap) < _NEAR_BOXES_GAP and _BOX_SEPARATOR.search(gap)):
            break
        if span[2] != kept[-1][2]:  # the same box repeated is one answer
            kept.append(span)
    return ", ".join(content for _, _, content in reversed(kept))


def _squeeze_spaces(text: str) -> str:
    """Remove whitespace except where the tokens on both sides would merge: between two digits
    (`1 1/2`, `2^6 3^5`), two letters (`\\sin x`, `x y`) or a letter then a digit."""
    out: list[str] = []
    for i, chunk in enumerate(text.split()):
        if i == 0:
            out.append(chunk)
            continue
        before, after = out[-1][-1], chunk[0]
        if before == "," and after.isdigit() or before.isalnum() and after.isalnum() and not (
            before.isdigit() and after.isalpha()
        ):
            out.append(" ")
        out.append(chunk)
    return "".join(out)


# ---------------------------------------------------------------------------------------------------
# Structure: lists, sets, intervals, tuples, matrices and relations, split at their top level.

_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = set(_OPENERS.values())
_MATRIX = re.compile(
    r"\\begin\{([pbBvV]?matrix|smallmatrix|array)\}(?:\{[^{}]*\})?(.*)\\end\{\1\}", re.DOTALL
)
_CASES = re.compile(r"\\begin\{cases\}(.*)\\end\{cases\}", re.DOTALL)
_RELATION_OPS = ("\\le", "\\ge", "\\ne", "\\approx", "\\in", "=", "<", ">")
_LONE_VARIABLE = re.compile(
    r"[A-Za-z](?:'|_\{?[0-9A-Za-z]+\}?)?|\\[A-Za-z]+(?:_\{?[0-9A-Za-z]+\}?)?"  # x, x_1, f', \theta
    r"|[A-Za-z]\([A-Za-z](?:,[A-Za-z])*\)"  # f(x), P(x,y)
)


NodeKind = Literal["atom", "list", "matrix", "cases", "relation"]


@dataclass(frozen=True, slots=True)
class Node:
    """A parsed answer: `kind` "atom" (text), "list" (items between `open`/`close`: "" for a bare list,
    `\\{`/`\\}` for a set), "matrix" (rows of entries), "cases" (rows), or "relation" (`op`, items =
    (lhs, rhs))."""

    kind: NodeKind
    text: str
    items: tuple = ()
    open: str = ""
    close: str = ""
    op: str = ""


def _top_level_spans(text: str, separators: tuple[str, ...]) -> list[tuple[int, str]]:
    """(index, separator) of each separator outside any bracket; `()[]` match each other so that
    intervals like `[2, 5)` nest. Returns [] when brackets do not balance."""
    found: list[tuple[int, str]] = []
    depth = 0
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            if text.startswith(("\\{", "\\}"), i):
                depth += 1 if text[i + 1] == "{" else -1
                i += 2
                continue
            if depth == 0:
                for sep in separators:
                    after = text[i + len(sep) : i + len(sep) + 1]
                    if sep.startswith("\\") and text.startswith(sep, i) and not after.isalpha():
                        found.append((i, sep))
                        break
            j = i + 1
            while j < n and text[j].isalpha():
                j += 1
            i = max(j, i + 2)
            continue
        if ch in _OPENERS:
            depth += 1
        elif ch in _CLOSERS:
            depth -= 1
            if depth < 0:
                return []
        elif depth == 0 and ch in separators:
            found.append((i, ch))
        i += 1
    return found if depth == 0 else []


def _split(text: str, separator_spans: list[tuple[int, str]]) -> list[str]:
    pieces, start = [], 0
    for index, sep in separator_spans:
        pieces.append(text[start:index])
        start = index + len(sep)
    pieces.append(text[start:])
    return [piece.strip() for piece in pieces]


def _outer_brackets(text: str) -> tuple[str, str] | None:
    """(open, close) when one bracket pair encloses the whole text: `(..)`, `[..)`, `\\{..\\}`."""
    if text.startswith("\\{") and text.endswith("\\}"):
        open_, close, inner = "\\{", "\\}", text[2:-2]
    elif text.startswith("{") and text.endswith("}") and not text.startswith("{}"):  # `{1,3}`: a set
        open_, close, inner = "\\{", "\\}", text[1:-1]
    elif len(text) >= 2 and text[0] in "([" and text[-1] in ")]":
        open_, close, inner = text[0], text[-1], text[1:-1]
    else:
        return None
    # The opening bracket must close at the very end: `(x+1)(x-1)` is not enclosed.
    depth = 0
    i = 0
    while i < len(inner):
        if inner.startswith(("\\{", "\\}"), i):
            depth += 1 if inner[i + 1] == "{" else -1
            i += 2
            continue
        if inner[i] == "\\":
            i += 2
            continue
        if inner[i] in _OPENERS:
            depth += 1
        elif inner[i] in _CLOSERS:
            depth -= 1
        if depth < 0:
            return None
        i += 1
    return (open_, close) if depth == 0 else None


_SUBSCRIPTS = re.compile(r"_\{[^{}]*\}|_[0-9A-Za-z]|\\frac|[{}|:/ ]")


def is_named_quantity(text: str) -> bool:
    """Whether `text` names a quantity rather than an expression in unknowns: a lone variable, or a
    geometric name made of capitals (`AB`, `|AB|`, `A:B`, `\\frac{NO}{BO}`, `V_{1}:V_{2}`)."""
    if is_lone_variable(text):
        return True
    rest = _SUBSCRIPTS.sub("", text)
    return bool(rest) and rest.isalnum() and not any(ch.islower() for ch in rest) and not rest.isdigit()


def is_lone_variable(text: str) -> bool:
    """Whether `text` names one unknown (`x`, `a_1`, `f(x)`, `\\theta`) or a tuple of them (`(x,y)`)."""
    text = text.strip()
    if _LONE_VARIABLE.fullmatch(text):
        return text not in ("\\pi", "\\infty", "e")
    brackets = _outer_brackets(text)
    if brackets and brackets[0] == "(":
        return all(_LONE_VARIABLE.fullmatch(item) for item in text[1:-1].split(","))
    return False


def parse_structure(text: str) -> Node:
    """The top-level structure of a normalized answer (see Node): lists (bare, sets, tuples, intervals),
    matrices, `cases` systems and relations; anything else is an atom. compare.compare_nodes compares them."""
    return _parse(text, 0)


@functools.lru_cache(maxsize=65_536)
def _parse(text: str, depth: int) -> Node:
    if depth > MAX_DEPTH:  # `{{{{...}}}}`: no recursion limit is reached, the rest stays one atom
        return Node("atom", text)
    parse_structure = functools.partial(_parse, depth=depth + 1)  # noqa: N806 (reads as the public name)
    matrix = _MATRIX.fullmatch(text)
    if matrix:
        body = matrix.group(2).strip().removesuffix("\\\\").strip()
        rows = tuple(
            tuple(parse_structure(entry.strip()) for entry in row.split("&"))
            for row in body.split("\\\\") if row.strip()
        )
        if rows and len(rows) <= MAX_LIST_ITEMS:
            return Node("matrix", text, rows)
    cases = _CASES.fullmatch(text)
    if cases:
        case_rows = tuple(
            parse_structure(row.replace("&", "").strip())
            for row in cases.group(1).split("\\\\")
            if row.strip()
        )
        if case_rows and len(case_rows) <= MAX_LIST_ITEMS:
            return Node("cases", text, case_rows)
    brackets = _outer_brackets(text)
    if brackets:
        inner = text[2:-2] if text.startswith("\\{") else text[1:-1]
        commas = _top_level_spans(inner, (",", ";"))
        if commas and len(commas) < MAX_LIST_ITEMS:
            items = tuple(parse_structure(item) for item in _split(inner, commas))
            return Node("list", text, items, *brackets)
        if brackets[0] == "\\{" and inner.strip():
            return Node("list", text, (parse_structure(inner.strip()),), *brackets)
        if not commas and inner.strip() and (brackets == ("(", ")") or inner.startswith("\\begin")):
            # `(x+1)`, `[\\begin{array}..\\end{array}]`: the brackets only group
            return parse_structure(inner.strip())
    commas = _top_level_spans(text, (",", ";"))
    if commas and len(commas) < MAX_LIST_ITEMS:
        parts = _split(text, commas)
        if all(parts):
            return Node("list", text, tuple(parse_structure(part) for part in parts))
    plus_minus = _top_level_spans(text, ("\\pm",))
    if len(plus_minus) == 1:  # `1 \pm \sqrt{2}`: the set of both values
        lhs, rhs = _split(text, plus_minus)
        both = (parse_structure(f"{lhs}-{rhs}"), parse_structure(f"{lhs}+{rhs}"))
        return Node("list", text, both, "\\{", "\\}")
    relations = _top_level_spans(text, _RELATION_OPS)
    if relations:
        ops = {op for _, op in relations}
        first, last = relations[0], relations[-1]
        lhs, rhs = text[: first[0]].strip(), text[last[0] + len(last[1]) :].strip()
        approx = next((index for index, op in relations if op == "\\approx"), None)
        if approx is not None:  # `\frac{\sqrt3}{3} \approx 0.577`: the exact value is the answer
            before = text[:approx].strip()
            if is_lone_variable(before):  # `x \approx 11`
                after = _split(text, [span for span in relations if span[0] >= approx])[1]
                return parse_structure(after) if after else Node("atom", text)
            return parse_structure(before) if before else Node("atom", text)
        if lhs and rhs and (len(relations) == 1 or (ops == {"="} and is_lone_variable(lhs))):
            # `x = 2+3 = 5` is the assignment x = 5; other chains (`1 < x < 2`) stay whole
            return Node("relation", text, (parse_structure(lhs), parse_structure(rhs)), op=first[1])
    return Node("atom", text)


def answer_parts(normalized: str) -> int:
    """How many parts an answer has: the items of a bare or set list, else 1."""
    node = parse_structure(normalized)
    return len(node.items) if node.kind == "list" and node.open in ("", "\\{") else 1
