"""`mlops-ops service rollback` and `mlops-ops smoke` against moto (in-process, fake credentials).

ECS: cluster mlops-dev, task definition family mlops-inference at revisions 1..3 (images v1..v3, plus a
log-router sidecar whose image never changes), service mlops-inference on revision 3. moto's services are
stable only when runningCount == desiredCount and it runs no tasks, so the services have desiredCount 0
(desiredCount 1 is the service that never gets stable). Smoke: stack MlopsDev's outputs point at a local
HTTP server on 127.0.0.1 where /ping answers 500.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import boto3  # type: ignore[import-untyped]
import pytest
from moto import mock_aws

from mlops_infra.ops import aws
from mlops_infra.ops.cli import main
from tests.local_http import serving

CLUSTER = "mlops-dev"
FAMILY = "mlops-inference"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops-inference"
CHECKS = ("frontend", "backend", "mlflow", "inference")
SIDECAR = "public.ecr.aws/aws-observability/aws-for-fluent-bit:stable"
AWS_ENV_CLEARED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
)


@functools.cache
def shared_loader(search_path: str | None = None) -> Any:
    """One botocore data loader (and its cache of parsed service models) for every session of the test process."""
    from botocore.loaders import create_loader  # type: ignore[import-untyped]

    return create_loader(search_path)


def isolate_aws(monkeypatch: pytest.MonkeyPatch, folder: Path, *, credentials: bool) -> None:
    """No real AWS configuration reaches boto3: empty config files, no instance metadata, fake or no keys.

    Every boto3 session shares one data loader meanwhile: mock_aws starts each test with a new default session and
    the CLI makes its own, and each would parse the same service models (JSON, ~0.2 s a session) again.
    """
    import botocore.session  # type: ignore[import-untyped]

    monkeypatch.setattr(botocore.session, "create_loader", shared_loader)
    for name in AWS_ENV_CLEARED:
        monkeypatch.delenv(name, raising=False)
    empty = folder / "aws-empty"
    empty.write_text("")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    if credentials:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    else:
        monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)


def make_ecs(
    cluster: str = CLUSTER, service: str = FAMILY, revision: int = 3, desired_count: int = 0
) -> Any:  # inside mock_aws
    """Cluster `cluster` with `service` on revision `revision` of family mlops-inference (revisions 1..3)."""
    ecs = boto3.client("ecs")
    ecs.create_cluster(clusterName=cluster)
    for number in (1, 2, 3):
        ecs.register_task_definition(
            family=FAMILY,
            containerDefinitions=[
                {"name": "inference", "image": f"{IMAGE}:v{number}", "memory": 512},
                {"name": "log-router", "image": SIDECAR, "memory": 64},
            ],
        )
    # A longer family that familyPrefix="mlops-inference" also lists: never a rollback target.
    ecs.register_task_definition(
        family=f"{FAMILY}-canary", containerDefinitions=[{"name": "inference", "image": "canary", "memory": 512}]
    )
    ecs.create_service(
        cluster=cluster, serviceName=service, taskDefinition=f"{FAMILY}:{revision}", desiredCount=desired_count
    )
    return ecs


def current_task_definition(ecs: Any, service: str = FAMILY, cluster: str = CLUSTER) -> str:
    found = ecs.describe_services(cluster=cluster, services=[service])["services"][0]["taskDefinition"]
    return str(found.rsplit("/", 1)[-1])


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    isolate_aws(monkeypatch, tmp_path, credentials=True)
    with mock_aws():
        yield


@pytest.fixture
def ecs(fake_aws: None) -> Any:
    return make_ecs()


def rollback(*extra: str) -> int:
    return main(["service", "rollback", "--env", "dev", "--service", "inference", "--poll-interval", "0.05", *extra])


# --- service rollback ---------------------------------------------------------------------------------------


def test_rollback_picks_the_previous_revision_and_prints_the_images(
    ecs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rollback() == 0
    out = capsys.readouterr().out
    assert current_task_definition(ecs) == f"{FAMILY}:2"
    assert f"{FAMILY} (cluster {CLUSTER}): {FAMILY}:3 -> {FAMILY}:2" in out
    assert f"  inference: {IMAGE}:v3 -> {IMAGE}:v2" in out
    assert f"  log-router: {SIDECAR} (unchanged)" in out
    assert f"{FAMILY} is stable on {FAMILY}:2." in out


def test_rollback_to_a_given_revision(ecs: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert rollback("--to-revision", "1") == 0
    assert current_task_definition(ecs) == f"{FAMILY}:1"
    assert f"  inference: {IMAGE}:v3 -> {IMAGE}:v1" in capsys.readouterr().out


def test_rollback_skips_deregistered_revisions(ecs: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ecs.deregister_task_definition(taskDefinition=f"{FAMILY}:2")
    assert rollback("--no-wait") == 0
    assert current_task_definition(ecs) == f"{FAMILY}:1"
    assert "Not waiting" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("revision", "code", "message"),
    [
        ("9", 4, f"Task definition {FAMILY}:9 does not exist."),
        ("3", 5, f"The service already runs {FAMILY}:3: nothing to roll back."),
        ("2", 4, f"Task definition {FAMILY}:2 is INACTIVE"),
    ],
)
def test_rollback_to_a_revision_it_cannot_use(
    ecs: Any, capsys: pytest.CaptureFixture[str], revision: str, code: int, message: str
) -> None:
    ecs.deregister_task_definition(taskDefinition=f"{FAMILY}:2")
    assert rollback("--to-revision", revision) == code
    captured = capsys.readouterr()
    assert captured.err.startswith(f"mlops-ops: {message}")
    assert current_task_definition(ecs) == f"{FAMILY}:3"


def test_rollback_without_an_earlier_revision(fake_aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    make_ecs(revision=1)
    assert rollback() == 5
    assert capsys.readouterr().err == (
        f"mlops-ops: Task definition family {FAMILY} has no ACTIVE revision below 1: nothing to roll back to.\n"
    )


def test_unknown_service_and_cluster_are_sentences(ecs: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["service", "rollback", "--env", "dev", "--service", "backend"]) == 9
    assert capsys.readouterr().err == (
        f"mlops-ops: ECS service mlops-backend-service does not exist in cluster {CLUSTER} (MISSING).\n"
    )
    assert main(["service", "rollback", "--env", "staging", "--service", "inference"]) == 9
    assert capsys.readouterr().err == (
        "mlops-ops: AWS refused describing ECS service mlops-inference in cluster mlops-staging: "
        "Cluster not found (ClusterNotFoundException).\n"
    )


def test_rollback_that_does_not_get_stable_times_out(fake_aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    ecs = make_ecs(desired_count=1)  # moto runs no tasks: never stable
    started = time.monotonic()
    assert rollback("--timeout", "0.2") == 9
    assert time.monotonic() - started < 5
    captured = capsys.readouterr()
    assert f"{FAMILY}:3 -> {FAMILY}:2" in captured.out
    assert captured.err.startswith(f"mlops-ops: ECS service {FAMILY} in cluster {CLUSTER} was not stable after 0 s")
    assert current_task_definition(ecs) == f"{FAMILY}:2"  # the rollback is deployed anyway


CIRCUIT_BREAKER = "ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/1."


@pytest.mark.parametrize(
    ("undone", "message"),
    [
        (
            True,
            f"ECS put {FAMILY} back on {FAMILY}:3 instead of {FAMILY}:2 (primary deployment COMPLETED: "
            f"{CIRCUIT_BREAKER.rstrip('.')}): its deployment circuit breaker or a deployment alarm undid the rollback.",
        ),
        (
            False,
            f"{FAMILY} runs {FAMILY}:2 but its primary deployment is FAILED, not COMPLETED "
            f"({CIRCUIT_BREAKER.rstrip('.')}).",
        ),
    ],
)
def test_rollback_that_ecs_does_not_complete_is_a_failed_check(
    ecs: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], undone: bool, message: str
) -> None:
    """The services-stable waiter succeeds once ECS is done, also when its circuit breaker (or an alarm) has put
    the service back on the revision it left: the CLI's clients then describe what ECS did (moto cannot)."""
    revision_3 = ecs.describe_task_definition(taskDefinition=f"{FAMILY}:3")["taskDefinition"]["taskDefinitionArn"]
    updated: list[bool] = []

    def ecs_decides(parsed: dict[str, Any], **_: Any) -> None:
        if updated:
            service = parsed["services"][0]
            primary = service["deployments"][0]
            primary["rolloutStateReason"] = CIRCUIT_BREAKER
            if undone:
                service["taskDefinition"] = revision_3
            else:
                primary["rolloutState"] = "FAILED"

    make_client = aws.client

    def client(service: str, args: Any) -> Any:
        found = make_client(service, args)
        found.meta.events.register("after-call.ecs.UpdateService", lambda **_: updated.append(True))
        found.meta.events.register("after-call.ecs.DescribeServices", ecs_decides)
        return found

    monkeypatch.setattr(aws, "client", client)
    assert rollback() == 10
    captured = capsys.readouterr()
    assert f"{FAMILY} (cluster {CLUSTER}): {FAMILY}:3 -> {FAMILY}:2" in captured.out
    assert "is stable on" not in captured.out
    assert captured.err == (
        f"mlops-ops: {message} See the service's events: "
        f"`aws ecs describe-services --cluster {CLUSTER} --services {FAMILY}`.\n"
    )


