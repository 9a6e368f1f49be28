"""Throughput and memory of our PPO against trl 1.12.0's `trl.experimental.ppo.PPOTrainer`.

Both sides train the same tiny GPT-2 (`builtin:tiny-gpt2`) on the same prompts with the same rollout
batch size, response length, PPO epochs and minibatches, a sparse reward from the same sequence
classifier (a GPT-2 with a scalar `score` head, built from the tiny GPT-2; trl needs the reward model to
share the policy's tokenizer), a critic of the same shape (the tiny GPT-2 backbone with a scalar head),
fp32 on CPU, no gradient checkpointing, the same number of torch threads.

Sides: `ours`; `ours-unfused-gelu` (ours with the models' own elementwise `gelu_new` put back after the
trainer swapped in one-kernel GELU, to show what the PPO changes give without that swap); `trl` (trl's
trainer as released); `trl-nogc` (trl with the two `gc.collect()` calls its trainer makes per step turned
into no-ops: the trainer module's global name `gc` is replaced by an object whose `collect` does nothing,
in that worker process only; Python's automatic collection still runs).

trl 1.12.0 is the last release with this trainer and must not enter the project's environment, so each
side runs in a subprocess of its own virtualenv and writes its figures as JSON; this script (run with
the project's interpreter) starts them one after the other, `--repeats` times each, interleaved, and
writes `docs/benchmarks/ppo_vs_trl.{json,md}`. `--smoke` runs our side alone at tiny sizes (no trl needed).

Set up the trl environment once (torch first and by itself, so pip keeps the CPU build):

    python3.11 -m venv /tmp/trl112-venv
    /tmp/trl112-venv/bin/pip install torch==2.13.0
    /tmp/trl112-venv/bin/pip install trl==1.12.0

then run, from the repository root:

    .venv/bin/python tests/benchmarks/ppo_vs_trl.py --trl-python /tmp/trl112-venv/bin/python

Measured: `tokens_per_second` = response-token slots (batch x response length) per second of training
over the steps after the first (the first pays one-off costs on both sides); `tokens_per_cpu_second` = the same
tokens per CPU-second of the worker process, less the CPU time of the thread that samples its memory (robust
when other jobs share the cores); `peak_rss_mb` = the worker
process's peak resident memory (imports and models included); `train_rss_increase_mb` = peak resident
memory sampled during training minus the resident memory just before it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parents[2] / "docs" / "benchmarks"
SIDES = ("ours", "ours-unfused-gelu", "trl", "trl-nogc")
"""Our PPO; ours with the models' own (unfused) GELU; trl's PPOTrainer as released; trl's PPOTrainer with
its `gc.collect()` calls removed."""


# --------------------------------------------------------------------------------------------------
# measuring (shared by both workers; standard library only)
# --------------------------------------------------------------------------------------------------


def rss_mb() -> float:
    """Resident memory of this process now, in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakMemory:
    """Samples resident memory every few milliseconds in a thread; `peak` is the largest sample."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.baseline = rss_mb()
        self.peak = self.baseline
        self.cpu_seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(self.interval)
        # CPU time this sampling thread used, taken off the worker's CPU time (it is not training).
        self.cpu_seconds = time.thread_time()

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def cpu_model() -> str:
    """The CPU's model name (the host behind a developer machine changes, and ratios move with it)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def clock() -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds of this process) now."""
    return time.perf_counter(), time.process_time()


def summary(
    side: str, spec: dict, step_ends: list[tuple[float, float]], start: float, memory: PeakMemory
) -> dict:
    """Figures of one worker run from the `clock()` readings at the end of each step."""
    tokens_per_step = spec["batch_size"] * spec["response_length"]
    timed_steps = len(step_ends) - 1
    seconds = step_ends[-1][0] - step_ends[0][0]
    # The sampler ran through the whole training: take off its share of the timed steps' wall time.
    sampler_cpu = memory.cpu_seconds * seconds / (step_ends[-1][0] - start)
    cpu_seconds = step_ends[-1][1] - step_ends[0][1] - sampler_cpu
    return {
        "side": side,
        "steps": len(step_ends),
        "timed_steps": timed_steps,
        "first_step_seconds": step_ends[0][0] - start,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "sampler_cpu_seconds": sampler_cpu,
        "tokens": tokens_per_step * timed_steps,
        "tokens_per_second": tokens_per_step * timed_steps / seconds,
        "tokens_per_cpu_second": tokens_per_step * timed_steps / cpu_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "train_rss_increase_mb": memory.peak - memory.baseline,
    }


# --------------------------------------------------------------------------------------------------
# our side (project environment)
# --------------------------------------------------------------------------------------------------


