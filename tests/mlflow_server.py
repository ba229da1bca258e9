"""A real local MLflow tracking server for the operator CLI's model tests (`tests/test_ops_model.py`).

`running_mlflow_server(folder)` starts `python -m mlflow server` on a free port of 127.0.0.1 with a SQLite
backend store in `folder`, waits for `/health`, yields its URL and stops it (and every child it forked:
the server runs uvicorn workers) when the block exits, on failures too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.process_group import end_group, signal_group

START_DEADLINE_SECONDS = 90.0
STOP_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class MlflowServer:
    url: str
    database: Path  # the SQLite backend store, for states the REST API cannot make (a version not READY)
    start_seconds: float


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (the server and its workers), SIGKILL it after a grace period."""
    end_group(process, STOP_GRACE_SECONDS)
    # Workers may outlive a server that exited on its own: the group is gone only when they are.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


class MlflowServerProcess:
    """A server started now and waited for later, so its start-up can overlap other work."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.database = folder / "mlflow.db"
        self.log_path = folder / "server.log"
        # No telemetry: the server starts before pytest marks the session as a test run, which would turn it off.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
        env.pop("MLFLOW_TRACKING_URI", None)
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{self.database}",
            "--default-artifact-root",
            str(folder / "artifacts"),
        ]
        self.started = time.monotonic()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._ready: MlflowServer | None = None

    def wait(self) -> MlflowServer:
        """Block until /health answers (at most START_DEADLINE_SECONDS after the start); raise if it never does."""
        if self._ready is not None:
            return self._ready
        deadline = self.started + START_DEADLINE_SECONDS
        while not _healthy(self.url):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited with {self.process.returncode} before it was healthy:\n"
                    f"{self.log_path.read_text()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server not healthy after {START_DEADLINE_SECONDS:.0f} s:\n{self.log_path.read_text()}"
                )
            time.sleep(0.25)
        self._ready = MlflowServer(url=self.url, database=self.database, start_seconds=time.monotonic() - self.started)
        return self._ready

    def terminate(self) -> None:
        """Start stopping it (SIGTERM to its process group), without waiting: stop() waits."""
        signal_group(self.process, signal.SIGTERM)

    def stop(self) -> None:
        _stop(self.process)


@contextlib.contextmanager
def running_mlflow_server(folder: Path) -> Iterator[MlflowServer]:
    server = MlflowServerProcess(folder)
    try:
        yield server.wait()
    finally:
        server.stop()
