"""The `rlpipe` command: `rlpipe --version`, `rlpipe demo`, `rlpipe plot`, `rlpipe tail`.

Every subcommand runs under `pipeline.cli.errors.guard`: an error is one line on stderr
starting with `rlpipe <subcommand>: ` and a non-zero exit status (2: bad arguments or input;
1: a missing extra, named with its `pip install -e '.[...]'`, or anything else; 130: Ctrl-C),
never a traceback. Set the environment variable `RLPIPE_DEBUG=1` to get the traceback of an
unexpected error instead. Text the command prints that it cannot encode for stdout is written
as backslash escapes.
"""

from __future__ import annotations

import argparse
import importlib
import io
import sys
from collections.abc import Sequence

import pipeline
from pipeline.cli.errors import DEBUG_HELP, guard

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
    parser.epilog = "subcommands:\n" + epilog + "\n\n" + DEBUG_HELP
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parsed = parser.parse_args(args[:1] if args and not args[0].startswith("-") else args)
    if parsed.command is None:
        parser.print_help()
        return 2
    module_name, _ = SUBCOMMANDS[parsed.command]
    _escape_what_stdout_cannot_encode()

    def run() -> int:
        status: int = importlib.import_module(module_name).main(args[1:])
        return status

    return guard(f"rlpipe {parsed.command}", run)


def _escape_what_stdout_cannot_encode() -> None:
    """Lets stdout write any text (a path holding undecodable bytes, a column name on an
    ASCII terminal) as backslash escapes rather than fail, as stderr already does."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
