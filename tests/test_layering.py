"""The package's import graph (../shared/DESIGN.md, layout): no import cycle anywhere, counting imports inside
functions, and every layer imports only downwards:

    algorithms/, ops, registry        the math: nothing else of fipo_bench (but the coercion of settings)
    results, config, io, tasks, ...   the layout and what a run reads
    backends/base                     the backend contract
    backends/local/, openrlhf/        the two backends: the contract and the layers below, never each other
    backends (get_backend)            the lookup by name
    report/                           reads the results layout only
    commands/, cli                    the top
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Source directory -> the package it installs as (pyproject.toml: [tool.setuptools] package-dir).
PACKAGE_DIRS = {"fipo_bench": REPO / "fipo_bench", "fipo_bench.algorithms": REPO / "algorithms",
                "fipo_bench.evals": REPO / "evals"}


def module_files() -> dict[str, Path]:
    modules = {}
    for package, directory in PACKAGE_DIRS.items():
        for path in directory.rglob("*.py"):
            parts = path.relative_to(directory).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def imports(module: str, source: str, known: set[str], *, is_package: bool = False) -> set[str]:
    """The modules of `known` that `module`'s source (its __init__.py if `is_package`) imports, at module
    level or inside functions; relative imports resolved, `from package import name` counted as the
    submodule where one is called so."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:  # `import a.b.c` of a non-module name: its longest known prefix
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {module: imports(module, path.read_text(), set(files), is_package=path.name == "__init__.py")
            for module, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == "open":
                return [*path[path.index(dep):], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    """`module` is one of `prefixes` or inside one of them."""
    return any(module == p or module.startswith(f"{p}.") for p in prefixes)


def reaching(graph: dict[str, set[str]], sources: tuple[str, ...], targets: tuple[str, ...]) -> list[str]:
    """Every import `a -> b` with a within `sources` and b within `targets`."""
    return sorted(f"{a} -> {b}" for a, deps in graph.items() if within(a, sources)
                  for b in deps if within(b, targets))


def leaving(graph: dict[str, set[str]], sources: tuple[str, ...], allowed: tuple[str, ...]) -> list[str]:
    """Every import `a -> b` with a within `sources` and b not within `allowed`."""
    return sorted(f"{a} -> {b}" for a, deps in graph.items() if within(a, sources)
                  for b in deps if not within(b, allowed))


GRAPH = import_graph()


def test_the_graph_sees_function_level_and_relative_imports():
    known = {"p", "p.a", "p.b", "p.sub", "p.sub.c", "p.sub.d"}
    source = ("import os\nfrom . import c\nfrom .. import a\n"
              "def f():\n    from p.b import y\n    import p.sub.c.x\n")
    assert imports("p.sub.d", source, known) == {"p.sub.c", "p.a", "p.b"}
    package = imports("p.sub", "from . import c\nfrom .d import y\n", known, is_package=True)
    assert package == {"p.sub.c", "p.sub.d"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "d": {"a", "c"}}) is None
    # The real graph: every module, and the imports inside functions (the trainer is loaded lazily).
    assert {"fipo_bench.cli", "fipo_bench.algorithms.fipo", "fipo_bench.evals.checker",
            "fipo_bench.backends.local.matrix", "fipo_bench.backends.openrlhf.launcher"} <= set(GRAPH)
    assert "fipo_bench.backends.local.trainer" in GRAPH["fipo_bench.backends.local.one_run"]


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_math_imports_nothing_above_it():
    # (coerce: the registry's and the config's one type-coercion path, itself importing nothing of ours)
    math = ("fipo_bench.algorithms", "fipo_bench.ops", "fipo_bench.registry", "fipo_bench.coerce")
    assert leaving(GRAPH, math, math) == []


def test_backends_and_the_results_layout_never_reach_up():
    above_backends = ("fipo_bench.commands", "fipo_bench.cli", "fipo_bench.report")
    assert reaching(GRAPH, ("fipo_bench.backends", "fipo_bench.tasks"), above_backends) == []
    assert reaching(GRAPH, ("fipo_bench.results", "fipo_bench.config"),
                    (*above_backends, "fipo_bench.backends", "fipo_bench.tasks")) == []
    # The contract sits below both backends; the backends share only the contract and the layers below.
    assert reaching(GRAPH, ("fipo_bench.backends.base",), ("fipo_bench.backends",)) == []
    assert reaching(GRAPH, ("fipo_bench.backends.openrlhf",), ("fipo_bench.backends.local",)) == []
    assert reaching(GRAPH, ("fipo_bench.backends.local",), ("fipo_bench.backends.openrlhf",)) == []
    # An implementation never imports the lookup (fipo_bench.backends itself) that imports it.
    implementations = ("fipo_bench.backends.local", "fipo_bench.backends.openrlhf")
    assert [m for m in GRAPH if m.startswith(implementations) and "fipo_bench.backends" in GRAPH[m]] == []


def test_the_report_reads_the_results_layout_only():
    allowed = ("fipo_bench.report", "fipo_bench.results", "fipo_bench.io", "fipo_bench.evals.metrics")
    assert leaving(GRAPH, ("fipo_bench.report",), allowed) == []
