"""algorithms/ and evals/ install as fipo_bench.algorithms / fipo_bench.evals, in a regular wheel as
well as in the editable install, and no generic top-level package lands in site-packages."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _source_copy(dest: Path) -> Path:
    """The checkout without its virtual environments, git data and outputs: setuptools builds in the
    source tree (build/, *.egg-info), and the test must leave the checkout as it found it."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = {".git", "build", "dist", "results", "__pycache__"}
        return {n for n in names if n in skipped or n.endswith(".egg-info") or n.startswith(".")
                or (Path(directory, n) / "pyvenv.cfg").exists()}

    return Path(shutil.copytree(REPO, dest, ignore=ignore, symlinks=True))


def _python(code: str, cwd: Path, env_path: str | None = None) -> str:
    env = {"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"}
    if env_path:
        env["PYTHONPATH"] = env_path
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_wheel_maps_algorithms_and_evals_under_fipo_bench(tmp_path):
    had_build_dir = (REPO / "build").exists()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
         str(_source_copy(tmp_path / "src"))],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("fipo_bench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"fipo_bench"}, top_level
    assert "fipo_bench/algorithms/__init__.py" in names
    assert "fipo_bench/evals/__init__.py" in names

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    # Run from an unrelated directory so the source tree cannot shadow the installed copy.
    printed = _python(
        "import fipo_bench.algorithms as a, fipo_bench.evals as e; print(a.__file__); print(e.__file__)",
        cwd=tmp_path,
        env_path=str(site),
    )
    for line in printed.split():
        assert Path(line).is_relative_to(site), line
    assert (REPO / "build").exists() == had_build_dir  # built in a copy: the checkout is as it was


def test_benchmark_storage_stays_out_of_the_checkout(pytestconfig):
    """pytest-benchmark creates its storage directory at start-up; conftest moves it into .pytest_cache."""
    storage = pytestconfig.getoption("benchmark_storage")
    assert storage == f"file://{pytestconfig.cache.mkdir('benchmarks')}"


def test_editable_install_resolves_to_the_source_tree(tmp_path):
    printed = _python(
        "import fipo_bench.algorithms as a, fipo_bench.evals as e; print(a.__file__); print(e.__file__)",
        cwd=tmp_path,
    )
    algorithms_file, evals_file = printed.split()
    assert Path(algorithms_file) == REPO / "algorithms" / "__init__.py"
    assert Path(evals_file) == REPO / "evals" / "__init__.py"
