"""How every subcommand reports a user error: one `error: <message>` line on stderr, exit code 2.

The message is printed as plain text, never as rich markup: messages quote brackets
(`pip install -e '.[hub]'`, `[0, 1]`) that markup would take for style tags and drop.
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

USER_ERROR = 2
"""Exit code of a user error (click's own for bad usage); 1 is left for a run that failed."""


def fail(message: object) -> NoReturn:
    """Print `error: <message>` on one line (a multi-line message is joined) and exit with USER_ERROR."""
    text = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    # soft_wrap: the terminal wraps the line, rich does not break it (a path stays copyable).
    Console(stderr=True).print(Text.assemble(("error:", "bold red"), " ", text), soft_wrap=True)
    raise typer.Exit(USER_ERROR)
