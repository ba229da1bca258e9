"""`mlops-ops service rollback`: put an ECS service of an environment back on an earlier task definition.

The service's current task definition is `family:revision`; without `--to-revision` the target is the highest
ACTIVE revision of that family below the current one. The command updates the service, waits until it is
stable (ECS's `services-stable` waiter) and prints the old and new task definitions with their images.
A deployment in flight when the rollback starts is replaced by the rollback's. Stable is not enough: ECS's
deployment circuit breaker (or a deployment alarm) may put the service back on the revision it left, and that
is stable too; so the service must then run the target with its primary deployment COMPLETED (else exit 10).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any

from mlops_infra.ops import aws
from mlops_infra.ops.errors import AwsFailure, CheckFailed, NothingToRollBackTo, UnknownVersion

SERVICES = {
    "backend": "mlops-backend-service",
    "mlflow": "mlops-mlflow",
    "inference": aws.INFERENCE_SERVICE,
    "frontend": "mlops-frontend-service",
}
DEFAULT_TIMEOUT_SECONDS = 900.0
DEFAULT_POLL_SECONDS = 15.0


@dataclass(frozen=True)
class TaskDefinition:
    arn: str
    family: str
    revision: int
    status: str
    images: dict[str, str]  # container name -> image

    @property
    def name(self) -> str:
        return f"{self.family}:{self.revision}"

    @classmethod
    def from_api(cls, task_definition: dict[str, Any]) -> TaskDefinition:
        return cls(
            arn=task_definition["taskDefinitionArn"],
            family=task_definition["family"],
            revision=int(task_definition["revision"]),
            status=task_definition.get("status", "ACTIVE"),
            images={c["name"]: c.get("image", "?") for c in task_definition.get("containerDefinitions", [])},
        )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "service",
        help="operate the ECS services of an environment",
        description="Operate the ECS services of an environment (cluster mlops-<env>).",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    rollback = actions.add_parser(
        "rollback",
        help="put a service back on an earlier task definition revision",
        description=(
            "Update the service to the previous ACTIVE revision of its task definition family (or --to-revision), "
            "wait until it is stable and print the old and new task definitions with their images."
        ),
    )
    rollback.add_argument("--env", required=True, type=aws.env_name, help="environment (cluster mlops-<env>)")
    rollback.add_argument("--service", required=True, choices=sorted(SERVICES), help="the service, by short name")
    rollback.add_argument("--to-revision", type=_revision, metavar="N", help="this revision of the family instead")
    rollback.add_argument(
        "--timeout",
        type=aws.positive_seconds,
        default=DEFAULT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"how long to wait for the service to be stable (default: {DEFAULT_TIMEOUT_SECONDS:.0f})",
    )
    rollback.add_argument(
        "--poll-interval",
        type=aws.positive_seconds,
        default=DEFAULT_POLL_SECONDS,
        metavar="SECONDS",
        help=f"seconds between two checks while waiting (default: {DEFAULT_POLL_SECONDS:.0f})",
    )
    rollback.add_argument("--no-wait", action="store_true", help="return once the update is accepted")
    aws.add_aws_arguments(rollback)
    rollback.set_defaults(run=run_rollback)


def _revision(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a task definition revision (a number from 1)")
    return int(value)


def run_rollback(args: argparse.Namespace) -> int:
    cluster = aws.cluster_name(args.env)
    service = SERVICES[args.service]
    ecs = aws.client("ecs", args)

    current = _describe(ecs, aws.describe_service(ecs, cluster, service)["taskDefinition"])
    if args.to_revision is not None:
        target = _chosen_revision(ecs, current, args.to_revision)
    else:
        target = _previous_revision(ecs, current)

    with aws.aws_errors(f"updating ECS service {service} in cluster {cluster} to {target.name}"):
        ecs.update_service(cluster=cluster, service=service, taskDefinition=target.arn)
    print(f"{service} (cluster {cluster}): {current.name} -> {target.name}")
    for container in sorted(current.images.keys() | target.images.keys()):
        old, new = current.images.get(container, "-"), target.images.get(container, "-")
        print(f"  {container}: {old} -> {new}" if old != new else f"  {container}: {new} (unchanged)")

    if args.no_wait:
        print(f"Not waiting: `aws ecs wait services-stable --cluster {cluster} --services {service}` follows it.")
        return 0
    _wait_stable(ecs, cluster, service, args.timeout, args.poll_interval)
    _check_landed(ecs, cluster, service, target)
    print(f"{service} is stable on {target.name}.")
    return 0


def _check_landed(ecs: Any, cluster: str, service: str, target: TaskDefinition) -> None:
    """After the wait: the service runs `target` and its primary deployment is COMPLETED, else CheckFailed."""
    described = aws.describe_service(ecs, cluster, service)
    running = str(described.get("taskDefinition", "?"))
    deployments = described.get("deployments", [])
    primary: dict[str, Any] = next((d for d in deployments if d.get("status") == "PRIMARY"), {})
    state = primary.get("rolloutState", "without a rollout state")
    if running == target.arn and state == "COMPLETED":
        return
    reason = str(primary.get("rolloutStateReason") or "no reason given").rstrip(".")
    see = f"See the service's events: `aws ecs describe-services --cluster {cluster} --services {service}`."
    if running != target.arn:
        raise CheckFailed(
            f"ECS put {service} back on {running.rsplit('/', 1)[-1]} instead of {target.name} (primary deployment "
            f"{state}: {reason}): its deployment circuit breaker or a deployment alarm undid the rollback. {see}"
        )
    raise CheckFailed(
        f"{service} runs {target.name} but its primary deployment is {state}, not COMPLETED ({reason}). {see}"
    )


def _describe(ecs: Any, task_definition: str) -> TaskDefinition:
    with aws.aws_errors(f"describing task definition {task_definition}"):
        response = ecs.describe_task_definition(taskDefinition=task_definition)
    return TaskDefinition.from_api(response["taskDefinition"])


def _chosen_revision(ecs: Any, current: TaskDefinition, revision: int) -> TaskDefinition:
    name = f"{current.family}:{revision}"
    if revision == current.revision:
        raise NothingToRollBackTo(f"The service already runs {name}: nothing to roll back.")
    from botocore.exceptions import ClientError  # type: ignore[import-untyped]

    with aws.aws_errors(f"describing task definition {name}"):
        try:
            response = ecs.describe_task_definition(taskDefinition=name)
        except ClientError as error:
            if aws.error_code(error) in ("ClientException", "InvalidParameterException"):
                raise UnknownVersion(f"Task definition {name} does not exist.") from None
            raise
    target = TaskDefinition.from_api(response["taskDefinition"])
    if target.status != "ACTIVE":
        raise UnknownVersion(f"Task definition {name} is {target.status}: ECS cannot deploy a deregistered revision.")
    return target


def _previous_revision(ecs: Any, current: TaskDefinition) -> TaskDefinition:
    """The highest ACTIVE revision of the family below the current one."""
    earlier: list[tuple[int, str]] = []
    with aws.aws_errors(f"listing the revisions of task definition family {current.family}"):
        pages = ecs.get_paginator("list_task_definitions").paginate(familyPrefix=current.family, status="ACTIVE")
        for page in pages:
            for arn in page.get("taskDefinitionArns", []):
                family, _, revision = arn.rsplit("/", 1)[-1].rpartition(":")
                # familyPrefix also matches longer families (mlops-inference-canary): keep this family only.
                if family == current.family and int(revision) < current.revision:
                    earlier.append((int(revision), arn))
    if not earlier:
        raise NothingToRollBackTo(
            f"Task definition family {current.family} has no ACTIVE revision below {current.revision}: "
            "nothing to roll back to."
        )
    return _describe(ecs, max(earlier)[1])


def _wait_stable(ecs: Any, cluster: str, service: str, timeout: float, poll: float) -> None:
    poll = min(poll, timeout)
    attempts = max(1, math.ceil(timeout / poll))
    from botocore.exceptions import WaiterError

    print(f"Waiting up to {timeout:.0f} s for {service} to be stable...", flush=True)
    with aws.aws_errors(f"waiting for ECS service {service} to be stable"):
        try:
            ecs.get_waiter("services_stable").wait(
                cluster=cluster, services=[service], WaiterConfig={"Delay": poll, "MaxAttempts": attempts}
            )
        except WaiterError as error:
            if "Max attempts exceeded" not in str(error):
                raise
            raise AwsFailure(
                f"ECS service {service} in cluster {cluster} was not stable after {timeout:.0f} s; the rollback "
                "is deployed and ECS goes on with it: follow it in the ECS console or with "
                f"`aws ecs describe-services --cluster {cluster} --services {service}`."
            ) from None
