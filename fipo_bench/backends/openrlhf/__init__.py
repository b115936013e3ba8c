"""`--backend openrlhf`: the comparison on OpenRLHF 0.11's Ray trainer (vLLM rollouts, DeepSpeed), with
our algorithms plugged in. Modules: translate (config -> OpenRLHF flags), plugin + patches (inside the
Ray workers), reward (the --reward.remote_url file), driver (one job), metrics (tensorboard ->
metrics.jsonl), launcher (the algorithm x seed matrix). Importing this package loads none of them.
"""


def launch(config, *, dry_run: bool = False, ray_address: str | None = None):
    """Run every algorithm x seed of `config` on OpenRLHF (or print the plan); returns results/<run>/."""
    from fipo_bench.backends.openrlhf.launcher import launch as _launch

    return _launch(config, dry_run=dry_run, ray_address=ray_address)


__all__ = ["launch"]
