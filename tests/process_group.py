"""Stopping a child started with `start_new_session=True` together with every process it started (its group)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Any


def signal_group(process: subprocess.Popen[Any], signum: int) -> None:
    """Send `signum` to the process group of `process`, if its leader still runs."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)


def end_group(process: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM the group, wait up to `grace` seconds for its leader to exit, then SIGKILL the group."""
    signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
