"""Ray `worker_process_setup_hook`: our algorithm inside OpenRLHF's Ray workers.

OpenRLHF 0.11 has no plugin API: the loss, the advantages and the prompt sampling live in Ray worker
processes (`PolicyModelActor`, `PPOTrainer`), which a patch in the driver never reaches. This hook,
named in `ray.init(runtime_env={"worker_process_setup_hook": ...})`, runs first in every worker process
and registers a post-import hook for the OpenRLHF modules in PATCH_TARGETS (patches.py does the
patching); a process that never imports them, a vLLM engine among others, stays untouched and
never imports deepspeed or torch through us.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from functools import cache

from fipo_bench.backends.openrlhf.translate import ENV_ALGO, ENV_HPARAMS

# OpenRLHF module -> name of the function in patches.py that patches it.
PATCH_TARGETS = {
    "openrlhf.trainer.ray.ppo_actor": "patch_ppo_actor",
    "openrlhf.trainer.ppo_utils.experience_maker": "patch_experience_maker",
    "openrlhf.trainer.ppo_utils.samples_generator": "patch_samples_generator",
    "openrlhf.trainer.ray.ppo_critic": "patch_ppo_critic",
}
PATCHED_FLAG = "__fipo_bench_patched__"


def setup_worker() -> None:
    """The hook: patch the target modules when (or if already) imported. Idempotent.

    Which algorithm: $FIPO_BENCH_ALGO and its hyperparameters $FIPO_BENCH_ALGO_HPARAMS (JSON), set in the
    runtime_env by the driver; without them the hook does nothing."""
    if not os.environ.get(ENV_ALGO):
        return
    patch_on_import({name: apply_patch for name in PATCH_TARGETS}, owner=__name__)


@cache
def algorithm_from_env():
    """The algorithm named in the environment, with exactly the hyperparameters the driver resolved."""
    from fipo_bench.algorithms import get_algorithm

    name = os.environ.get(ENV_ALGO)
    if not name:
        raise RuntimeError(
            f"${ENV_ALGO} is not set: the fipo-bench plugin runs only in jobs started by "
            f"fipo_bench.backends.openrlhf"
        )
    return get_algorithm(name, **json.loads(os.environ.get(ENV_HPARAMS) or "{}"))


def apply_patch(module) -> None:
    if getattr(module, PATCHED_FLAG, False):
        return
    from fipo_bench.backends.openrlhf import patches

    getattr(patches, PATCH_TARGETS[module.__name__])(module, algorithm_from_env())
    setattr(module, PATCHED_FLAG, True)


def patch_report() -> dict[str, bool]:
    """Which target modules are imported and patched in this process (for logs and tests)."""
    return {name: bool(getattr(sys.modules.get(name), PATCHED_FLAG, False)) for name in PATCH_TARGETS}


def patch_on_import(patchers: dict[str, Callable], *, owner: str) -> None:
    """Call patchers[name](module) right after each named module is imported (at once if it already is).
    One finder per `owner`: calling again changes nothing."""
    if not any(getattr(finder, "owner", None) == owner for finder in sys.meta_path):
        sys.meta_path.insert(0, PatchOnImport(patchers, owner))
    for name, patch in patchers.items():
        if name in sys.modules:
            patch(sys.modules[name])


class PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds the modules named in `patchers` with the other finders, and patches each right after it runs."""

    def __init__(self, patchers: dict[str, Callable], owner: str) -> None:
        self.patchers, self.owner = patchers, owner
        self._searching: set[str] = set()

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.patchers or fullname in self._searching:
            return None
        self._searching.add(fullname)  # find_spec below asks every finder again, this one included
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._searching.discard(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader, self.patchers[fullname])
        return spec


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader, patch: Callable) -> None:
        self._loader, self._patch = loader, patch

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def __getattr__(self, name):  # get_source, is_package, ... (tracebacks and inspect use them)
        return getattr(self._loader, name)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        self._patch(module)
