"""The subcommands of `mlops-ops`, in the order `--help` lists them.

Each entry is a function `register(subparsers)` that adds one subcommand whose parser sets
`run=<function(args) -> int>`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from mlops_infra.ops import cost, diff, model, service, smoke

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

REGISTRY: list[Register] = [diff.register, model.register, service.register, smoke.register, cost.register]
