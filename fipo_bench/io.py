"""Crash-safe file I/O for results: atomic JSON writes, append-only JSON lines, validated reads.

Every writer here leaves either the old file or the complete new one on disk (temp file in the same
directory + fsync + os.replace), so a run killed at any instant never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

# The process umask can only be read by setting it; read it once, at import.
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace `path` with `text` atomically (creating parent directories)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are ordinary shared files
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write `obj` as indented JSON (NaN/inf are rejected: they are not JSON)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Atomically write a whole JSON-lines file."""
    atomic_write_text(path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows))


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one complete line and fsync, so a crash can lose at most the line being written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(row, allow_nan=False) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a parse error names the file, line and column."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}:{e.colno}: invalid JSON ({e.msg})") from None


def iter_jsonl(path: str | Path, *, skip_truncated_tail: bool = True) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, object) for each non-empty line of a JSON-lines file.

    A malformed line raises an error naming the file and line, except a final line without its
    newline, which is what a killed writer leaves behind: it is skipped when `skip_truncated_tail`.
    """
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if skip_truncated_tail and lineno == len(lines) and not line.endswith("\n"):
                return
            raise ValueError(f"{path}:{lineno}: invalid JSON line ({e.msg})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def read_jsonl(path: str | Path) -> list[dict]:
    """All objects of a JSON-lines file (see `iter_jsonl` for error handling)."""
    return [obj for _, obj in iter_jsonl(path)]


def json_safe(value: Any) -> Any:
    """Convert floats that JSON cannot hold (NaN, inf) to None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def build_cache_entry(entry: Path, build: Callable[[Path], None], *, marker: str) -> Path:
    """`entry`, made by `build(directory)` unless it is already complete (it holds `marker`).

    `build` fills a temporary directory beside `entry` and writes `marker` last; the directory is then
    renamed into place, so an entry only ever appears complete. Concurrent callers (several processes
    of one run) serialise on a lock file, so the build runs once; what a killed build left behind is
    removed by the next one.
    """
    if (entry / marker).is_file():
        return entry
    entry.parent.mkdir(parents=True, exist_ok=True)
    with _locked(entry.parent / f".{entry.name}.lock"):
        if (entry / marker).is_file():
            return entry
        # Holding the lock, any temporary directory of this entry is from a killed build.
        for stale in entry.parent.glob(f".{entry.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if entry.exists():  # incomplete (not written by this code): rebuild it
            shutil.rmtree(entry)
        tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.tmp-"))
        try:
            build(tmp)
            os.rename(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return entry


@contextlib.contextmanager
def _locked(lock_path: Path):
    try:
        import fcntl
    except ImportError:  # no advisory locks (Windows): single-process use still works
        yield
        return
    with open(lock_path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
