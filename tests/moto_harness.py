"""A local AWS for deploying with the real CDK CLI: moto's server, a custom-resource answerer, and a runner for CLI
commands that keeps their output and never leaves a process behind.

The server runs in a process of its own (tests/local_deploy.py, with the watcher and the CLI commands): moto's
state is process-wide, and the `mock_aws` tests of the session reset it. The tests talk to it through `LocalAws`.
Used by tests/test_deploy_local.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("localhost", 0))
        return int(sock.getsockname()[1])


class LocalAws:
    """A moto server by its endpoint, and boto3 clients for it (fake credentials)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


# The CloudFormation operations that create, update or delete a stack's resources (one request each in moto).
STACK_OPERATIONS = ("create_stack", "update_stack", "execute_change_set", "delete_stack")


class MotoServer(LocalAws):
    """moto's threaded server on localhost, in this process, with tests/moto_patches.py applied while it runs.

    MOTO_PORT is set while it runs: moto builds the custom resources' ResponseURL from it. `stack_operations` is
    held by every request of STACK_OPERATIONS, so the watcher (in this process too) can wait for one to finish:
    moto creates a stack's resources lazily and not thread-safely, and an answer that comes while it is still
    creating them is lost (the stack stays in progress) or creates resources twice.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        # localhost, not 127.0.0.1: the URLs moto makes use it
        super().__init__(f"http://localhost:{self.port}")
        self.stack_operations = threading.Lock()
        self._server: Any = None
        self._patches: Any = None
        self._serialized: dict[str, Any] = {}
        self._previous_moto_port: str | None = None

    def start(self) -> None:
        from moto.cloudformation.models import CloudFormationBackend
        from moto.server import ThreadedMotoServer

        from tests import moto_patches

        self._previous_moto_port = os.environ.get("MOTO_PORT")
        os.environ["MOTO_PORT"] = str(self.port)
        self._patches = moto_patches.applied()
        self._patches.__enter__()
        for name in STACK_OPERATIONS:
            self._serialized[name] = original = vars(CloudFormationBackend)[name]
            setattr(CloudFormationBackend, name, self._holding_the_lock(original))
        self._server = ThreadedMotoServer(ip_address="localhost", port=self.port, verbose=False)
        self._server.start()

    def _holding_the_lock(self, operation: Any) -> Any:
        def serialized(backend: Any, *args: Any, **kwargs: Any) -> Any:
            with self.stack_operations:
                return operation(backend, *args, **kwargs)

        return serialized

    def stop(self) -> None:
        try:
            if self._server is not None:
                self._server.stop()
                self._server = None
        finally:
            if self._serialized:
                from moto.cloudformation.models import CloudFormationBackend

                for name, original in self._serialized.items():
                    setattr(CloudFormationBackend, name, original)
                self._serialized = {}
            if self._patches is not None:
                self._patches.__exit__(None, None, None)
                self._patches = None
            if self._previous_moto_port is None:
                os.environ.pop("MOTO_PORT", None)
            else:
                os.environ["MOTO_PORT"] = self._previous_moto_port


@dataclass
class WatcherLog:
    """What the custom-resource watcher answered, and the errors of its polls."""

    answered: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class CustomResourceWatcher:
    """Answers SUCCESS for every custom resource of a stack in progress: moto cannot run their Lambdas (no Docker).

    A daemon thread polls every `interval` seconds until `stop()`, never while the server runs a stack operation;
    what it answered and any error are kept in `log`.
    """

    server: MotoServer
    interval: float = 0.5
    log: WatcherLog = field(default_factory=WatcherLog)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="custom-resource-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            assert not self._thread.is_alive(), "the custom-resource watcher did not stop"

    def _run(self) -> None:
        cloudformation = self.server.client("cloudformation")
        done: set[tuple[str, str, str]] = set()
        while not self._stop.is_set():
            try:
                with self.server.stack_operations:
                    self._answer(cloudformation, done)
            except Exception as error:  # kept for the failure message; the next poll tries again
                if not self._stop.is_set():
                    self.log.errors.append(repr(error))
            self._stop.wait(self.interval)

    def _answer(self, cloudformation: Any, done: set[tuple[str, str, str]]) -> None:
        for stack in cloudformation.list_stacks()["StackSummaries"]:
            if not stack["StackStatus"].endswith("IN_PROGRESS"):
                continue
            resources = cloudformation.describe_stack_resources(StackName=stack["StackId"])["StackResources"]
            for resource in resources:
                key = (stack["StackId"], resource["LogicalResourceId"], stack["StackStatus"])
                if not resource["ResourceType"].startswith("Custom::") or key in done:
                    continue
                body = {
                    "Status": "SUCCESS",
                    "StackId": stack["StackId"],
                    "LogicalResourceId": resource["LogicalResourceId"],
                    "RequestId": "moto-harness",
                    "PhysicalResourceId": resource.get("PhysicalResourceId") or resource["LogicalResourceId"],
                    "Data": {},
                }
                url = f"{self.server.endpoint}/cloudformation_{REGION}/cfnresponse?stack={stack['StackId']}"
                request = urllib.request.Request(
                    url, data=json.dumps(body).encode(), method="PUT", headers={"Content-Type": ""}
                )
                urllib.request.urlopen(request, timeout=10).read()
                done.add(key)
                answer = f"{stack['StackName']}/{resource['LogicalResourceId']} ({stack['StackStatus']})"
                self.log.answered.append(answer)


@dataclass
class CliRun:
    """One finished command: its arguments, exit code (None: timed out and killed), output and duration."""

    args: list[str]
    returncode: int | None
    output: str
    seconds: float

    def describe(self) -> str:
        status = "timed out" if self.returncode is None else f"exit {self.returncode}"
        return f"$ {' '.join(self.args)}\n({status} after {self.seconds:.1f} s)\n{self.output}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CliRun:
        return cls(**data)


def run_cli(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> CliRun:
    """Run a command in its own process group; on timeout, or if this process is stopped meanwhile (SystemExit,
    KeyboardInterrupt), kill that group (the CLI and the app it started)."""
    started = time.monotonic()
    process = subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
        returncode: int | None = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        returncode = None
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return CliRun(args=args, returncode=returncode, output=output, seconds=time.monotonic() - started)


def cli_env(server: LocalAws, **extra: str) -> dict[str, str]:
    """The environment of a CDK CLI run against the local AWS: fake credentials, nothing of the caller's AWS setup."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "CDK_"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_ENDPOINT_URL=server.endpoint,
        CDK_DISABLE_CLI_TELEMETRY="true",
        CDK_VALIDATION="false",
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
    )
    env.pop("MOTO_PORT", None)
    env.update(extra)
    return env
