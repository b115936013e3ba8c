"""Shared fixtures. Test modules import nothing from `tests.*` (see pyproject: importlib mode)."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# DeepSpeed compiles its CPU ops (FusedAdam, shm comm) on first use, ~1-2 min on 2 cores. Every test that
# starts DeepSpeed, here or in Ray workers, looks in this one directory, which .ci/run fills while it
# installs the remaining packages.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(
    Path(os.environ.get("FIPO_BENCH_CACHE") or Path.home() / ".cache" / "fipo-bench") / "torch_extensions"))


def _load_support_module(name: str) -> None:
    """Make tests/support/NAME.py importable as `NAME` (importlib mode puts no test directory on sys.path,
    and tests/support must stay off it: its flash_attn stand-in would shadow the real package)."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "tests" / "support" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


_load_support_module("openrlhf_stubs")  # OpenRLHF's modules imported on a machine without a GPU


@pytest.fixture(scope="session")
def fixture_data_dir(tmp_path_factory) -> Path:
    """A data directory of small handmade files in the formats of the real benchmark copies
    (tests/support/handmade_benchmarks.py): what the unit tests read, so they run on a fresh clone."""
    spec = importlib.util.spec_from_file_location(
        "handmade_benchmarks", REPO_ROOT / "tests" / "support" / "handmade_benchmarks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_files(tmp_path_factory.mktemp("fixture-data"))


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real benchmark copies: $FIPO_BENCH_DATA, else ../shared/data (never committed here).

    Their tests run wherever the copies exist and skip elsewhere (a fresh clone); with
    FIPO_BENCH_NO_SKIPS=1 (set by .ci/run) the copies are required and their absence fails the test.
    """
    path = Path(os.environ.get("FIPO_BENCH_DATA") or REPO_ROOT.parent / "shared" / "data")
    if (path / "aime24.jsonl").is_file():
        return path
    message = f"the real benchmark copies are not at {path} (set $FIPO_BENCH_DATA to their directory)"
    if os.environ.get("FIPO_BENCH_NO_SKIPS") == "1":
        pytest.fail(f"{message}; FIPO_BENCH_NO_SKIPS=1 requires them", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def unreachable_hub(monkeypatch) -> str:
    """A Hugging Face endpoint on a local port nothing listens on (online mode, no proxy): requests to it
    fail at once, as they do for a machine without network."""
    import socket

    from huggingface_hub import constants

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return endpoint


def pytest_configure(config):
    """pytest-benchmark creates its storage directory (default ./.benchmarks) at start-up even when no
    benchmark runs; keep it in pytest's own cache directory instead, so a test run leaves the checkout
    as it found it. An explicit --benchmark-storage wins."""
    default = config.pluginmanager.hasplugin("benchmark") and config.getoption("benchmark_storage") == (
        "file://./.benchmarks")
    cache = getattr(config, "cache", None)  # absent under -p no:cacheprovider
    if default and cache is not None:
        config.option.benchmark_storage = f"file://{cache.mkdir('benchmarks')}"


def pytest_sessionfinish(session, exitstatus):
    """With FIPO_BENCH_NO_SKIPS=1 (set by .ci/run) a skipped test fails the run: the optional-backend
    tests skip only where their packages are missing, and CI installs them, so a skip there is a bug."""
    if os.environ.get("FIPO_BENCH_NO_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and exitstatus == pytest.ExitCode.OK:
        reporter.write_line(f"FIPO_BENCH_NO_SKIPS=1: {len(skipped)} test(s) skipped; CI must run them all",
                            red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def random_base(tmp_path_factory) -> Path:
    """A randomly initialised tiny model + tokenizer saved as an HF directory (no warm-up needed).
    Shared by the session: tests read it, never write into it."""
    from fipo_bench.tiny import TinyRecipe
    from fipo_bench.tiny.warmup import build_base_model

    model, tokenizer = build_base_model(TinyRecipe(hidden_size=32, num_layers=2, num_heads=2, ffn_size=64,
                                                   max_length=64))
    path = tmp_path_factory.mktemp("random-base")
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def synthetic_runs():
    """tests/support/synthetic_runs.py: training runs with a known truth (simulation and results dirs)."""
    spec = importlib.util.spec_from_file_location(
        "synthetic_runs", REPO_ROOT / "tests" / "support" / "synthetic_runs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
