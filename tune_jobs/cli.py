"""The `dense-reward` command.

Each subcommand lives in `tune_jobs/commands/<name>.py` with `add_arguments(parser)` and
`run(args) -> int`; this file only builds the parser, imports the chosen command lazily (so
`--help` stays fast) and turns a `UserError` into one line on stderr and exit status 2, and a
`ConfigWarning` into one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from dense_reward.errors import ConfigWarning, UserError

COMMANDS: dict[str, str] = {
    "sweep": "run a BO sweep of reward-shaping weights (local Ray by default)",
    "submit": "submit a sweep to a Ray cluster through the Ray Jobs API",
    "jobs": "list or stop jobs on a Ray cluster",
    "results": "show the trial table, the best observed and the recommended trial of a sweep",
    "final": "continue training a sweep's recommended (or confirmed, or best observed) trial from its checkpoint",
    "explain": "show per-token rewards of one response, per source and mixed",
    "ui": "open the MLflow UI on a sweep's tracking store",
    "demo": "build the offline demo kit and run the demo sweep",
    "config": "validate or show a config file",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dense-reward",
        description="Dense per-token rewards for RLHF, with the mixing weights found by Bayesian optimisation.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        # No help here: `dense-reward NAME --help` is answered by the command's own parser below.
        sub = subparsers.add_parser(name, help=help_text, add_help=False)
        sub.set_defaults(_module=f"tune_jobs.commands.{name}")
    return parser


def one_line_config_warnings(command: str) -> None:
    """Print each `ConfigWarning` as ``dense-reward COMMAND: warning: MESSAGE`` (no library source line);
    other warnings keep Python's format."""
    default = warnings.formatwarning

    def format_warning(message, category, filename, lineno, line=None) -> str:
        if issubclass(category, ConfigWarning):
            return f"dense-reward {command}: warning: {message}\n"
        return default(message, category, filename, lineno, line)

    warnings.formatwarning = format_warning


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    # Parse the command name first, then let that command add its own arguments.
    known, _ = parser.parse_known_args(argv)
    one_line_config_warnings(known.command)
    module = importlib.import_module(known._module)
    sub = argparse.ArgumentParser(prog=f"dense-reward {known.command}", description=COMMANDS[known.command])
    module.add_arguments(sub)
    args = sub.parse_args(argv[argv.index(known.command) + 1 :])
    try:
        return int(module.run(args) or 0)
    except UserError as error:
        print(f"dense-reward {known.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dense-reward {known.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
