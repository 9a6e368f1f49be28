"""Peak resident memory of a shortened demo trial: in a plain process and as a Ray Tune trial of the service.

The trial is `tune_jobs/configs/demo.yaml` cut to one epoch of 2 PPO steps (SmolLM2-135M policy with LoRA and
the config's value model, the MiniLM reward model, every attribution source, the greedy evaluation on 16
validation prompts, a checkpoint and the token heatmaps), for the sweep's first two points (sparse-only,
then ABC).

- plain: each trial in a fresh Python process through `dense_reward.run.Run`, the same loop as the service's
  trial (train the epoch, evaluate, save a checkpoint, draw the heatmaps); the figure is the process's peak
  resident memory (`VmHWM`). Each trial runs twice: with glibc's allocator, and with the private Ray's
  workers' allocator settings (jemalloc, where Ray ships it: `tune_jobs.local_ray.private_worker_env`).
- ray: `dense-reward sweep` on a private local Ray with the same two trials one after the other, so Ray
  reuses one worker process for both (`reuse_actors`, as in every sweep). Figures: the `peak_rss_mb` each
  trial reports (and logs to MLflow), and the worker's own peak over both trials, read from
  `/proc/<pid>/status` every 0.2 s for every `ray::` process of this user.

Writes `docs/benchmarks/trial_memory.{json,md}`. Run from the repository root:

    .venv/bin/python tests/benchmarks/trial_memory.py            # the demo kit (built on first use, ~80 s)
    .venv/bin/python tests/benchmarks/trial_memory.py --smoke    # the tiny models, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "benchmarks"
TRIALS = 2


def vm_kib(status: str, field: str) -> int:
    """A `VmRSS:`/`VmHWM:` line of a `/proc/<pid>/status` text, in KiB (0 when absent)."""
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def shortened_config(smoke: bool) -> dict:
    """The demo (or tiny) sweep config cut to one epoch of 2 PPO steps and two trials, one at a time."""
    source = ROOT / "tune_jobs" / "configs" / ("tiny.yaml" if smoke else "demo.yaml")
    config = yaml.safe_load(source.read_text())
    config["name"] = "trial-memory"
    config["ppo"].update({"epochs": 1, "steps_per_epoch": 2})
    config["search"].update({"trials": TRIALS, "n_init": TRIALS, "max_concurrent": 1})
    points = config["search"].get("points_to_evaluate") or []
    points = (points + [{"attention": 0.8, "sparse": 0.2}])[:TRIALS]
    if len(points) < TRIALS:
        points.append({"sparse": 1.0})
    config["search"]["points_to_evaluate"] = points
    return config


# --------------------------------------------------------------------------------------------------
# plain process: one trial, the service's loop without Ray
# --------------------------------------------------------------------------------------------------


def run_plain(config_path: Path, weights: dict[str, float]) -> dict:
    import torch

    from dense_reward.run import Run
    from tune_jobs.config import load_sweep_config

    sweep = load_sweep_config(config_path)
    torch.set_num_threads(sweep.resources.torch_threads or max(1, int(sweep.resources.cpus_per_trial)))
    start = time.perf_counter()
    run = Run(sweep.library_config(), weights)
    for epoch in range(1, sweep.ppo.epochs + 1):
        run.train_epoch(epoch)
        evaluation = run.evaluate()
        with tempfile.TemporaryDirectory() as directory:
            run.save(directory, extra={"epoch": epoch})
        run.heatmap_sections(evaluation.get("samples", []))
    status = Path("/proc/self/status").read_text()
    return {
        "weights": weights,
        "peak_rss_mb": vm_kib(status, "VmHWM") / 1024,
        "seconds": time.perf_counter() - start,
        "val_reward": float(evaluation["val_reward"]),
    }


def plain_allocators() -> dict[str, dict[str, str]]:
    """The environments of the plain trials: the C library's allocator (glibc), and the private Ray's
    workers' allocator settings (:func:`tune_jobs.local_ray.private_worker_env`) where those preload jemalloc."""
    from tune_jobs.local_ray import private_worker_env

    worker_env = private_worker_env(os.environ)
    return {"glibc": {}, **({"jemalloc": worker_env} if "LD_PRELOAD" in worker_env else {})}


# --------------------------------------------------------------------------------------------------
# Ray: the service's sweep, with the workers' memory watched from outside
# --------------------------------------------------------------------------------------------------


