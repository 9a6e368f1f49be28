"""One Ray Tune trial = one `dense_reward.run.Run` with the trial's weights (and knobs, and seed) fixed.

restore -> epochs -> report + checkpoint: after every PPO epoch the trial measures ``val_reward`` (the
search objective) and its standard error on the validation prompts and reports them with a checkpoint.
A retried trial (its process died, or the driver was restarted) continues from its newest complete
checkpoint instead of starting over; one that had finished reports its last result again. The trial
logs to its own MLflow child run (see :mod:`tune_jobs.tracking`).

Test-only fault hook: when the driver's environment has ``DENSE_REWARD_FAULT_KILL_AT_EPOCH=N`` and
``DENSE_REWARD_FAULT_MARKER=<file>``, the first trial to reach the start of epoch N creates the marker
file (holding its trial id) and SIGKILLs its own process, once per marker file. With
``DENSE_REWARD_FAULT_ACTION=pause`` it sleeps instead (until something kills it), so a test can kill
the driver at a known point however fast the epochs are.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray
from ray import tune

from dense_reward.config import Config
from dense_reward.ppo.checkpoint import FILES as CHECKPOINT_FILES
from dense_reward.ppo.checkpoint import CheckpointError
from dense_reward.run import RUN_STATE_FILE, Run, read_run_state
from dense_reward.simplex import check_weights
from dense_reward.viz import heatmap_page
from tune_jobs.config import METRIC, validate_sweep_config
from tune_jobs.search.space import WEIGHTS_KEY
from tune_jobs.tracking import TrackingTarget, TrialTracker, close_child

SIZES_FILE = "sizes.json"
"""Written last into a trial's checkpoint: the size of every other file, so a folder copied halfway does not count."""
METRICS_KEY = "metrics"
"""Run-state key of the metrics reported with a checkpoint (a finished trial reports them again on restore)."""
SEED_KEY = "seed"
"""Trial config key of a seed that replaces the config's (confirmation re-runs); absent in a search."""
FAULT_EPOCH_ENV = "DENSE_REWARD_FAULT_KILL_AT_EPOCH"
FAULT_MARKER_ENV = "DENSE_REWARD_FAULT_MARKER"
FAULT_ACTION_ENV = "DENSE_REWARD_FAULT_ACTION"
REPORTED = (
    "train_reward",
    "value_loss",
    "policy_loss",
    "kl",
    "entropy",
    "attribution_seconds",
    "step_seconds",
)
"""Per-epoch training metrics every trial reports beside `val_reward`, `val_reward_sem` and `epoch`
(plus `gold_reward` when a gold scorer is configured, and `spread_<source>` for each weighted source
that goes through the normaliser: how far its normalised credit lies from an even split)."""