def run_ours(spec: dict, fused_gelu: bool = True) -> dict:
    """Our PPOTrainer on `spec`; `fused_gelu=False` puts back the models' own `gelu_new` modules after the
    trainer swapped them for one-kernel GELU (`dense_reward.ppo.activations`), to show what that swap gives."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification

    from dense_reward.ppo.rollout import sequence_inputs, tokenize_prompts
    from dense_reward.run import build_trainer
    from dense_reward.shaping import RewardOutput
    from tune_jobs.config import load_sweep_config

    torch.set_num_threads(spec["threads"])
    config = load_sweep_config(ROOT / "tune_jobs" / "configs" / "tiny.yaml").library_config().with_overrides(
        {
            "models.policy.path": spec["model_path"],
            "ppo.batch_size": spec["batch_size"],
            "ppo.mini_batch_size": spec["batch_size"] // spec["num_mini_batches"],
            "ppo.gradient_accumulation_steps": 1,
            "ppo.update_epochs": spec["ppo_epochs"],
            "ppo.max_new_tokens": spec["response_length"],
            "ppo.temperature": spec["temperature"],
            "ppo.learning_rate": spec["learning_rate"],
            "ppo.kl_coef": spec["kl_coef"],
            "ppo.lr_schedule": "linear",
            "ppo.seed": spec["seed"],
        }
    )
    reward_model = AutoModelForSequenceClassification.from_pretrained(spec["model_path"], num_labels=1).eval()

    def sparse_reward(prompts: list[str], response_token_ids: list[list[int]]) -> RewardOutput:
        """The RM score of [prompt | response] at the last response token, all of it on that token."""
        tick = time.perf_counter()
        tokenizer = trainer.tokenizer
        query_ids, query_mask = tokenize_prompts(tokenizer, prompts, torch.device("cpu"))
        width = max(len(ids) for ids in response_token_ids)
        response_ids = torch.full((len(prompts), width), tokenizer.pad_token_id)
        for i, ids in enumerate(response_token_ids):
            response_ids[i, : len(ids)] = torch.tensor(ids)
        with torch.no_grad():
            hidden = reward_model.transformer(
                **sequence_inputs(query_ids, query_mask, response_ids)
            ).last_hidden_state
            logits = reward_model.score(hidden).squeeze(-1)  # (B, Tq + Tr)
        last = torch.tensor([query_ids.shape[1] + len(ids) - 1 for ids in response_token_ids])
        scores = logits[torch.arange(len(prompts)), last].double().numpy()
        dense = [np.eye(len(ids))[-1] * score for ids, score in zip(response_token_ids, scores, strict=True)]
        seconds = time.perf_counter() - tick
        return RewardOutput(
            scores=scores,
            dense=dense,
            responses=[],
            timings={"scoring_seconds": seconds, "attribution_seconds": 0.0},
        )

    trainer = build_trainer(config, sparse_reward, total_steps=spec["steps"])
    if not fused_gelu:
        from transformers.activations import NewGELUActivation

        from dense_reward.ppo.activations import TanhGELU

        for model in (trainer.policy, trainer.reference, trainer.critic):
            for parent in list(model.modules()):
                for name, child in parent.named_children():
                    if isinstance(child, TanhGELU):
                        setattr(parent, name, NewGELUActivation())
    prompts = spec["prompts"]
    batch_size = spec["batch_size"]
    step_ends, lengths = [], []
    with PeakMemory() as memory:
        start = time.perf_counter()
        for step in range(spec["steps"]):
            begin = (step * batch_size) % len(prompts)
            metrics = trainer.step(prompts[begin : begin + batch_size])
            lengths.append(metrics["response_length"])
            step_ends.append(clock())
    result = summary("ours" if fused_gelu else "ours-unfused-gelu", spec, step_ends, start, memory)
    result["mean_response_length"] = float(np.mean(lengths))
    return result


# --------------------------------------------------------------------------------------------------
# trl side (its own environment: trl 1.12.0, no project import)
# --------------------------------------------------------------------------------------------------


def run_trl(spec: dict, gc_collect: bool = True) -> dict:
    """trl's PPOTrainer on `spec`; `gc_collect=False` turns its two `gc.collect()` calls per step into no-ops.

    The trainer module calls `gc.collect()` after the rollout and at the end of every step (trl 1.12.0,
    `trl/experimental/ppo/ppo_trainer.py`, which does `import gc` at module level). Removing them replaces
    that module's global name `gc` with an object whose `collect` does nothing, in this worker process only:
    Python's automatic cyclic collection and every other caller of `gc.collect` are untouched.
    """
    import copy
    import types

    import torch
    import trl
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        TrainerCallback,
    )
    from trl.experimental.ppo import PPOConfig, PPOTrainer
    from trl.experimental.ppo import ppo_trainer as trl_ppo_module

    if not gc_collect:
        calls = {"count": 0}

        def skip_collect(generation: int = 2) -> int:
            calls["count"] += 1
            return 0

        trl_ppo_module.gc = types.SimpleNamespace(collect=skip_collect)

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    path = spec["model_path"]
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    policy = AutoModelForCausalLM.from_pretrained(path)
    reference = copy.deepcopy(policy)
    reward_model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    value_model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    prompts = spec["prompts"]
    dataset = Dataset.from_dict({"input_ids": [tokenizer(p)["input_ids"] for p in prompts]})

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[tuple[float, float]] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(clock())

    step_clock = StepClock()
    with tempfile.TemporaryDirectory() as output_dir:
        args = PPOConfig(
            output_dir=output_dir,
            report_to="none",
            per_device_train_batch_size=spec["batch_size"] // spec["num_mini_batches"],
            gradient_accumulation_steps=spec["num_mini_batches"],
            num_mini_batches=spec["num_mini_batches"],
            num_ppo_epochs=spec["ppo_epochs"],
            response_length=spec["response_length"],
            total_episodes=spec["batch_size"] * spec["steps"],
            learning_rate=spec["learning_rate"],
            kl_coef=spec["kl_coef"],
            temperature=spec["temperature"],
            stop_token="eos",
            seed=spec["seed"],
            bf16=False,
            gradient_checkpointing=False,
            use_cpu=True,
            save_strategy="no",
            num_sample_generations=0,
            logging_steps=1,
            disable_tqdm=True,
        )
        trainer = PPOTrainer(
            args=args,
            processing_class=tokenizer,
            model=policy,
            ref_model=reference,
            reward_model=reward_model,
            train_dataset=dataset,
            value_model=value_model,
            callbacks=[step_clock],
        )
        with PeakMemory() as memory:
            start = time.perf_counter()
            trainer.train()
    result = summary("trl" if gc_collect else "trl-nogc", spec, step_clock.ends, start, memory)
    result["trl_version"] = trl.__version__
    if not gc_collect:
        # Proof that the patch reached the calls it removes (two per step).
        result["gc_collect_calls_skipped"] = calls["count"]
    return result


# --------------------------------------------------------------------------------------------------
# orchestration (project environment)
# --------------------------------------------------------------------------------------------------


def worker(python: str, side: str, spec_path: Path, out_path: Path) -> dict:
    """Run one side in its own interpreter and read back its figures."""
    command = [python, __file__, "--worker", side, "--spec", str(spec_path), "--out", str(out_path)]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{side} worker failed ({' '.join(command)}):\n{completed.stderr[-4000:]}")
    return json.loads(out_path.read_text())


PYTHON_OF_SIDE = {"ours": "project", "ours-unfused-gelu": "project", "trl": "trl", "trl-nogc": "trl"}
FIGURES = ("tokens_per_second", "tokens_per_cpu_second", "peak_rss_mb", "train_rss_increase_mb", "first_step_seconds")


def ratios(runs: dict[str, list[dict]], baseline: str) -> dict[str, float]:
    """Ours over `baseline`: ratio of the medians and median of the per-repeat ratios (runs side by side)."""
    ours, theirs = runs["ours"], runs[baseline]
    out = {}
    for key, name in (("tokens_per_second", "wall"), ("tokens_per_cpu_second", "cpu")):
        out[f"{name}_ratio_of_medians"] = statistics.median(r[key] for r in ours) / statistics.median(
            r[key] for r in theirs
        )
        out[f"{name}_median_paired_ratio"] = statistics.median(
            a[key] / b[key] for a, b in zip(ours, theirs, strict=True)
        )
    out["peak_rss_ratio"] = statistics.median(r["peak_rss_mb"] for r in ours) / statistics.median(
        r["peak_rss_mb"] for r in theirs
    )
    return out


def markdown(report: dict) -> str:
    spec = report["setup"]
    lines = [
        "# PPO throughput: dense-reward vs trl 1.12.0 (`trl.experimental.ppo.PPOTrainer`)",
        "",
        f"Tiny GPT-2 (`builtin:tiny-gpt2`), CPU fp32, {spec['threads']} torch thread(s); batch {spec['batch_size']}, "
        f"response length {spec['response_length']}, {spec['ppo_epochs']} PPO epochs, "
        f"{spec['num_mini_batches']} minibatch(es), {spec['steps']} steps (first one untimed), sparse reward; "
        f"median of {spec['repeats']} interleaved runs per side; 1-minute load average "
        f"{spec['load_average_at_start']:.1f} on {os.cpu_count()} cores ({spec.get('cpu_model', 'CPU not recorded')}) "
        "when the runs started. "
        "`trl-nogc` is trl with the two `gc.collect()` calls its trainer makes per step turned into no-ops "
        "(its module's `gc` name replaced, in that worker only).",
        "",
        "| side | tokens/s (wall) | tokens per CPU-second | peak RSS (MiB) | RSS increase in training (MiB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for side in report["sides"]:
        figures = report[side]
        lines.append(
            f"| {side} | {figures['tokens_per_second']:.0f} | {figures['tokens_per_cpu_second']:.0f} | "
            f"{figures['peak_rss_mb']:.0f} | "
            f"{figures['train_rss_increase_mb']:.0f} |"
        )
    if report.get("ratios"):
        lines += [
            "",
            "| ours over | tokens/s (wall), ratio of medians | median of paired ratios | "
            "tokens per CPU-s, ratio of medians | median of paired ratios | peak RSS ratio |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for baseline, figures in report["ratios"].items():
            lines.append(
                f"| {baseline} | **{figures['wall_ratio_of_medians']:.2f}x** | "
                f"{figures['wall_median_paired_ratio']:.2f}x | **{figures['cpu_ratio_of_medians']:.2f}x** | "
                f"{figures['cpu_median_paired_ratio']:.2f}x | {figures['peak_rss_ratio']:.2f} |"
            )
        lines += [
            "",
            "A paired ratio compares the runs of one repeat, which ran back to back. One thread per side: "
            "CPU time depends far less than wall-clock time on other jobs sharing the cores.",
        ]
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--trl-python", default="/tmp/trl112-venv/bin/python", help="Interpreter of the trl venv."
    )
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES), help="Sides to run.")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--response-length", type=int, default=32)
    parser.add_argument("--ppo-epochs", type=int, default=4)
    parser.add_argument("--num-mini-batches", type=int, default=1)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="Tiny sizes, one repeat, our side only unless --sides says otherwise (checks the script runs).",
    )
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch_size, args.response_length, args.ppo_epochs, args.steps, args.repeats = 4, 8, 2, 3, 1
        if argv is None or "--sides" not in argv:
            args.sides = ["ours"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        spec = json.loads(args.spec.read_text())
        if args.worker.startswith("ours"):
            result = run_ours(spec, fused_gelu=args.worker == "ours")
        else:
            result = run_trl(spec, gc_collect=args.worker == "trl")
        args.out.write_text(json.dumps(result))
        return 0

    sys.path.insert(0, str(ROOT))
    from dense_reward.builtin.tiny import corpus
    from dense_reward.models import resolve_model_path

    pythons = {"project": sys.executable, "trl": args.trl_python}
    with tempfile.TemporaryDirectory() as scratch:
        os.environ.setdefault("DENSE_REWARD_CACHE", str(Path(scratch) / "cache"))
        spec = {
            "model_path": resolve_model_path("builtin:tiny-gpt2"),
            "prompts": corpus(n_sentences=max(64, args.batch_size * args.steps), seed=3),
            "batch_size": args.batch_size,
            "response_length": args.response_length,
            "ppo_epochs": args.ppo_epochs,
            "num_mini_batches": args.num_mini_batches,
            "steps": args.steps,
            "threads": args.threads,
            "temperature": 1.0,
            "learning_rate": 3e-5,
            "kl_coef": 0.05,
            "seed": 0,
        }
        spec_path = Path(scratch) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        runs: dict[str, list[dict]] = {side: [] for side in args.sides}
        load_average = os.getloadavg()[0]
        for repeat in range(args.repeats):
            for side in args.sides:
                python = pythons[PYTHON_OF_SIDE[side]]
                result = worker(python, side, spec_path, Path(scratch) / f"{side}-{repeat}.json")
                runs[side].append(result)
                print(f"{side} run {repeat + 1}: {result['tokens_per_second']:.0f} tokens/s, "
                      f"{result['tokens_per_cpu_second']:.0f} tokens/CPU-s, "
                      f"peak RSS {result['peak_rss_mb']:.0f} MiB", flush=True)  # fmt: skip

    report: dict = {"setup": {k: v for k, v in spec.items() if k not in ("prompts", "model_path")}}
    report["setup"]["repeats"] = args.repeats
    report["setup"]["load_average_at_start"] = load_average
    report["setup"]["cpu_model"] = cpu_model()
    report["sides"] = list(args.sides)
    for side, results in runs.items():
        report[side] = {key: statistics.median(r[key] for r in results) for key in FIGURES}
        report[side]["runs"] = results
    if "ours" in runs:
        report["ratios"] = {side: ratios(runs, side) for side in runs if side != "ours"}
    report["command"] = " ".join(["python", "tests/benchmarks/ppo_vs_trl.py", *(argv or sys.argv[1:])])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "ppo_vs_trl.json").write_text(json.dumps(report, indent=2))
    (args.out_dir / "ppo_vs_trl.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