@pytest.mark.parametrize("value", ["inf", "1e309", "nan", "-inf", "0", "-1", "86401", "soon"])
def test_timeouts_are_finite_and_at_most_a_day(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["service", "rollback", "--env", "dev", "--service", "inference", f"--timeout={value}"],
        ["service", "rollback", "--env", "dev", "--service", "inference", f"--poll-interval={value}"],
        ["smoke", "--env", "dev", f"--timeout={value}"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert f"{value!r} is not a number of seconds above 0 and up to 86400" in capsys.readouterr().err
    assert aws.positive_seconds("86400") == 86400
    assert aws.positive_seconds("0.05") == 0.05


def test_service_names_are_checked_by_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["service", "rollback", "--env", "dev", "--service", "database"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'database'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["service", "rollback", "--env", "Dev!", "--service", "backend"])
    assert "is not an environment name" in capsys.readouterr().err


# --- missing credentials and region ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["service", "rollback", "--env", "dev", "--service", "inference"],
        ["smoke", "--env", "dev"],
    ],
)
def test_missing_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    isolate_aws(monkeypatch, tmp_path, credentials=False)
    assert main(argv) == 7
    err = capsys.readouterr().err
    assert err.startswith("mlops-ops: No usable AWS credentials while ")
    assert "Unable to locate credentials" in err
    assert err.count("\n") == 1