@dataclass(frozen=True)
class FaultHook:
    """Kill (or pause) the trial process at the start of `epoch`, once for all trials sharing `marker`."""

    epoch: int
    marker: str
    action: str = "kill"
    """``kill`` (SIGKILL itself) or ``pause`` (sleep until killed from outside)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FaultHook | None:
        """The hook the environment asks for, or None (always, outside the fault tests)."""
        environ = os.environ if environ is None else environ
        epoch, marker = environ.get(FAULT_EPOCH_ENV), environ.get(FAULT_MARKER_ENV)
        if not epoch or not marker:
            return None
        action = environ.get(FAULT_ACTION_ENV, "kill")
        if action not in ("kill", "pause"):
            raise ValueError(f"{FAULT_ACTION_ENV}: 'kill' or 'pause', got {action!r}")
        return cls(epoch=int(epoch), marker=marker, action=action)

    def maybe_fire(self, epoch: int, trial_id: str) -> None:
        """Act if this process is the first to reach `epoch` (the marker file is created atomically)."""
        if epoch != self.epoch:
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, trial_id.encode())
        os.close(fd)
        if self.action == "pause":
            time.sleep(3600)
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a sweep shares, handed to the trial function by `tune.with_parameters`."""

    config: dict[str, Any]
    """The sweep's `SweepConfig` as a plain dict (validated again in the trial)."""
    tracking: TrackingTarget | None
    fault: FaultHook | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Environment the trial process needs from the driver (e.g. `DENSE_REWARD_CACHE`)."""


def trial_arguments(base: Config, trial: Mapping[str, Any]) -> tuple[Config, dict[str, float], int | None]:
    """(config with the trial's knobs applied, its weights on the simplex, its seed or None).

    Knobs are dotted config field names (e.g. ``ppo.kl_coef``); the weights and the seed go to
    `dense_reward.run.Run` as arguments.
    """
    knobs = {key: float(value) for key, value in trial.items() if key not in (WEIGHTS_KEY, SEED_KEY)}
    config = base.with_overrides(knobs) if knobs else base
    weights = check_weights(trial[WEIGHTS_KEY], config.shaping.sources, field="trial weights")
    seed = trial.get(SEED_KEY)
    return config, weights, None if seed is None else int(seed)


def checkpoint_epoch(filesystem: pyarrow.fs.FileSystem, path: str) -> int | None:
    """The epoch of the checkpoint folder `path`, or None unless it is complete.

    Complete: `SIZES_FILE` reads, and every file it names (`Run.save`'s files among them) has its size.
    Ray copies a checkpoint into storage file by file, so a folder can hold every name before every byte.
    """
    infos = {info.base_name: info for info in filesystem.get_file_info(pyarrow.fs.FileSelector(path))}
    if SIZES_FILE not in infos:
        return None
    try:
        with filesystem.open_input_stream(f"{path}/{SIZES_FILE}") as stream:
            sizes = json.loads(stream.read())
        if not {RUN_STATE_FILE, *CHECKPOINT_FILES} <= set(sizes) or any(
            name not in infos or infos[name].size != size for name, size in sizes.items()
        ):
            return None
        with filesystem.open_input_stream(f"{path}/{RUN_STATE_FILE}") as stream:
            return int(json.loads(stream.read())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def newest_checkpoint(known: tune.Checkpoint | None) -> tune.Checkpoint | None:
    """The newest complete checkpoint in this trial's storage folder, or `known` when none is newer.

    Ray Tune persists its experiment state only every ~10 s (`TUNE_GLOBAL_CHECKPOINT_S`), so after a
    driver is killed, `tune.get_checkpoint()` can name an older checkpoint than the trial had written;
    the folder on storage is the truth (see `checkpoint_epoch` for what counts as complete).
    """
    storage = tune.get_context().get_storage()
    filesystem, trial_path = storage.storage_filesystem, storage.trial_fs_path
    best, best_epoch = known, -1
    if known is not None:
        with known.as_directory() as directory:
            best_epoch = int(read_run_state(directory)["epoch"])
    folders = filesystem.get_file_info(pyarrow.fs.FileSelector(trial_path, allow_not_found=True))
    for folder in folders:
        if folder.type != pyarrow.fs.FileType.Directory or not folder.base_name.startswith("checkpoint_"):
            continue
        epoch = checkpoint_epoch(filesystem, folder.path)
        if epoch is not None and epoch > best_epoch:
            best, best_epoch = tune.Checkpoint(folder.path, filesystem=filesystem), epoch
    return best


def save_checkpoint(run: Run, directory: str, extra: Mapping[str, Any]) -> None:
    """`Run.save` into `directory`, then `SIZES_FILE` (last, so its presence vouches for the rest)."""
    run.save(directory, extra=extra)
    sizes = {path.name: path.stat().st_size for path in Path(directory).iterdir() if path.is_file()}
    (Path(directory) / SIZES_FILE).write_text(json.dumps(sizes))


def report_finished(checkpoint: tune.Checkpoint, epoch: int) -> None:
    """Report a finished trial's last metrics and checkpoint again (Ray fails a trial that reports nothing).

    From a local copy: Ray writes the reported checkpoint into a folder of its choice, which may be the
    very folder it came from.
    """
    with tempfile.TemporaryDirectory(prefix="dense-reward-ckpt-") as directory:
        checkpoint.to_directory(directory)
        state = read_run_state(directory)
        if METRICS_KEY not in state:
            raise CheckpointError(
                f"{checkpoint.path}: the run state holds no metrics (an older checkpoint format); "
                "this finished trial cannot be reported again"
            )
        metrics = {**state[METRICS_KEY], "resumed_from_epoch": epoch}
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def epoch_metrics(train: Mapping[str, float], evaluation: Mapping[str, Any], epoch: int) -> dict[str, float]:
    """What a trial reports after an epoch: the objective, its standard error, training means, the epoch."""
    metrics = {key: float(train[key]) for key in REPORTED if key in train}
    metrics.update({key: float(value) for key, value in train.items() if key.startswith("spread_")})
    metrics[METRIC] = float(evaluation["val_reward"])
    metrics["val_reward_sem"] = float(evaluation["val_reward_sem"])
    if evaluation.get("gold_reward") is not None:
        metrics["gold_reward"] = float(evaluation["gold_reward"])
    metrics["epoch"] = epoch
    return metrics


def reset_peak_rss() -> bool:
    """Start this process's peak resident memory afresh (Linux: write 5 to ``/proc/self/clear_refs``).

    Ray reuses a worker process for the next trial (``reuse_actors``); after the reset, `peak_rss_mb`
    is the peak of the current trial alone. False where the kernel offers no reset.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    """The peak resident memory of this process since `reset_peak_rss` (or since it started), in MiB.

    ``VmHWM`` of ``/proc/self/status`` on Linux; elsewhere ``getrusage`` (the lifetime peak, bytes on macOS).
    """
    import resource
    import sys

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


JEMALLOC_ARENAS_ALL = 4096
"""``MALLCTL_ARENAS_ALL`` of jemalloc 5: ``arena.<i>.purge`` with this index purges every arena."""


def release_memory() -> None:
    """Collect garbage and hand freed heap memory back to the system.

    A Ray trial runs in a thread of its worker, and a reused worker would start its next trial with the
    last one's freed memory still resident and counted. glibc's ``malloc_trim`` trims its arenas; where
    jemalloc is preloaded (a private Ray's workers, :func:`tune_jobs.local_ray.private_worker_env`), its
    ``arena.<all>.purge`` returns the unused pages of every arena. Each step is skipped where the C
    library lacks it.
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        mallctl = ctypes.CDLL(None).mallctl  # found only where jemalloc is loaded
    except (OSError, AttributeError, TypeError):
        return
    mallctl(f"arena.{JEMALLOC_ARENAS_ALL}.purge".encode(), None, None, None, ctypes.c_size_t(0))


def draws_heatmaps(config, epoch: int) -> bool:
    """Whether a trial draws the token heatmaps after `epoch` (`evaluation.heatmap_epochs`, `heatmap_samples`)."""
    if config.evaluation.heatmap_samples == 0:
        return False
    return config.evaluation.heatmap_epochs == "every" or epoch == config.ppo.epochs


def train_trial(trial: dict[str, Any], setup: TrialSetup) -> None:
    """The Ray Tune function trainable: restore, then PPO epochs, reporting and checkpointing after each.

    Starts from a trimmed heap and a fresh peak (a reused worker still holds what its last trial freed)
    and trims again when done, so each trial's `peak_rss_mb` is its own.
    """
    release_memory()
    reset_peak_rss()
    try:
        run_trial(trial, setup)
    finally:
        release_memory()


def run_trial(trial: dict[str, Any], setup: TrialSetup) -> None:
    """`train_trial`'s work: restore, then PPO epochs, reporting and checkpointing after each."""
    import torch

    os.environ.update(setup.env)
    sweep = validate_sweep_config(setup.config, source="sweep config")
    config, weights, seed = trial_arguments(sweep.library_config(), trial)
    torch.set_num_threads(sweep.resources.torch_threads or max(1, int(sweep.resources.cpus_per_trial)))
    context = tune.get_context()
    trial_id = context.get_trial_id() or "local"
    trial_name = context.get_trial_name() or trial_id

    checkpoint = newest_checkpoint(tune.get_checkpoint())
    start_epoch = 0
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            start_epoch = int(read_run_state(directory)["epoch"])
    if start_epoch >= config.ppo.epochs:
        # The trial had finished when the driver died, before Ray recorded it: nothing to redo.
        report_finished(checkpoint, start_epoch)
        if setup.tracking is not None:
            close_child(setup.tracking, trial_id)
        return
    run = Run(config, weights, seed=seed)
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            run.load(directory)

    tracker = None
    if setup.tracking is not None:
        tracker = TrialTracker(setup.tracking, trial_id, trial_name)
        tracker.log_start(trial, node_id=ray.get_runtime_context().get_node_id())

    for epoch in range(start_epoch + 1, config.ppo.epochs + 1):
        if setup.fault is not None:
            setup.fault.maybe_fire(epoch, trial_id)
        train_metrics = run.train_epoch(epoch)
        evaluation = run.evaluate()
        sections = []
        if tracker is not None and draws_heatmaps(config, epoch):
            # Drawn before the epoch's peak memory is read, so `peak_rss_mb` includes them.
            sections = run.heatmap_sections(evaluation.get("samples", []))
        metrics = epoch_metrics(train_metrics, evaluation, epoch)
        metrics["resumed_from_epoch"] = start_epoch
        metrics["peak_rss_mb"] = peak_rss_mb()
        with tempfile.TemporaryDirectory(prefix="dense-reward-ckpt-") as directory:
            save_checkpoint(run, directory, {"trial_id": trial_id, "trial": trial, METRICS_KEY: metrics})
            if tracker is not None:
                tracker.log_epoch(epoch, metrics)
                if sections:
                    page = heatmap_page(sections, title=f"{trial_name}, epoch {epoch}")
                    tracker.log_text(page, f"heatmaps/epoch_{epoch:03d}.html")
            # The driver tags the MLflow run with the checkpoint once Ray has persisted it.
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
    if tracker is not None:
        tracker.finish("FINISHED")
