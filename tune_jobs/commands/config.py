"""`dense-reward config validate FILE` and `dense-reward config show FILE`."""

from __future__ import annotations

import argparse

import yaml

from tune_jobs.config import load_sweep_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["validate", "show"], help="validate: check the file; show: print it with defaults filled in")
    parser.add_argument("file", help="YAML config file")


def run(args: argparse.Namespace) -> int:
    config = load_sweep_config(args.file)
    if args.action == "validate":
        from dense_reward.models import check_model_paths

        notes = check_model_paths(config)
        print(f"{args.file}: valid ({config.name}: {len(config.shaping.sources)} sources, {config.search.trials} trials)")
        for note in notes:
            print(f"  {note}")
    else:
        print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
    return 0
