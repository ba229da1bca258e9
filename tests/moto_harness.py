"""A local AWS for deploying with the real CDK CLI: moto's server in this process, a custom-resource answerer, and a
runner for CLI commands that keeps their output and never leaves a process behind.

Used by tests/test_deploy_local.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("localhost", 0))
        return int(sock.getsockname()[1])


class MotoServer:
    """moto's threaded server on localhost, with tests/moto_patches.py applied while it runs.

    MOTO_PORT is set while it runs: moto builds the custom resources' ResponseURL from it.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://localhost:{self.port}"  # localhost, not 127.0.0.1: the URLs moto makes use it
        self._server: Any = None
        self._patches: Any = None
        self._previous_moto_port: str | None = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        from tests import moto_patches

        self._previous_moto_port = os.environ.get("MOTO_PORT")
        os.environ["MOTO_PORT"] = str(self.port)
        self._patches = moto_patches.applied()
        self._patches.__enter__()
        self._server = ThreadedMotoServer(ip_address="localhost", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        try:
            if self._server is not None:
                try:  # forget every resource, so later mock_aws tests of the session start clean
                    request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
                    urllib.request.urlopen(request, timeout=10).read()
                finally:
                    self._server.stop()
                    self._server = None
        finally:
            if self._patches is not None:
                self._patches.__exit__(None, None, None)
                self._patches = None
            if self._previous_moto_port is None:
                os.environ.pop("MOTO_PORT", None)
            else:
                os.environ["MOTO_PORT"] = self._previous_moto_port

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@dataclass
class CustomResourceWatcher:
    """Answers SUCCESS for every custom resource of a stack in progress: moto cannot run their Lambdas (no Docker).

    A daemon thread polls every `interval` seconds until `stop()`; what it answered and any error are kept.
    """

    server: MotoServer
    interval: float = 0.5
    answered: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
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
                self._answer(cloudformation, done)
            except Exception as error:  # kept for the failure message; the next poll tries again
                if not self._stop.is_set():
                    self.errors.append(repr(error))
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
                self.answered.append(f"{stack['StackName']}/{resource['LogicalResourceId']} ({stack['StackStatus']})")


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


def run_cli(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> CliRun:
    """Run a command in its own process group; on timeout kill that group (the CLI and the app it started)."""
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
    return CliRun(args=args, returncode=returncode, output=output, seconds=time.monotonic() - started)


def cli_env(server: MotoServer, **extra: str) -> dict[str, str]:
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
