"""Import direction (../shared/DESIGN.md): the results layout sits below the backends, the runner and the
report; no backend imports the runner; the report package has no import circle."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fipo_bench"


def imports(path: Path) -> set[str]:
    """Every fipo_bench module a file imports (at module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fipo_bench"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("fipo_bench"))
    return found


def test_backends_and_the_results_layout_never_reach_up():
    above_backends = ("fipo_bench.commands", "fipo_bench.cli", "fipo_bench.report")
    for path in [*(PACKAGE / "backends").rglob("*.py"), PACKAGE / "results.py", PACKAGE / "tasks.py"]:
        reached = {m for m in imports(path) if m.startswith(above_backends)}
        assert not reached, f"{path.relative_to(PACKAGE)} imports {sorted(reached)}"
    # The OpenRLHF backend never reaches the local backend's matrix or its Ray dispatch.
    for path in (PACKAGE / "backends" / "openrlhf").rglob("*.py"):
        reached = {m for m in imports(path) if m.startswith(("fipo_bench.backends.local.matrix",
                                                              "fipo_bench.backends.local.ray_dispatch"))}
        assert not reached, f"{path.relative_to(PACKAGE)} imports {sorted(reached)}"
    assert not {m for m in imports(PACKAGE / "results.py") if m.startswith("fipo_bench.backends")}


def test_the_report_package_has_no_import_circle():
    graph = {f"fipo_bench.report.{p.stem}": {m for m in imports(p) if m.startswith("fipo_bench.report.")}
             for p in (PACKAGE / "report").glob("*.py") if p.stem != "__init__"}
    assert set(graph) == {f"fipo_bench.report.{m}" for m in ("data", "stats", "curves", "compare", "tables",
                                                             "plots", "render")}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import circle: {' -> '.join((*path, module))}"
        if module not in done:
            for dep in graph.get(module, ()):
                visit(dep, (*path, module))
            done.add(module)

    for module in graph:
        visit(module, ())
    # The report reads results through the layout module only: no trainer, backend or runner.
    for p in (PACKAGE / "report").glob("*.py"):
        assert not {m for m in imports(p) if m.startswith("fipo_bench.backends")}, p
