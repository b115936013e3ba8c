"""Shared fixtures. Test modules import nothing from `tests.*` (see pyproject: importlib mode)."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The offline benchmark copies in ../shared/data (never committed to this repository)."""
    if not (SHARED_DATA / "aime24.jsonl").is_file():
        raise FileNotFoundError(f"expected the offline data at {SHARED_DATA}")
    return SHARED_DATA
