"""One OpenRLHF training job with our plugin: the process the launcher starts per algorithm x seed.

    python -m fipo_bench.backends.openrlhf.driver [--ray-address ADDR] -- <openrlhf.cli.train_ppo_ray flags>

It starts Ray (a local head, or joins ADDR) with our `worker_process_setup_hook` and the FIPO_BENCH_*
variables in the job's runtime_env, then runs OpenRLHF's own command-line entry point in this process;
OpenRLHF's `train()` finds Ray initialised and keeps our runtime_env. OpenRLHF builds its argument
parser inside `if __name__ == "__main__":`, so the entry point runs as __main__ through runpy, and
`parse_openrlhf_args` reads the parsed and validated arguments the same way, stopping before training.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from unittest import mock

from fipo_bench.backends.openrlhf.translate import OPENRLHF_ENV_DEFAULTS

OPENRLHF_CLI = "openrlhf.cli.train_ppo_ray"
SETUP_HOOK = "fipo_bench.backends.openrlhf.plugin.setup_worker"


def runtime_env(environ: dict[str, str] | None = None) -> dict:
    """The Ray job's runtime_env: our hook, OpenRLHF's defaults and every FIPO_BENCH_* variable."""
    environ = os.environ if environ is None else environ
    env_vars = {key: environ.get(key, default) for key, default in OPENRLHF_ENV_DEFAULTS.items()}
    env_vars.update({key: value for key, value in environ.items() if key.startswith("FIPO_BENCH_")})
    return {"worker_process_setup_hook": SETUP_HOOK, "env_vars": env_vars}


def run_openrlhf_cli(argv: list[str]) -> None:
    """Run `python -m openrlhf.cli.train_ppo_ray *argv` in this process."""
    with mock.patch.object(sys, "argv", [OPENRLHF_CLI, *argv]):
        runpy.run_module(OPENRLHF_CLI, run_name="__main__", alter_sys=False)


class _Parsed(Exception):
    pass


def parse_openrlhf_args(argv: list[str]):
    """The arguments OpenRLHF's own parser and checks make of `argv` (nested namespaces, as train() gets).

    Raises SystemExit (argparse) for an unknown flag or bad value, AssertionError for a failed check.
    """
    import openrlhf.utils.config as config_module
    import ray

    parsed = []
    hierarchize = config_module.hierarchize

    def capture(args):
        parsed.append(hierarchize(args))
        return parsed[-1]

    def stop(*_args, **_kwargs):  # the first thing train() does; its checks have all run by then
        raise _Parsed

    with (
        mock.patch.object(config_module, "hierarchize", capture),
        mock.patch.object(ray, "is_initialized", stop),
    ):
        try:
            run_openrlhf_cli(argv)
        except _Parsed:
            return parsed[-1]
    raise RuntimeError(f"{OPENRLHF_CLI} returned without calling train()")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ray-address", default=None, help="join this Ray cluster (default: start a local head)"
    )
    parser.add_argument("openrlhf_args", nargs=argparse.REMAINDER, help="-- then OpenRLHF's flags")
    options = parser.parse_args(argv)
    openrlhf_args = (
        options.openrlhf_args[1:] if options.openrlhf_args[:1] == ["--"] else options.openrlhf_args
    )

    import ray

    from fipo_bench.backends.openrlhf.plugin import patch_report, setup_worker

    ray.init(address=options.ray_address, runtime_env=runtime_env())
    setup_worker()  # the driver process too (it imports OpenRLHF's modules first)
    run_openrlhf_cli(openrlhf_args)
    print(f"fipo-bench plugin in the driver: {patch_report()}", flush=True)


if __name__ == "__main__":
    main()
