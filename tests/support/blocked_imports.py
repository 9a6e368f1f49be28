"""Run a script with some top-level packages made unimportable, to prove it does not need them.

    python -m tests.support.blocked_imports ray,mlflow path/to/script.py [script args...]

Every finder on `sys.meta_path` is wrapped so that it finds nothing for a blocked package (or a module
inside it): an import raises `ModuleNotFoundError` and `importlib.util.find_spec` returns None, exactly as
when the package is not installed. Code that treats the package as optional carries on; code that needs
it fails.
"""

from __future__ import annotations

import importlib.abc
import runpy
import sys


class HidingFinder(importlib.abc.MetaPathFinder):
    """Wraps a meta-path finder: finds nothing for the packages in `names`, records each such request."""

    def __init__(self, inner, names: set[str], refused: list[str]) -> None:
        self.inner = inner
        self.names = names
        self.refused = refused

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            self.refused.append(fullname)
            return None
        find_spec = getattr(self.inner, "find_spec", None)
        return find_spec(fullname, path, target) if find_spec is not None else None

    def find_distributions(self, *args, **kwargs):
        """Installed-package metadata, as the wrapped finder gives it (only imports are hidden)."""
        find = getattr(self.inner, "find_distributions", None)
        return find(*args, **kwargs) if find is not None else ()

    def invalidate_caches(self) -> None:
        if hasattr(self.inner, "invalidate_caches"):
            self.inner.invalidate_caches()


def main(argv: list[str]) -> None:
    names, script, *script_args = argv
    blocked = set(names.split(","))
    refused: list[str] = []
    sys.meta_path[:] = [HidingFinder(finder, blocked, refused) for finder in sys.meta_path]
    sys.argv = [script, *script_args]
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        print(f"blocked imports refused: {sorted(set(refused))}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