def test_missing_region(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    isolate_aws(monkeypatch, tmp_path, credentials=True)
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert main(["smoke", "--env", "dev"]) == 9
    assert "pass --region or set AWS_REGION (or AWS_DEFAULT_REGION)." in capsys.readouterr().err


def test_aws_region_is_read_as_the_aws_cli_reads_it(
    fake_aws: None, http_server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """botocore reads AWS_DEFAULT_REGION only; the CLI also AWS_REGION (first, as the AWS CLI), and --region first."""
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    create_stack("MlopsDev", {"FrontendUrl": http_server}, region="eu-west-1")
    assert main(["smoke", "--env", "dev", "--only", "frontend"]) == 0
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert main(["smoke", "--env", "dev", "--only", "frontend"]) == 0
    capsys.readouterr()
    assert main(["smoke", "--env", "dev", "--only", "frontend", "--region", "us-east-1"]) == 9
    assert "Stack with id MlopsDev does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["boto3", "botocore.config"])
def test_missing_ops_extra(module: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    assert main(["smoke", "--env", "dev"]) == 1
    assert capsys.readouterr().err == (
        f"mlops-ops: Python package {module} is not installed: the operator commands need the `ops` extra: "
        'pip install "mlops-infra[ops]".\n'
    )


def test_missing_credentials_through_the_console_script(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_aws(monkeypatch, tmp_path, credentials=False)
    script = Path(sys.executable).with_name("mlops-ops")
    result = subprocess.run(
        [str(script), "service", "rollback", "--env", "dev", "--service", "backend"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 7, result.stderr
    assert result.stderr.startswith("mlops-ops: No usable AWS credentials")
    assert "Traceback" not in result.stderr


def test_error_message_of_a_client_error() -> None:
    from botocore.exceptions import ClientError  # type: ignore[import-untyped]

    error = ClientError({"Error": {"Code": "AccessDenied", "Message": "Nope."}}, "DescribeStacks")
    assert aws.error_message(error) == "Nope (AccessDenied)"
    assert aws.error_code(error) == "AccessDenied"
    assert aws.error_code(ValueError("x")) == ""


# --- smoke ----------------------------------------------------------------------------------------------------


class Handler(http.server.BaseHTTPRequestHandler):
    STATUS: ClassVar[dict[str, int]] = {"/": 200, "/api/health": 200, "/health": 200, "/ping": 500, "/slow/ping": 200}

    def do_GET(self) -> None:
        if self.path.startswith("/not-http/"):  # e.g. an SSH server on the port
            self.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n")
            return
        if self.path.startswith("/slow/"):
            time.sleep(1.0)
        status = self.STATUS.get(self.path, 404)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client timed out (/slow)
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    with serving(Handler) as url:
        yield url


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def create_stack(name: str, outputs: dict[str, str], region: str | None = None) -> None:
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation", region_name=region).create_stack(StackName=name, TemplateBody=json.dumps(template))


@pytest.fixture
def stacks(fake_aws: None, http_server: str) -> str:
    create_stack(
        "MlopsDev",
        {
            "FrontendUrl": http_server,
            "MlflowTrackingUri": http_server,
            "InferenceUrl": http_server,
            "LoadBalancerDns": "internal-mlops-dev.example",
        },
    )
    create_stack(
        "MlopsQa",
        {
            "FrontendUrl": f"{http_server}/",
            "MlflowTrackingUri": f"http://127.0.0.1:{closed_port()}",
            "InferenceUrl": f"{http_server}/slow",
        },
    )
    return http_server


def table(out: str) -> dict[str, list[str]]:
    """The rows of the smoke table by check name."""
    rows = [line.split() for line in out.splitlines() if line.split() and line.split()[0] in CHECKS]
    return {row[0]: row[1:] for row in rows}


def test_smoke_reports_every_check_and_fails_on_one(stacks: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["smoke", "--env", "dev", "--timeout", "5"]) == 10
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "Stack MlopsDev (load balancer internal-mlops-dev.example)"
    assert lines[1].split() == ["CHECK", "ENDPOINT", "STATUS", "MS", "RESULT"]
    rows = table(captured.out)
    assert rows["frontend"][:2] == [f"{stacks}/", "200"]
    assert rows["backend"][:2] == [f"{stacks}/api/health", "200"]
    assert rows["mlflow"][:2] == [f"{stacks}/health", "200"]
    assert rows["inference"][:2] == [f"{stacks}/ping", "500"]
    assert [row[3] for row in rows.values()] == ["OK", "OK", "OK", "FAIL"]
    assert all(row[2].isdigit() for row in rows.values())
    assert captured.err == (
        "mlops-ops: 1 of 4 checks failed: inference (mlflow and inference answer only inside the VPC: "
        "from outside, use --public-only).\n"
    )


@pytest.mark.parametrize(
    "selection",
    [["--only", "frontend,backend", "--only", "mlflow"], ["--public-only"]],
)
def test_smoke_passes_on_the_chosen_checks(
    stacks: str, capsys: pytest.CaptureFixture[str], selection: list[str]
) -> None:
    assert main(["smoke", "--env", "dev", *selection]) == 0
    out = capsys.readouterr().out
    expected = ["frontend", "backend", "mlflow"] if "--only" in selection else ["frontend", "backend"]
    assert list(table(out)) == expected
    assert out.endswith(f"All {len(expected)} checks passed.\n")


def test_smoke_failures_say_what_went_wrong(stacks: str, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    assert main(["smoke", "--env", "qa", "--timeout", "0.3"]) == 10
    assert time.monotonic() - started < 3  # in parallel, each bounded by --timeout
    captured = capsys.readouterr()
    rows = table(captured.out)
    assert (rows["frontend"][:2], rows["frontend"][-1]) == ([f"{stacks}/", "200"], "OK")
    assert (rows["mlflow"][1], rows["mlflow"][-1]) == ("refused", "FAIL")
    assert (rows["inference"][:2], rows["inference"][-1]) == ([f"{stacks}/slow/ping", "timeout"], "FAIL")
    assert "2 of 4 checks failed: mlflow, inference" in captured.err


def test_smoke_of_answers_that_are_not_http_and_malformed_urls(
    fake_aws: None, http_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    create_stack(
        "MlopsOdd",
        {
            "FrontendUrl": f"{http_server}/not-http",
            "MlflowTrackingUri": "http://127.0.0.1:port",
            "InferenceUrl": "internal-alb.example",  # no scheme
        },
    )
    assert main(["smoke", "--env", "odd"]) == 10
    captured = capsys.readouterr()
    rows = table(captured.out)
    assert (rows["frontend"][:3], rows["frontend"][-1]) == ([f"{http_server}/not-http/", "not", "HTTP"], "FAIL")
    assert rows["backend"][1:3] == ["not", "HTTP"]
    assert rows["mlflow"][:3] == ["http://127.0.0.1:port/health", "bad", "URL"]
    assert rows["inference"][:3] == ["internal-alb.example/ping", "bad", "URL"]
    assert captured.err.startswith("mlops-ops: 4 of 4 checks failed: frontend, backend, mlflow, inference")


def test_smoke_of_a_stack_without_an_output(fake_aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    create_stack("MlopsProd", {"InferenceUrl": "http://127.0.0.1:9"})
    assert main(["smoke", "--env", "prod", "--public-only"]) == 10
    rows = table(capsys.readouterr().out)
    assert rows["frontend"] == ["<FrontendUrl>", "no", "output", "-", "FAIL"]


def test_smoke_of_a_missing_stack(fake_aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["smoke", "--env", "staging"]) == 9
    assert capsys.readouterr().err == (
        "mlops-ops: AWS refused reading the outputs of stack MlopsStaging: "
        "Stack with id MlopsStaging does not exist (ValidationError).\n"
    )


def test_smoke_checks_are_checked_by_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["smoke", "--env", "dev", "--only", "frontend,cache"])
    assert exit_info.value.code == 2
    assert "unknown check 'cache'; the checks are backend, frontend, inference, mlflow" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["smoke", "--env", "dev", "--only", "frontend", "--public-only"])
    assert "not allowed with argument" in capsys.readouterr().err
