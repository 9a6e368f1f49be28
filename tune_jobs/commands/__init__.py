"""One module per `dense-reward` subcommand, each with `add_arguments(parser)` and `run(args) -> int`."""
