"""`requirements.lock` pins every dependency `pyproject.toml` declares, at a version the declaration admits.

`make setup` installs the lock with ``--no-deps`` (no resolution), so a dependency added to pyproject.toml
and missing from the lock would be missing from every install: `make lock` must be run.
"""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support.paths import ROOT

INSTALLED_EXTRAS = ("dev", "demo")


def pins() -> dict[str, Version]:
    pinned = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not pinned with =="
            pinned[canonicalize_name(name)] = Version(version)
    return pinned


def test_every_declared_dependency_is_pinned_at_an_admitted_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in INSTALLED_EXTRAS:
        declared += project["optional-dependencies"][extra]
    pinned = pins()
    problems = []
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name == "torch":
            continue  # installed first and by itself (Makefile)
        if name not in pinned:
            problems.append(f"{requirement.name}: not in requirements.lock")
        elif not requirement.specifier.contains(pinned[name], prereleases=True):
            problems.append(f"{requirement.name}: locked {pinned[name]} is outside {requirement.specifier}")
    assert problems == [], "run `make lock`: " + "; ".join(problems)


def test_the_lock_holds_no_torch_and_no_duplicates() -> None:
    lines = [line for line in (ROOT / "requirements.lock").read_text().splitlines() if line and line[0] != "#"]
    names = [canonicalize_name(line.partition("==")[0]) for line in lines]
    assert "torch" not in names
    assert len(names) == len(set(names))
