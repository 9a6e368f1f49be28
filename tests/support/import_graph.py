"""The import graph of `dense_reward` and `tune_jobs`, built statically from the source (`ast`).

It holds function-level imports too, which a run-time check would only see on the paths a test
happens to take. Imports under ``if TYPE_CHECKING:`` are left out: they never run. An edge goes to the most specific module that
exists: ``from tune_jobs import tracking`` is an edge to ``tune_jobs.tracking``, ``from
tune_jobs.search import make_searcher`` one to ``tune_jobs.search`` (its ``__init__``). A package
that loads its names lazily (``import_module`` in its ``__init__``) gets an edge to every submodule
its string constants name.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import ROOT

PACKAGES = ("dense_reward", "tune_jobs")
FORBIDDEN_IN_LIBRARY = ("ray", "mlflow", "tune_jobs")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    """Every module of the two packages: dotted name -> file."""
    return {
        module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
    }


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, name: str) -> list[list[str]]:
    """Every import statement of a module, anywhere in its body, as candidate dotted names, most specific first.

    ``import a.b`` gives ``[a.b, a]``; ``from a import b, c`` gives ``[a.b, a]`` and ``[a.c, a]``.
    """
    is_package = path.name == "__init__.py"
    found: list[list[str]] = []

    def prefixes(dotted: str) -> list[str]:
        parts = dotted.split(".")
        return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(prefixes(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                # A relative import: resolve it against this module's package.
                package = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            found.extend([f"{base}.{alias.name}", *prefixes(base)] for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    tree = ast.parse(path.read_text(), filename=str(path))
    visit(tree)
    lazy = any(
        isinstance(node, ast.Call)
        and (
            getattr(node.func, "id", None) == "import_module"
            or getattr(node.func, "attr", None) == "import_module"
        )
        for node in ast.walk(tree)
    )
    if is_package and lazy:
        constants = {
            n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
        }
        found.extend([f"{name}.{constant}"] for constant in constants if constant.isidentifier())
    return found


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> the modules of the two packages it imports, module -> top-level names of everything it imports)."""
    modules = all_modules()
    graph: dict[str, set[str]] = {}
    tops: dict[str, set[str]] = {}
    for name, path in modules.items():
        statements = imports_of(path, name)
        tops[name] = {candidates[-1].split(".")[0] for candidates in statements}
        graph[name] = {
            target
            for candidates in statements
            for target in [next((c for c in candidates if c in modules), None)]
            if target is not None and target != name
        }
    return graph, tops


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None (depth-first search)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None
