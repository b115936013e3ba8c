# ruff: noqa: E501  (each row is kept as one JSONL line, exactly as the file holds it)
"""Handmade problems in the formats of the real benchmark copies (AIME with leading-zero answers, AMC
floats, MATH LaTeX answers, GSM8K `#### N`): what the unit tests read, so they run on a fresh clone.

Kept as Python text, not as data files named like the benchmarks: none of these rows is from a real
benchmark. `write_files` writes them out as the JSONL files a data directory holds.
"""

from pathlib import Path

FILES = {
    "aime24.jsonl": [
        '{"id": 60, "problem": "Find the remainder when $7^{2024}$ is divided by $1000$.", "solution": "$7^{4} = 2401 \\\\equiv 401 \\\\pmod{1000}$ and $7^{20} \\\\equiv 1 \\\\pmod{1000}$, so $7^{2024} \\\\equiv 7^{4} \\\\equiv \\\\boxed{401}$.", "answer": "401", "url": "https://example.org/aime-fixture/60", "question": "Find the remainder when $7^{2024}$ is divided by $1000$."}',
        '{"id": 61, "problem": "How many positive divisors does $2^{4} \\\\cdot 3^{2}$ have?", "solution": "$(4+1)(2+1) = \\\\boxed{15}$.", "answer": "015", "url": "https://example.org/aime-fixture/61", "question": "How many positive divisors does $2^{4} \\\\cdot 3^{2}$ have?"}',
        '{"id": 62, "problem": "Let $x$ be the least positive integer with $x \\\\equiv 7 \\\\pmod{10}$. Find $x$.", "solution": "$x = \\\\boxed{7}$.", "answer": "007", "url": "https://example.org/aime-fixture/62", "question": "Let $x$ be the least positive integer with $x \\\\equiv 7 \\\\pmod{10}$. Find $x$."}',
        '{"id": 63, "problem": "A box holds $3$ red and $5$ blue balls. In how many ways can $2$ balls of the same colour be chosen?", "solution": "$\\\\binom{3}{2} + \\\\binom{5}{2} = 3 + 10 = \\\\boxed{13}$.", "answer": "013", "url": "https://example.org/aime-fixture/63", "question": "A box holds $3$ red and $5$ blue balls. In how many ways can $2$ balls of the same colour be chosen?"}',
        '{"id": 64, "problem": "Find the largest three-digit multiple of $37$.", "solution": "$37 \\\\cdot 27 = \\\\boxed{999}$.", "answer": "999", "url": "https://example.org/aime-fixture/64", "question": "Find the largest three-digit multiple of $37$."}',
        '{"id": 65, "problem": "Find the number of integers $n$ with $1 \\\\le n \\\\le 100$ and $n^2 < 0$.", "solution": "No square is negative: $\\\\boxed{0}$.", "answer": "000", "url": "https://example.org/aime-fixture/65", "question": "Find the number of integers $n$ with $1 \\\\le n \\\\le 100$ and $n^2 < 0$."}',
    ],
    "aime25.jsonl": [
        '{"answer": "70", "problem": "Compute $9 + 11 + 50$."}',
        '{"answer": "003", "problem": "How many primes are less than $6$?"}',
        '{"answer": "512", "problem": "Compute $2^9$."}',
    ],
    "amc23.jsonl": [
        '{"id": 0, "problem": "Two trains leave towns $60$ miles apart toward each other at $20$ and $10$ mph. After how many hours do they meet?", "answer": 2.0, "url": "https://example.org/amc-fixture/0", "question": "Two trains ... meet?"}',
        '{"id": 1, "problem": "What is $\\\\frac{27}{1}$?", "answer": 27.0, "url": "https://example.org/amc-fixture/1", "question": "What is 27?"}',
        '{"id": 2, "problem": "What is half of one?", "answer": 0.5, "url": "https://example.org/amc-fixture/2", "question": "Half of one?"}',
        '{"id": 3, "problem": "What is $5 - 6$?", "answer": -1.0, "url": "https://example.org/amc-fixture/3", "question": "5 - 6?"}',
    ],
    "gsm8k_test.jsonl": [
        '{"question": "A farmer has 12 hens that lay 2 eggs a day each. How many eggs does he get in a day?", "answer": "12 * 2 = <<12*2=24>>24 eggs.\\n#### 24"}',
        '{"question": "A shop sells 250 pens a day for 5 days. How many pens does it sell?", "answer": "250 * 5 = <<250*5=1250>>1250 pens.\\n#### 1,250"}',
        '{"question": "A diver is 10 metres below the surface and rises 4 metres. Where is she, relative to the surface?", "answer": "-10 + 4 = <<-10+4=-6>>-6\\n#### -6"}',
    ],
    "math500.jsonl": [
        '{"problem": "Convert the point $(0,2)$ in rectangular coordinates to polar coordinates.", "solution": "$r = 2$, $\\\\theta = \\\\frac{\\\\pi}{2}$: $\\\\boxed{\\\\left( 2, \\\\frac{\\\\pi}{2} \\\\right)}$.", "answer": "\\\\left( 2, \\\\frac{\\\\pi}{2} \\\\right)", "subject": "Precalculus", "level": 2, "unique_id": "test/precalculus/fixture-1.json"}',
        '{"problem": "Simplify $\\\\sqrt{50}$.", "solution": "$\\\\sqrt{25 \\\\cdot 2} = \\\\boxed{5\\\\sqrt{2}}$.", "answer": "5\\\\sqrt{2}", "subject": "Algebra", "level": 1, "unique_id": "test/algebra/fixture-2.json"}',
        '{"problem": "Which letter comes first in the alphabet? (A) B (B) A", "solution": "$\\\\boxed{\\\\text{(B)}}$", "answer": "\\\\text{(B)}", "subject": "Prealgebra", "level": 1, "unique_id": "test/prealgebra/fixture-3.json"}',
        '{"problem": "What is $3 + 4$?", "solution": "$\\\\boxed{7}$", "answer": " 007 ", "subject": "Prealgebra", "level": 1, "unique_id": "test/prealgebra/fixture-4.json"}',
    ],
}


def write_files(directory: Path) -> Path:
    """Write every file into `directory` (created) and return it."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, lines in FILES.items():
        (directory / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return directory
