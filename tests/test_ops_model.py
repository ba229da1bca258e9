"""`mlops-ops model status|promote|rollback` against a real local MLflow server (started once per session).

Each test registers its own model (versions 1..3, each a model version whose source is a folder of a run's
artifacts: no training, no flavor) and runs the CLI in-process through `mlops_infra.ops.cli.main`; two
tests run the installed console script. `--redeploy` runs against moto's ECS (the MLflow calls pass through).
"""

from __future__ import annotations

import http.server
import itertools
import os
import shlex
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from moto import mock_aws

from mlops_infra.ops.cli import main
from tests.conftest import BACKGROUND
from tests.local_http import serving
from tests.mlflow_server import MlflowServer, free_port
from tests.test_ops_aws import current_task_definition, isolate_aws, make_ecs

MODEL_NUMBERS = itertools.count(1)
SERVER_START: dict[str, float] = {}


@pytest.fixture(scope="session")
def mlflow_server(pytestconfig: pytest.Config) -> MlflowServer:
    """The server conftest.py started in the background at configure time (stopped after this module's last test)."""
    server = pytestconfig.stash[BACKGROUND].mlflow_server().wait()
    SERVER_START["seconds"] = server.start_seconds
    return server


@pytest.fixture(autouse=True)
def mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail fast on connection errors, and no tracking server unless a test names one."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("GITHUB_ACTOR", raising=False)


@pytest.fixture(scope="session")
def client(mlflow_server: MlflowServer) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


@pytest.fixture(scope="session")
def run(client: MlflowClient) -> Any:
    """The run whose artifact folder is the source of every model version (the server wants local sources there)."""
    return client.create_run("0")


