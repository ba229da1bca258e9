"""`mlops-ops`: the operator CLI. Each command module registers its subcommand.

Errors are sentences on stderr with distinct exit codes (see `errors.py`), never tracebacks. A closed standard
output (`mlops-ops ... | head`) ends the command quietly with 141, as a shell reports a process ended by SIGPIPE.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mlops_infra.ops.errors import OpsError


def build_parser() -> argparse.ArgumentParser:
    from mlops_infra.ops import commands

    parser = argparse.ArgumentParser(prog="mlops-ops", description="Operate MLOps Studio environments.")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in commands.REGISTRY:
        register(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = _run(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
    except BrokenPipeError:
        # Python's "Note on SIGPIPE": point stdout at devnull so that the flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return code


def _run(args: argparse.Namespace) -> int:
    try:
        result: int = args.run(args)
    except OpsError as error:
        print(f"mlops-ops: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("mlops-ops: interrupted", file=sys.stderr)
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
