"""No import cycles among the ``pipeline.*`` modules, read from the source with ``ast`` (nothing is imported).

Every import statement counts: at the top of a module, inside a function (a lazy import only
postpones a cycle to the first call) and under ``if TYPE_CHECKING:``. How an import becomes edges:

- ``import pipeline.a.b`` and ``from pipeline.a.b import x``: an edge to ``pipeline.a.b``, or to
  ``pipeline.a.b.x`` when that is a module of its own;
- ``from . import x`` and ``from ..a import x``: the same, relative to the importing module's package;
- an import of a submodule is an edge to that submodule only. Python runs ``pipeline.a``'s
  ``__init__`` first, but a package ``__init__`` that imports its submodules, and a submodule that
  imports a sibling as ``pipeline.a.sibling``, is no cycle; importing names from ``pipeline.a``
  itself (its ``__init__``) is an edge to the package, and is one when the ``__init__`` imports back.

``importlib.import_module`` calls (the CLI's commands, the package's components) are not import
statements and are not counted, except the registry's: ``pipeline.registry`` imports each module its
tables name (the parsers, the stores, the sources), so those are its edges too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pipeline

ROOT = Path(pipeline.__file__).resolve().parent


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of the package at ``root`` (a package is its ``__init__``)."""
    names = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the package at ``root`` it imports."""
    modules = module_names(root)
    top = root.name

    def nearest(name: str) -> str:
        while name not in modules:  # pipeline.a.b.name: a name defined in pipeline.a.b
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    origin = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    origin = node.module or ""
                targets.update(f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin
                               for alias in node.names)
        graph[name] = {nearest(target) for target in targets
                       if target == top or target.startswith(f"{top}.")} - {name}
    if f"{top}.registry" in graph:
        from pipeline import registry

        graph[f"{top}.registry"] |= {*registry.PARSERS.values(), *registry.STORES.values(),
                                     *registry.SOURCES.values()}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles (a -> ... -> a), one for each edge back to a module on the path of a depth-first search: none
    exactly when no modules import one another round."""
    found: list[list[str]] = []
    state: dict[str, str] = {}  # "open" while on the DFS path, "done" once every edge out is explored

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        path.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                found.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, path)
        path.pop()
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    return found


def test_no_module_of_the_package_imports_itself_back() -> None:
    found = cycles(import_graph(ROOT))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in found)


def test_the_graph_counts_lazy_imports_and_names_imported_from_packages() -> None:
    graph = import_graph(ROOT)
    assert "pipeline.orchestration.pipelines" in graph["pipeline.orchestration.factory"]
    assert "pipeline.registry" in graph["pipeline.batch"]  # imported inside BatchLoad's methods
    assert "pipeline.formats.parquet" in graph["pipeline.registry"]  # named in its table of parsers
    assert "pipeline.warehouse.dialects" in graph["pipeline.warehouse.target"]  # names from the __init__
    assert "pipeline.config" in graph["pipeline.orchestration.pipelines"]  # from pipeline import config


def test_relative_imports_resolve_against_the_importing_package(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from .sub import b\n")
    (package / "a.py").write_text("def later():\n    from . import sub\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("from .. import a\nfrom ..a import later\n")
    graph = import_graph(package)
    assert graph == {"pkg": {"pkg.sub.b"}, "pkg.a": {"pkg.sub"}, "pkg.sub": set(), "pkg.sub.b": {"pkg.a"}}
    assert cycles(graph) == []
    (package / "sub" / "__init__.py").write_text("import pkg.sub.b\n")
    (package / "sub" / "b.py").write_text("from pkg.sub import thing\n")
    assert cycles(import_graph(package)) == [["pkg.sub.b", "pkg.sub", "pkg.sub.b"]]
