"""The private local Ray a sweep starts by default: how it starts, and whether a trial fits on it.

The private Ray is never a cluster someone else started on this machine; it runs with token auth off
unless ``RAY_AUTH_MODE`` is set, without its dashboard, and with its workers on the jemalloc allocator Ray
ships. ``--address auto`` or ``ray://host:10001`` joins a cluster instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dense_reward.config import ConfigError
from dense_reward.errors import UserError
from tune_jobs.config import SweepConfig
from tune_jobs.environment import environment


def init_ray(address: str | None) -> None:
    """Start a private local Ray (address None) or join a cluster; no-op when Ray is already up."""
    import ray

    if ray.is_initialized():
        return
    # A fresh local cluster would turn token auth on by itself; every process must agree on it.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Ray Tune's newer console output prints an experiment box and a TensorBoard hint whatever
    # `verbose` says; the older one is silent at verbose=0. The trial table is our own (console.py).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A private local Ray runs without its dashboard (about 0.7 GB of processes); trials are watched in MLflow.
    private = {"include_dashboard": False} if address is None else {}
    worker_env = {}
    if address is None:
        # The private Ray's processes, the trial workers among them, start with this environment.
        worker_env = private_worker_env(os.environ)
        # Some of a private Ray's processes outlive a killed driver; the reaper ends them.
        from tune_jobs.reaper import start_reaper

        start_reaper()
    # Set only while Ray starts: the driver's own later subprocesses keep the environment they would have had.
    with environment(worker_env):
        try:
            ray.init(address=address or "local", log_to_driver=False, configure_logging=False, **private)
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise UserError(f"--address: cannot start or reach Ray at {address or 'local'!r}: {error}") from None


JEMALLOC_CONF = "oversize_threshold:0,background_thread:true"
"""jemalloc settings of a private Ray's workers: no separate arena that purges every allocation over 8 MiB at
once (a trial's logits and activations are that large, and refaulting them made a trial about 8 % slower), and
a background thread that hands freed pages back to the system instead of the allocating thread."""


def private_worker_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The allocator settings a private local Ray starts its processes with; what ``environ`` sets is kept.

    glibc keeps freed memory resident in per-thread arenas, and a trial runs in a thread of a worker that
    Ray reuses for the next trial (and explains responses in more threads): the second trial of a worker
    then peaked 1.11-1.20x above the same trial in a plain process. Ray ships jemalloc
    (``ray/core/libjemalloc.so``, which its own ``RAY_JEMALLOC_LIB_PATH`` preloads into its daemons); preloaded
    into the workers, two shortened demo trials peaked 1584 / 1829 MiB against 1921 / 2156 MiB with glibc
    (tests/benchmarks/trial_memory.py). Where the library is missing, glibc is kept with two arenas (the peak
    of a shortened demo trial run in a thread fell from 3124 to 2876 MiB with them).
    """
    import ray

    env = {"MALLOC_ARENA_MAX": "2"}
    jemalloc = Path(ray.__file__).parent / "core" / "libjemalloc.so"
    if jemalloc.is_file() and not environ.get("LD_PRELOAD"):
        env.update(LD_PRELOAD=str(jemalloc), MALLOC_CONF=JEMALLOC_CONF)
    return {key: value for key, value in env.items() if key not in environ}


def check_fits_private_ray(config: SweepConfig) -> None:
    """Refuse a trial that a private local Ray could never start (it would wait forever, warning each minute).

    Checked against the Ray already running in this process, else against what a new local Ray would find
    on this machine: its CPUs, its CUDA GPUs, and no custom resources.
    """
    import ray

    resources = config.resources
    if ray.is_initialized():
        total = ray.cluster_resources()
    else:
        import torch

        try:  # the CPU count a new local Ray takes (it honours a container's CPU quota)
            from ray._private.utils import get_num_cpus

            cpus = float(get_num_cpus())
        except (ImportError, AttributeError):
            cpus = float(os.cpu_count() or 1)
        total = {"CPU": cpus, "GPU": float(torch.cuda.device_count())}
    where = "the private local Ray on this machine has"
    fix = "lower it, or pass --address to run on a Ray cluster that has them"
    if resources.cpus_per_trial > total.get("CPU", 0.0):
        raise ConfigError(
            f"resources.cpus_per_trial: a trial asks for {resources.cpus_per_trial:g} CPUs but {where} "
            f"{total.get('CPU', 0.0):g}, so no trial could start; {fix}"
        )
    if resources.gpus_per_trial > total.get("GPU", 0.0):
        raise ConfigError(
            f"resources.gpus_per_trial: a trial asks for {resources.gpus_per_trial:g} GPUs but {where} "
            f"{total.get('GPU', 0.0):g} (CUDA GPUs torch can use), so no trial could start; {fix}"
        )
    for name, amount in resources.custom_per_trial.items():
        if amount > total.get(name, 0.0):
            raise ConfigError(
                f"resources.custom_per_trial.{name}: a trial asks for {amount:g} of it but {where} "
                f"{total.get(name, 0.0):g}, so no trial could start; {fix}"
            )
