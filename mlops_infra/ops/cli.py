"""`mlops-ops`: the operator CLI. Each command module registers its subcommand.

Errors are sentences on stderr with distinct exit codes (see `errors.py`), never tracebacks.
"""

from __future__ import annotations

import argparse
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
