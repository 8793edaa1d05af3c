"""The package's modules import downward only: no import circle, lazy imports included.

The import graph is read from each file's syntax tree, with the imports inside functions
counted too. A lazy import is still a dependency: a circle through one only postpones the
failure to the first call that takes that path, and hides which module sits below which.
One circle is known and allowed: the estimators registry package re-exports its
combiners at the end of ``estimators/__init__.py``, and ``estimators/combine.py`` builds on
the registry defined above that line (a package and its own submodule, ordered in one
file on purpose).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import zooindex

PACKAGE = Path(zooindex.__file__).parent
ALLOWED = {("zooindex.estimators", "zooindex.estimators.combine"),
           ("zooindex.estimators.combine", "zooindex.estimators")}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imported(module: str, path: Path, node, modules: dict) -> list[str]:
    """The package's modules an ``import``/``from ... import`` statement names."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            package = module.split(".")
            if path.name != "__init__.py":
                package = package[:-1]
            package = package[:len(package) - node.level + 1]
            base = ".".join(package + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        # ``from . import hub`` names a module; ``from .adapt import X`` names attributes
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                 for a in node.names]
    return [n for n in names if n in modules]


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[module].update(n for n in _imported(module, path, node, modules)
                                     if n != module and (module, n) not in ALLOWED)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the path that closes it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_graph_reader_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "zooindex.choices" in graph["zooindex.adapt"]         # from .choices import ...
    assert "zooindex.target" in graph["zooindex.options"]        # inside a method
    assert "zooindex.hub" in graph["zooindex.zoo"]               # from . import hub, lazily
    assert "zooindex.reduce" in graph["zooindex.estimators.knn"]  # from ..reduce import
    assert graph["zooindex.choices"] == set()                     # constants only


def test_the_package_has_no_import_circle():
    assert _cycle(import_graph()) is None


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_imports_first_in_a_fresh_interpreter():
    """Each module imported before any other of the package (the package state is cleared
    between them; third-party modules stay loaded, which only saves time)."""
    names = sorted(m for m in _modules() if m != "zooindex")
    code = ("import importlib, sys\n"
            "failed = []\n"
            f"for name in {names!r}:\n"
            "    for k in [k for k in sys.modules if k.split('.')[0] == 'zooindex']:\n"
            "        del sys.modules[k]\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except ImportError as exc:\n"
            "        failed.append(f'{name}: {exc}')\n"
            "print('\\n'.join(failed))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=PACKAGE.parent).stdout.strip()
    assert out == ""