@pytest.fixture
def model(client: MlflowClient, run: Any, mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new registered model with READY versions 1, 2, 3; MLFLOW_TRACKING_URI names the server."""
    name = f"forecaster-{next(MODEL_NUMBERS)}"
    client.create_registered_model(name)
    for _ in range(3):
        client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    return name


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return dict(client.get_registered_model(name).aliases)


def ops(*argv: str) -> int:
    return main(["model", *argv])


# --- promote --------------------------------------------------------------------------------------------------


def test_promote_sets_champion_moves_previous_and_tags_who_and_when(
    client: MlflowClient, model: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ops("promote", model, "1", "--actor", "alice") == 0
    assert aliases(client, model) == {"champion": "1"}
    assert capsys.readouterr().out.startswith(f"{model}: champion - -> 1, previous unchanged (by alice at ")

    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    before = datetime.now(UTC).replace(microsecond=0)
    assert ops("promote", model, "3") == 0
    assert aliases(client, model) == {"champion": "3", "previous": "1"}
    assert capsys.readouterr().out.startswith(f"{model}: champion 1 -> 3, previous - -> 1 (by octocat at ")

    tags = client.get_model_version(model, "3").tags
    assert tags["promoted_by"] == "octocat"
    assert tags["promoted_with"] == "promote"
    assert tags["promoted_at"].endswith("Z")
    promoted_at = datetime.fromisoformat(tags["promoted_at"])
    assert before <= promoted_at <= datetime.now(UTC) + timedelta(seconds=1)
    assert client.get_model_version(model, "1").tags["promoted_by"] == "alice"


def test_promote_of_the_champion_changes_nothing(
    client: MlflowClient, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ops("promote", model, "1") == 0
    assert ops("promote", model, "2") == 0
    assert ops("promote", model, "2") == 0
    assert aliases(client, model) == {"champion": "2", "previous": "1"}  # previous not moved onto champion
    assert capsys.readouterr().out.endswith(f"Version 2 of {model} is champion already: aliases unchanged.\n")


def test_promote_of_an_unknown_or_not_ready_version(
    client: MlflowClient, model: str, mlflow_server: MlflowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ops("promote", model, "1") == 0
    capsys.readouterr()

    assert ops("promote", model, "9") == 4
    assert capsys.readouterr().err == f"mlops-ops: Model '{model}' has no version 9.\n"

    # The registry API cannot make a version that is not READY: the server's database can.
    with sqlite3.connect(mlflow_server.database) as database:
        database.execute(
            "UPDATE model_versions SET status = 'PENDING_REGISTRATION' WHERE name = ? AND version = 3", (model,)
        )
    database.close()
    assert ops("promote", model, "3") == 4
    assert capsys.readouterr().err == (
        f"mlops-ops: Version 3 of model '{model}' is PENDING_REGISTRATION, not READY: it cannot be champion.\n"
    )
    assert aliases(client, model) == {"champion": "1"}


def test_unknown_model(mlflow_server: MlflowServer, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["status", "nope"], ["promote", "nope", "1"], ["rollback", "nope"], ["rollback", "nope", "--to", "1"]):
        assert ops(*argv, "--tracking-uri", mlflow_server.url) == 3
        assert capsys.readouterr().err == f"mlops-ops: Model 'nope' is not registered at {mlflow_server.url}.\n"


def test_versions_are_numbers(model: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        ops("promote", model, "latest")
    assert exit_info.value.code == 2
    assert "'latest' is not a model version (a number from 1)" in capsys.readouterr().err


# --- rollback -------------------------------------------------------------------------------------------------


def test_rollback_swaps_champion_and_previous_and_can_be_undone(
    client: MlflowClient, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ops("promote", model, "1") == 0
    assert ops("promote", model, "2") == 0
    capsys.readouterr()

    assert ops("rollback", model, "--actor", "bob") == 0
    assert aliases(client, model) == {"champion": "1", "previous": "2"}
    assert capsys.readouterr().out.startswith(f"{model}: champion 2 -> 1, previous 1 -> 2 (by bob at ")
    tags = client.get_model_version(model, "1").tags
    assert (tags["promoted_by"], tags["promoted_with"]) == ("bob", "rollback")

    assert ops("rollback", model) == 0  # the rollback of the rollback
    assert aliases(client, model) == {"champion": "2", "previous": "1"}


def test_rollback_to_a_version(client: MlflowClient, model: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert ops("promote", model, "2") == 0
    assert ops("promote", model, "3") == 0
    assert ops("rollback", model, "--to", "1") == 0
    assert aliases(client, model) == {"champion": "1", "previous": "3"}
    assert client.get_model_version(model, "1").tags["promoted_with"] == "rollback --to"
    assert ops("rollback", model) == 0  # undone like any rollback
    assert aliases(client, model) == {"champion": "3", "previous": "1"}

    capsys.readouterr()
    assert ops("rollback", model, "--to", "7") == 4
    assert capsys.readouterr().err == f"mlops-ops: Model '{model}' has no version 7.\n"
    assert aliases(client, model) == {"champion": "3", "previous": "1"}


def test_rollback_without_previous(client: MlflowClient, model: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert ops("rollback", model) == 5
    assert capsys.readouterr().err == (
        f"mlops-ops: Model '{model}' has no alias 'previous' (champion: none): nothing to roll back to; "
        "use `rollback --to VERSION` or `promote`.\n"
    )
    assert ops("promote", model, "2") == 0
    assert ops("rollback", model) == 5
    assert "(champion: 2)" in capsys.readouterr().err
    assert aliases(client, model) == {"champion": "2"}


def test_rollback_without_champion(client: MlflowClient, model: str) -> None:
    client.set_registered_model_alias(model, "previous", "1")  # e.g. the champion alias was deleted by hand
    assert ops("rollback", model) == 0
    assert aliases(client, model) == {"champion": "1"}
    client.set_registered_model_alias(model, "previous", "2")
    client.delete_registered_model_alias(model, "champion")
    assert ops("rollback", model, "--to", "3") == 0
    assert aliases(client, model) == {"champion": "3", "previous": "2"}


@pytest.mark.parametrize(
    ("command", "setup", "half", "repair", "final"),
    [
        ("promote {model} 2", ["1"], {"champion": "1", "previous": "1"}, "promote {model} 2", {"champion": "2"}),
        (
            "rollback {model}",
            ["1", "2"],
            {"champion": "2", "previous": "2"},
            "rollback {model} --to 1",
            {"champion": "1"},
        ),
    ],
)
def test_a_failure_between_the_alias_writes_says_how_to_complete_the_change(
    client: MlflowClient,
    model: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    setup: list[str],
    half: dict[str, str],
    repair: str,
    final: dict[str, str],
) -> None:
    for version in setup:
        assert ops("promote", model, version) == 0
    before = aliases(client, model)
    capsys.readouterr()
    writes: list[str] = []
    set_alias = MlflowClient.set_registered_model_alias

    def second_write_fails(self: MlflowClient, name: str, alias: str, version: str) -> None:
        writes.append(alias)
        if len(writes) == 2:
            raise MlflowException("the registry database is read-only")
        set_alias(self, name, alias, version)

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", second_write_fails)
    assert ops(*command.format(model=model).split()) == 1
    captured = capsys.readouterr()
    champion = final["champion"]
    assert captured.out.startswith(f"{model}: champion {before['champion']} -> {champion}, previous ")  # the plan
    assert aliases(client, model) == half  # the champion has not moved: served as before
    repair_command = f"mlops-ops model {repair.format(model=model)}"
    assert captured.err == (
        f"mlops-ops: The MLflow server at {client.tracking_uri} refused the request: the registry database is "
        f"read-only. The alias change of {model} is half made: done previous -> {before['champion']}; not done "
        f"champion -> {champion}. Complete it with `{repair_command}`.\n"
    )
    assert ops(*shlex.split(repair_command)[2:]) == 0
    assert aliases(client, model) == {"champion": champion, "previous": before["champion"]}


def test_a_failure_to_tag_after_the_aliases_moved_says_so(
    client: MlflowClient, model: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fails(*_: Any) -> None:
        raise MlflowException("the registry database is read-only")

    monkeypatch.setattr(MlflowClient, "set_model_version_tag", fails)
    assert ops("promote", model, "1") == 1
    assert aliases(client, model) == {"champion": "1"}
    assert capsys.readouterr().err == (
        f"mlops-ops: The MLflow server at {client.tracking_uri} refused the request: the registry database is "
        "read-only. The aliases are moved as printed; the tags promoted_by, promoted_at, promoted_with of version 1 "
        "are not all set.\n"
    )


# --- status ---------------------------------------------------------------------------------------------------


def test_status_lists_versions_with_aliases_and_status(
    client: MlflowClient, model: str, mlflow_server: MlflowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ops("promote", model, "1", "--actor", "alice") == 0
    assert ops("promote", model, "2", "--actor", "alice") == 0
    client.set_registered_model_alias(model, "challenger", "3")
    capsys.readouterr()

    assert ops("status", model) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"Model {model} at {mlflow_server.url}: champion 2, previous 1"
    assert lines[1].split() == ["VERSION", "STATUS", "ALIASES", "CREATED", "(UTC)", "PROMOTED", "BY", "PROMOTED", "AT"]
    rows = [line.split() for line in lines[2:]]
    assert [row[:3] for row in rows] == [
        ["3", "READY", "challenger"],
        ["2", "READY", "champion"],
        ["1", "READY", "previous"],
    ]
    assert rows[0][5:] == ["-", "-"]
    assert rows[1][5] == "alice"
    assert rows[1][6].endswith("Z")


def test_status_of_a_model_without_versions(
    client: MlflowClient, mlflow_server: MlflowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    client.create_registered_model("empty-model")
    assert ops("status", "empty-model", "--tracking-uri", mlflow_server.url) == 0
    assert capsys.readouterr().out == f"Model empty-model at {mlflow_server.url}: no champion\nNo versions.\n"


# --- the server and its settings ------------------------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the backlog does) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        (f"http://127.0.0.1:{free_port()}", "connection refused"),
        ("http://mlflow.invalid:5000", "its host name does not resolve"),
    ],
)
def test_server_unreachable(uri: str, reason: str, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    for argv in (["status", "m"], ["promote", "m", "1"], ["rollback", "m"]):
        assert ops(*argv, "--tracking-uri", uri) == 6
        assert capsys.readouterr().err == f"mlops-ops: Cannot reach the MLflow server at {uri}: {reason}.\n"
    assert time.monotonic() - started < 10


def test_server_that_does_not_answer(
    silent_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    assert ops("status", "m", "--tracking-uri", f"http://127.0.0.1:{silent_port}") == 6
    assert capsys.readouterr().err.endswith(": no answer within 1 s (MLFLOW_HTTP_REQUEST_TIMEOUT).\n")


def test_not_an_mlflow_server(mlflow_server: MlflowServer, capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"{mlflow_server.url}/not-mlflow"
    assert ops("status", "m", "--tracking-uri", uri) == 6
    assert capsys.readouterr().err == (
        f"mlops-ops: {uri} does not answer the MLflow REST API (HTTP 404): is it an MLflow tracking server?\n"
    )


class FakeServer(http.server.BaseHTTPRequestHandler):
    """/busy/... answers 503 (a load balancer without healthy targets), /locked/... 401 (basic auth)."""

    def do_GET(self) -> None:
        status, body = (503, b"busy") if self.path.startswith("/busy/") else (401, b"You are not authenticated.")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def fake_server() -> Iterator[str]:
    with serving(FakeServer) as url:
        yield url


def test_server_answering_errors(
    fake_server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    assert ops("status", "m", "--tracking-uri", f"{fake_server}/busy") == 6
    assert capsys.readouterr().err == (
        f"mlops-ops: Cannot reach the MLflow server at {fake_server}/busy: it answers HTTP 503 again and again.\n"
    )
    assert ops("promote", "m", "1", "--tracking-uri", f"{fake_server}/locked") == 7
    assert capsys.readouterr().err == (
        f"mlops-ops: The MLflow server at {fake_server}/locked refused the request (UNAUTHENTICATED): set "
        "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an account allowed to manage the model.\n"
    )


@pytest.mark.parametrize(
    "uri", ["foo://bar", "/tmp/mlruns", "http://[::1", "http://", "https://mlflow:port", "databricks"]
)
def test_tracking_uri_is_an_http_url(uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["status", "m"], ["promote", "m", "1"], ["rollback", "m"]):
        assert ops(*argv, "--tracking-uri", uri) == 2
        assert capsys.readouterr().err == (
            f"mlops-ops: MLflow tracking URI {uri!r} is not an http:// or https:// URL with a host (the tracking "
            "server, e.g. http://mlflow.internal:5000): pass another --tracking-uri or MLFLOW_TRACKING_URI.\n"
        )


def test_missing_ops_extra(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    assert ops("status", "m", "--tracking-uri", "http://127.0.0.1:9") == 1
    assert capsys.readouterr().err == (
        "mlops-ops: Python package mlflow is not installed: the operator commands need the `ops` extra: "
        'pip install "mlops-infra[ops]".\n'
    )


def test_tracking_uri_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert ops("status", "m") == 2
    assert capsys.readouterr().err == (
        "mlops-ops: No MLflow tracking server: pass --tracking-uri or set MLFLOW_TRACKING_URI.\n"
    )


# --- --redeploy against moto ----------------------------------------------------------------------------------


@pytest.fixture
def fake_ecs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    isolate_aws(monkeypatch, tmp_path, credentials=True)
    with mock_aws():
        yield make_ecs()


def deployment_ids(ecs: Any) -> list[str]:
    service = ecs.describe_services(cluster="mlops-dev", services=["mlops-inference"])["services"][0]
    return [deployment["id"] for deployment in service["deployments"]]


def test_promote_and_rollback_redeploy_the_inference_service(
    client: MlflowClient, model: str, fake_ecs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    first = deployment_ids(fake_ecs)
    assert ops("promote", model, "1") == 0
    assert ops("promote", model, "2", "--redeploy", "--env", "dev") == 0
    second = deployment_ids(fake_ecs)
    assert second != first
    assert (
        capsys.readouterr()
        .out.splitlines()[-1]
        .startswith(
            f"Forced a new deployment of mlops-inference in cluster mlops-dev ({second[0]}): its new tasks load "
            f"champion 2 of {model}."
        )
    )
    assert ops("rollback", model, "--redeploy", "--env", "dev") == 0
    assert deployment_ids(fake_ecs) != second
    assert aliases(client, model) == {"champion": "1", "previous": "2"}
    assert current_task_definition(fake_ecs) == "mlops-inference:3"  # same task definition, new tasks


def test_redeploy_checks_the_service_before_changing_aliases(
    client: MlflowClient, model: str, fake_ecs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ops("promote", model, "1", "--redeploy", "--env", "staging") == 9
    assert capsys.readouterr().err == (
        "mlops-ops: AWS refused describing ECS service mlops-inference in cluster mlops-staging: "
        "Cluster not found (ClusterNotFoundException).\n"
    )
    assert aliases(client, model) == {}


def test_redeploy_needs_env_and_env_needs_redeploy(model: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert ops("promote", model, "1", "--redeploy") == 2
    assert "--redeploy needs --env ENV" in capsys.readouterr().err
    assert ops("rollback", model, "--env", "dev") == 2
    assert "--env is for --redeploy" in capsys.readouterr().err


# --- the console script ---------------------------------------------------------------------------------------


def console_script(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("mlops-ops")
    return subprocess.run([str(script), *argv], capture_output=True, text=True, timeout=120, check=False, env=env)


def test_console_script(client: MlflowClient, model: str, mlflow_server: MlflowServer) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.url, "GITHUB_ACTOR": "ci"}
    unreachable = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    def start(key: str, *argv: str, env: dict[str, str]) -> threading.Thread:
        thread = threading.Thread(target=lambda: results.__setitem__(key, console_script(*argv, env=env)))
        thread.start()
        return thread

    # Two interpreters at once: the MLflow import dominates their time.
    threads = [
        start("promote", "model", "promote", model, "2", env=env),
        start("unreachable", "model", "status", model, "--tracking-uri", "http://127.0.0.1:9", env=unreachable),
    ]
    for thread in threads:
        thread.join()

    promoted = results["promote"]
    assert promoted.returncode == 0, promoted.stderr
    assert promoted.stdout.startswith(f"{model}: champion - -> 2, previous unchanged (by ci at ")
    assert aliases(client, model) == {"champion": "2"}

    failed = results["unreachable"]
    assert failed.returncode == 6
    assert failed.stderr == "mlops-ops: Cannot reach the MLflow server at http://127.0.0.1:9: connection refused.\n"
    assert failed.stdout == ""