def parent_pids() -> dict[int, int]:
    """pid -> parent pid of every process now."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # The command name (field 2) may hold spaces; it ends at the last ')'.
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return parents


def descends_from(pid: int, root: int, parents: dict[int, int]) -> bool:
    while pid > 1:
        if pid == root:
            return True
        pid = parents.get(pid, 0)
    return False


class RayWorkerWatch:
    """Every 0.2 s: the peak (`VmHWM`, and `VmRSS` in case a trial resets its peak) of each `ray::` process
    started by the process `root` (the sweep's driver, whose private Ray starts the workers), and not of
    any other Ray on the machine."""

    def __init__(self, root: int, interval: float = 0.2) -> None:
        self.root = root
        self.interval = interval
        self.peaks: dict[int, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _poll(self) -> None:
        parents = parent_pids()
        for pid in parents:
            if not descends_from(pid, self.root, parents):
                continue
            entry = Path("/proc") / str(pid)
            try:
                name = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
                if not name.startswith("ray::"):
                    continue
                status = (entry / "status").read_text()
            except OSError:
                continue
            peak = max(vm_kib(status, "VmHWM"), vm_kib(status, "VmRSS")) / 1024
            record = self.peaks.setdefault(int(entry.name), {"name": name, "peak_rss_mb": 0.0})
            if "allocator" not in record:
                record["allocator"] = allocator_of(entry)
            record["name"] = name
            record["peak_rss_mb"] = max(record["peak_rss_mb"], peak)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poll()
            time.sleep(self.interval)

    def __enter__(self) -> RayWorkerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def allocator_of(process: Path) -> str:
    """``jemalloc`` where the process at ``/proc/<pid>`` has it loaded, else ``glibc``."""
    try:
        return "jemalloc" if "libjemalloc" in (process / "maps").read_text() else "glibc"
    except OSError:
        return "unknown"


def run_ray(config_path: Path, run_dir: Path) -> dict:
    command = [sys.executable, "-m", "tune_jobs.cli", "sweep", str(config_path), "--run-dir", str(run_dir)]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stderr:
        driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, text=True, cwd=ROOT)
        with RayWorkerWatch(driver.pid) as watch:
            returncode = driver.wait()
        if returncode != 0:
            stderr.seek(0)
            raise RuntimeError(f"sweep failed ({' '.join(command)}):\n{stderr.read()[-4000:]}")
    trials = []
    for result_file in sorted(run_dir.rglob("result.json")):
        rows = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
        trials.append(
            {
                "trial": result_file.parent.name,
                "weights": rows[-1]["config"]["weights"],
                "peak_rss_mb": max(row["peak_rss_mb"] for row in rows),
                "val_reward": rows[-1]["val_reward"],
            }
        )
    workers = sorted(watch.peaks.values(), key=lambda record: -record["peak_rss_mb"])
    return {"seconds": time.perf_counter() - start, "trials": trials, "largest_ray_processes": workers[:4]}


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------


def matching_trial(trials: list[dict], weights: dict[str, float]) -> dict:
    """The Ray trial that ran `weights` (Ray fills in the sources a point leaves out with 0)."""
    for trial in trials:
        if all(abs(trial["weights"].get(k, 0.0) - v) < 1e-9 for k, v in weights.items()):
            return trial
    raise LookupError(f"no Ray trial ran the weights {weights}")


def markdown(report: dict) -> str:
    lines = [
        "# Peak resident memory of a demo trial: plain process vs Ray Tune trial",
        "",
        f"`{report['config_source']}` cut to 1 epoch x 2 PPO steps, two trials (sparse-only, then ABC); "
        f"{os.cpu_count()} cores, 1-minute load average {report['load_average_at_start']:.1f} at the start.",
        "",
        "| trial | weights | plain process, allocator | plain peak RSS (MiB) | Ray trial `peak_rss_mb` (MiB) "
        "| Ray / plain |",
        "|---|---|---|---:|---:|---:|",
    ]
    trials = []  # weights in the order first run
    for plain in report["plain"]:
        if plain["weights"] not in trials:
            trials.append(plain["weights"])
        ray_trial = matching_trial(report["ray"]["trials"], plain["weights"])
        weights = ", ".join(f"{k} {v:g}" for k, v in plain["weights"].items() if v)
        lines.append(
            f"| {trials.index(plain['weights']) + 1} | {weights} | {plain.get('allocator', 'glibc')} | "
            f"{plain['peak_rss_mb']:.0f} | {ray_trial['peak_rss_mb']:.0f} | "
            f"{ray_trial['peak_rss_mb'] / plain['peak_rss_mb']:.2f} |"
        )
    worker = report["ray"]["largest_ray_processes"][0]
    lines += [
        "",
        f"Largest Ray process over the whole sweep (the trial worker, reused for both trials): "
        f"`{worker['name']}`, allocator {worker.get('allocator', 'unknown')}, "
        f"**{worker['peak_rss_mb']:.0f} MiB** peak.",
        "",
        f"Command: `{report['command']}`",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="The tiny models instead of the demo kit.")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--worker-config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker-weights", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker_config:
        result = run_plain(args.worker_config, json.loads(args.worker_weights))
        args.worker_out.write_text(json.dumps(result))
        return 0

    config = shortened_config(args.smoke)
    load_average = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="trial-memory-") as scratch:
        config_path = Path(scratch) / "config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        plain = []
        for index, weights in enumerate(config["search"]["points_to_evaluate"]):
            for allocator, env in plain_allocators().items():
                out = Path(scratch) / f"plain-{index}-{allocator}.json"
                command = [
                    sys.executable, __file__, "--worker-config", str(config_path),
                    "--worker-weights", json.dumps(weights), "--worker-out", str(out),
                ]  # fmt: skip
                completed = subprocess.run(
                    command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}
                )
                if completed.returncode != 0:
                    raise RuntimeError(f"plain trial failed:\n{completed.stderr[-4000:]}")
                plain.append({**json.loads(out.read_text()), "allocator": allocator})
                print(
                    f"plain trial {index + 1} ({allocator}): peak RSS {plain[-1]['peak_rss_mb']:.0f} MiB",
                    flush=True,
                )
        ray_side = run_ray(config_path, Path(scratch) / "run")
        for trial in ray_side["trials"]:
            print(f"ray {trial['trial']}: peak_rss_mb {trial['peak_rss_mb']:.0f}", flush=True)

    report = {
        "config_source": "tune_jobs/configs/" + ("tiny.yaml" if args.smoke else "demo.yaml"),
        "config": config,
        "load_average_at_start": load_average,
        "plain": plain,
        "ray": ray_side,
        "command": " ".join(["python", "tests/benchmarks/trial_memory.py", *(argv or sys.argv[1:])]),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "trial_memory.json").write_text(json.dumps(report, indent=2))
    (args.out_dir / "trial_memory.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
