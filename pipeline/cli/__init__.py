"""The `rlpipe` command: `rlpipe --version`, `rlpipe demo`, `rlpipe plot`, `rlpipe tail`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import pipeline

# subcommand -> (module whose `main(argv) -> int` runs it, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("pipeline.cli.demo", "run the demo: an Acme EnvironmentLoop logging through rlpipe"),
    "plot": ("pipeline.cli.plot", "draw learning curves from CSV/JSONL/progress.txt files or runs"),
    "tail": ("pipeline.cli.tail", "live view of the latest values of a running experiment"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="rlpipe", description="rlpipe: metrics-logging pipelines for reinforcement learning"
    )
    parser.add_argument("--version", action="version", version=f"rlpipe {pipeline.__version__}")
    parser.add_argument("command", nargs="?", choices=sorted(SUBCOMMANDS), help="subcommand")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    epilog = "\n".join(f"  {name:<6} {text}" for name, (_, text) in SUBCOMMANDS.items())
    parser.epilog = "subcommands:\n" + epilog
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parsed = parser.parse_args(args[:1] if args and not args[0].startswith("-") else args)
    if parsed.command is None:
        parser.print_help()
        return 2
    module_name, _ = SUBCOMMANDS[parsed.command]
    module = importlib.import_module(module_name)
    status: int = module.main(args[1:])
    return status
