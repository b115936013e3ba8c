"""The backend contract (fipo_bench.backends): every backend the config accepts is found by name and
implements it; both plan the same config into the same results directory and runs."""

import subprocess
import sys

import pytest

from fipo_bench.backends import BACKENDS, Backend, Execution, Plan, get_backend
from fipo_bench.config import BACKENDS as CONFIG_BACKENDS
from fipo_bench.config import RunConfig


def test_every_backend_of_the_config_is_found_by_its_name():
    assert tuple(BACKENDS) == CONFIG_BACKENDS
    for name in CONFIG_BACKENDS:
        backend = get_backend(name)
        assert isinstance(backend, Backend) and backend.name == name


def test_an_unknown_backend_names_the_closest_ones():
    expected = r"unknown backend 'openrlfh'\. Did you mean 'openrlhf'\? Known backends: local, openrlhf\."
    with pytest.raises(KeyError, match=expected):
        get_backend("openrlfh")
    with pytest.raises(KeyError, match=r"unknown backend 'slurm'\. Known backends"):
        get_backend("slurm")


def test_both_backends_plan_the_same_runs_into_the_same_directory(tmp_path):
    """A dry run of each backend on one config: the same results directory, every run named, nothing
    written. (The OpenRLHF backend needs a CUDA device in its config, the local one a device it has.)"""
    common = dict(run_name="same", output_dir=str(tmp_path), algos=("grpo", "fipo"), seeds=(0, 3),
                  num_steps=2, recompute_old_logp=True, algo_overrides={"fipo": {"overlong_buffer": 12}})
    plans = {"local": get_backend("local").plan(RunConfig(**common, device="cpu"), Execution(max_parallel=1)),
             "openrlhf": get_backend("openrlhf").plan(RunConfig(**common, device="cuda"), Execution())}
    for name, plan in plans.items():
        assert isinstance(plan, Plan), name
        assert plan.root == (tmp_path / "same").resolve(), name
        text = plan.describe()
        assert all(run in text for run in ("grpo-seed0", "fipo-seed0", "grpo-seed3", "fipo-seed3")), name
    assert "one after the other in this process" in plans["local"].describe()
    assert list(tmp_path.iterdir()) == []


def test_importing_the_contract_loads_no_backend():
    code = ("import sys, fipo_bench.backends\n"
            "print(sorted(m for m in sys.modules if m.startswith(('fipo_bench.backends.', 'torch', 'ray'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['fipo_bench.backends.base']"
