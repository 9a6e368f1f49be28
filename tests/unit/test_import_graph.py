"""The import graph of `dense_reward` and `tune_jobs` has no cycles, and the library never imports the service.

See `tests.support.import_graph` for how the graph is built.
"""

from __future__ import annotations

from tests.support.import_graph import FORBIDDEN_IN_LIBRARY, find_cycle, import_graph


def test_the_graph_sees_module_and_function_level_imports() -> None:
    graph, tops = import_graph()
    # Module level (`from tune_jobs import tracking`) and inside functions (the lazy command imports).
    assert "tune_jobs.tracking" in graph["tune_jobs.sweep"]
    assert "tune_jobs.sweep" in graph["tune_jobs.commands.sweep"]
    assert "ray" in tops["tune_jobs.sweep"]
    # The lazy names of `tune_jobs.search` are followed to their modules.
    assert "tune_jobs.search.factory" in graph["tune_jobs.search"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycles() -> None:
    graph, _ = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_library_never_imports_the_service_ray_or_mlflow() -> None:
    _, tops = import_graph()
    offenders = {
        module: sorted(names & set(FORBIDDEN_IN_LIBRARY))
        for module, names in tops.items()
        if module.split(".")[0] == "dense_reward" and names & set(FORBIDDEN_IN_LIBRARY)
    }
    assert offenders == {}
