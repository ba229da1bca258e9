"""The local deploy of tests/test_deploy_local.py, in a background process that starts with the test session.

conftest.py starts it (`LocalDeploy`) at configure time when the session may run tests/test_deploy_local.py, so
its moto server, bootstrap, deploy and redeploy (about 25 s, mostly the CDK CLI and moto) overlap the other tests;
the module's fixture waits for its report, and the tests then query the moto server, which serves until the
session ends.

A process of its own, not a thread: moto's state is process-wide, and the `mock_aws` tests of the session
(tests/test_ops_aws.py, tests/test_ops_model.py) reset every backend, the deployed stacks with them.

`python -m tests.local_deploy FOLDER PORT` (from the repository root) applies tests/moto_patches.py, serves moto on
localhost:PORT with the custom-resource watcher, runs `deploy_chain` of tests/test_deploy_local.py in FOLDER and
writes one JSON line per event on stdout: `{"ready": endpoint}`, then `{"report": ...}`. Everything else it (or
moto) prints goes to its stderr, FOLDER/local-deploy.log. It stops (a CLI command still running, the watcher,
the server) when its stdin closes, so also when the test session ends without stopping it, or on SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any

from tests.process_group import end_group

ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_SECONDS = 15.0


class LocalDeploy:
    """The background process, seen from the test session: start it now, wait for its report later, stop it."""

    def __init__(self, folder: Path) -> None:
        from tests.moto_harness import free_port

        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.log_path = folder / "local-deploy.log"
        self.started = time.monotonic()
        self._events: dict[str, Any] = {}
        self._pending = b""
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.local_deploy", str(folder), str(free_port())],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )

    def wait(self, timeout: float) -> dict[str, Any]:
        """The chain's report, at most `timeout` seconds after the start; raise if the process ends or takes longer."""
        assert self.process.stdout is not None
        deadline = self.started + timeout
        while "report" not in self._events:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"the local deploy sent no report within {timeout:.0f} s\n{self.log()}")
            readable, _, _ = select.select([self.process.stdout], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(self.process.stdout.fileno(), 1 << 16)
            if not chunk:
                returncode = self.process.wait()
                raise RuntimeError(f"the local deploy process exited ({returncode}) before its report\n{self.log()}")
            *lines, self._pending = (self._pending + chunk).split(b"\n")
            for line in lines:
                self._events.update(json.loads(line))
        report: dict[str, Any] = self._events["report"]
        return report

    def log(self) -> str:
        return f"{self.log_path}:\n{self.log_path.read_text(errors='replace')}"

    def terminate(self) -> None:
        """Close its stdin: it stops what runs and exits (without waiting for it)."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()

    def stop(self) -> None:
        """terminate() and wait; SIGTERM it, then SIGKILL its process group, if it does not exit."""
        self.terminate()
        try:
            self.process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            end_group(self.process, STOP_GRACE_SECONDS)
        if self.process.stdout is not None:
            self.process.stdout.close()


# ---------------------------------------------------------------------------------------------- the process


def _send(channel: IO[str], event: dict[str, Any]) -> None:
    channel.write(json.dumps(event) + "\n")
    channel.flush()


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM: leave whatever runs through SystemExit (run_cli kills a running CLI), once."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(0)


def _terminate_at_eof() -> None:
    sys.stdin.buffer.read()  # returns when the test session closes our stdin, or ends
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str]) -> int:
    folder, port = Path(argv[0]), int(argv[1])
    channel = os.fdopen(os.dup(1), "w")  # the events; whatever else writes to stdout goes to the log
    os.dup2(2, 1)
    signal.signal(signal.SIGTERM, _terminate)
    threading.Thread(target=_terminate_at_eof, name="stdin-eof", daemon=True).start()

    from tests.moto_harness import CustomResourceWatcher, MotoServer
    from tests.test_deploy_local import deploy_chain

    server = MotoServer(port)
    server.start()
    try:
        watcher = CustomResourceWatcher(server)
        watcher.start()
        try:
            _send(channel, {"ready": server.endpoint})
            report = deploy_chain(server, watcher.log, folder)
            watcher.stop()  # nothing deploys any more: no more polls
            _send(channel, {"report": report})
            while True:
                signal.pause()  # serve until SIGTERM (or the end of stdin)
        finally:
            watcher.stop()
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
