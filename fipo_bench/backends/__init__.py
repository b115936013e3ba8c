"""Where training runs, behind one contract (`base.Backend`), looked up by name:

    backend = get_backend(config.backend)       # "local" or "openrlhf"
    plan = backend.plan(config, execution)      # every check, nothing written; --dry-run: plan.describe()
    result = backend.run(config, execution, reporter=reporter)  # results/<run>/, one RunResult per run

- `local` (backends/local/): our own trainer, one process per run on this machine, or Ray tasks.
- `openrlhf` (backends/openrlhf/): OpenRLHF's Ray trainer with our algorithms plugged into its workers.

Both read the same RunConfig and write the same results layout (fipo_bench.results), so `fipo-bench
report` compares runs of either. A backend is imported on its first lookup, so importing this package
loads neither one (nor their optional dependencies).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from fipo_bench.backends.base import (
    Backend,
    Execution,
    MatrixInterrupted,
    MatrixResult,
    Plan,
    Reporter,
    RunResult,
)


def _local() -> Backend:
    from fipo_bench.backends.local.matrix import LocalBackend

    return LocalBackend()


def _openrlhf() -> Backend:
    from fipo_bench.backends.openrlhf.launcher import OpenRLHFBackend

    return OpenRLHFBackend()


BACKENDS: dict[str, Callable[[], Backend]] = {"local": _local, "openrlhf": _openrlhf}


def get_backend(name: str) -> Backend:
    """The backend called `name`; KeyError with the closest names for anything else."""
    if name in BACKENDS:
        return BACKENDS[name]()
    close = difflib.get_close_matches(str(name), list(BACKENDS), n=2, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise KeyError(f"unknown backend {name!r}.{hint} Known backends: {', '.join(BACKENDS)}.")


__all__ = ["BACKENDS", "Backend", "Execution", "MatrixInterrupted", "MatrixResult", "Plan", "Reporter",
           "RunResult", "get_backend"]
