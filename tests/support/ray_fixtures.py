"""A local Ray for tests: one small instance per session, auth off, shut down at the end.

Use it with ``from tests.support.ray_fixtures import ray_local  # noqa: F401`` in a test module and ask
for the ``ray_local`` fixture. It never runs ``ray stop`` (that would kill every Ray process of the user).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.paths import ROOT

TEST_FOLDERS = sorted({str(path.parent) for path in (ROOT / "tests").rglob("test_*.py")})
"""Every folder that holds test modules: pytest imports each module by its bare name from its folder."""


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``ray.init`` with 2 CPUs, no dashboard and auth disabled; workers can import test modules."""
    import ray

    mp = pytest.MonkeyPatch()
    # A fresh local head turns token auth on by itself; every process must agree it is off.
    mp.setenv("RAY_AUTH_MODE", "disabled")
    mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
    # Workers unpickle trainables defined in test modules by module name, so they need the test folders on the path.
    python_path = os.pathsep.join([*TEST_FOLDERS, str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=100 * 1024 * 1024,
            runtime_env={"env_vars": {"PYTHONPATH": python_path, "RAY_AUTH_MODE": "disabled"}},
            _temp_dir=str(tmp_path_factory.mktemp("ray")),
        )
    yield
    if started:
        ray.shutdown()
    mp.undo()
