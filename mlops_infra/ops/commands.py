"""The subcommands of `mlops-ops`, in the order `--help` lists them.

Each entry is a function `register(subparsers)` that adds one subcommand whose parser sets
`run=<function(args) -> int>`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

REGISTRY: list[Register] = []
