"""One OpenRLHF training job with our plugin: the process the launcher starts per algorithm x seed.

    python -m fipo_bench.backends.openrlhf.driver [--ray-address ADDR] -- <openrlhf.cli.train_ppo_ray flags>

It starts Ray with our `worker_process_setup_hook` and runs OpenRLHF's own command-line entry point in
this process, so OpenRLHF's workers run the registry's algorithm (`main` lists the steps).
"""

from __future__ import annotations

import argparse
import importlib
import os
import runpy
import sys
from unittest import mock

from fipo_bench.backends.openrlhf.translate import OPENRLHF_ENV_DEFAULTS

OPENRLHF_CLI = "openrlhf.cli.train_ppo_ray"
SETUP_HOOK = "fipo_bench.backends.openrlhf.plugin.setup_worker"
ENV_SETUP_HOOK = "FIPO_BENCH_OPENRLHF_SETUP_HOOK"


def setup_hook(environ: dict[str, str] | None = None) -> str:
    """Ours, or the hook $FIPO_BENCH_OPENRLHF_SETUP_HOOK names (module.function, which must call ours):
    the CPU end-to-end test chains its CUDA stand-ins this way; production never sets it."""
    environ = os.environ if environ is None else environ
    return environ.get(ENV_SETUP_HOOK) or SETUP_HOOK


def runtime_env(environ: dict[str, str] | None = None) -> dict:
    """The Ray job's runtime_env: our hook, OpenRLHF's defaults and every FIPO_BENCH_* variable."""
    environ = os.environ if environ is None else environ
    env_vars = {key: environ.get(key, default) for key, default in OPENRLHF_ENV_DEFAULTS.items()}
    env_vars.update({key: value for key, value in environ.items() if key.startswith("FIPO_BENCH_")})
    return {"worker_process_setup_hook": setup_hook(environ), "env_vars": env_vars}


def gpus_needed(args) -> int:
    """GPUs OpenRLHF 0.11.2's train() reserves for parsed `args` (openrlhf/cli/train_ppo_ray.py): one per
    rank of each model group and per vLLM engine rank, except that colocated groups share one set."""
    group = lambda section: section.num_nodes * section.num_gpus_per_node  # noqa: E731
    actor = group(args.actor)
    if args.train.colocate_all:
        return actor  # every model and engine in the actor's placement group
    ref = 0 if args.algo.kl.init_coef <= 0 or args.train.colocate_actor_ref else group(args.ref)
    engines = (args.vllm.num_engines or 0) * args.vllm.tensor_parallel_size
    critic = group(args.critic) if args.critic.model_name_or_path else 0
    reward = 0 if args.reward.remote_url else group(args.reward)
    if critic and args.train.colocate_critic_reward:
        reward = 0
    return actor + ref + engines + critic + reward


def check_cluster(args, resources: dict[str, float]) -> None:
    """Raise SystemExit naming the numbers when the cluster lacks the GPUs (each with a CPU) of `args`."""
    gpus = gpus_needed(args)
    have_gpus, have_cpus = resources.get("GPU", 0), resources.get("CPU", 0)
    if have_gpus < gpus or have_cpus < gpus + 1:  # + the PPOTrainer actor's CPU
        raise SystemExit(
            f"error: this job needs {gpus} GPUs and {gpus + 1} CPUs in Ray (actor "
            f"{args.actor.num_nodes}x{args.actor.num_gpus_per_node}, vLLM engines "
            f"{args.vllm.num_engines or 0}x{args.vllm.tensor_parallel_size}, colocated: "
            f"{bool(args.train.colocate_all)}); the cluster has {have_gpus:g} GPUs and {have_cpus:g} CPUs. "
            f"Set FIPO_BENCH_OPENRLHF_GPUS_PER_NODE / _NODES / _VLLM_ENGINES to fit, or pass --ray-address "
            f"of a larger cluster"
        )


def _call(dotted: str) -> None:
    module, _, function = dotted.rpartition(".")
    getattr(importlib.import_module(module), function)()


def run_openrlhf_cli(argv: list[str]) -> None:
    """Run `python -m openrlhf.cli.train_ppo_ray *argv` in this process."""
    with mock.patch.object(sys, "argv", [OPENRLHF_CLI, *argv]):
        runpy.run_module(OPENRLHF_CLI, run_name="__main__", alter_sys=False)


class _Parsed(Exception):
    pass


def parse_openrlhf_args(argv: list[str]):
    """The arguments OpenRLHF's own parser and checks make of `argv` (nested namespaces, as train() gets).

    OpenRLHF builds its parser inside `if __name__ == "__main__":`, so its entry point runs as __main__
    through runpy (`run_openrlhf_cli`), and this reads the parsed and validated arguments the same way,
    stopping before training.

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
    """Check the flags with OpenRLHF's own parser, start Ray (a new local head, or join ADDR) with our
    `worker_process_setup_hook` and the FIPO_BENCH_* variables in the job's runtime_env, check that the
    cluster has the GPUs the flags ask for (else OpenRLHF waits forever for its placement groups), then
    run OpenRLHF's entry point here; its `train()` finds Ray initialised and keeps our runtime_env."""
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

    from fipo_bench.backends.openrlhf.plugin import patch_report

    _call(setup_hook())  # the driver process too (it imports OpenRLHF's modules first)
    args = parse_openrlhf_args(openrlhf_args)
    # "local": a new head for this job, never another user's cluster found on this machine.
    ray.init(address=options.ray_address or "local", runtime_env=runtime_env())
    check_cluster(args, ray.cluster_resources())
    run_openrlhf_cli(openrlhf_args)
    print(f"fipo-bench plugin in the driver: {patch_report()}", flush=True)


if __name__ == "__main__":
    main()
