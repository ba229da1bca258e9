"""Stop a resource after hours and start it again in the morning, Monday to Friday, with no code to run.

EventBridge Scheduler calls the AWS API itself (a universal target, `arn:aws:scheduler:::aws-sdk:...`), so there
is no Lambda function to patch, and its role may call only the two actions on the one resource.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_scheduler as scheduler
from constructs import Construct


@dataclass(frozen=True)
class StopStartTarget:
    """What to stop and start: one API of one service (`rds`, `ec2`), its input, and the resource's ARN."""

    service: str  # the API's service name in the SDK, e.g. "rds"
    stop_action: str  # e.g. "stopDBInstance"
    start_action: str  # e.g. "startDBInstance"
    input: Mapping[str, Any]  # the request, e.g. {"DbInstanceIdentifier": "mlops-db-dev"}
    iam_actions: tuple[str, str]  # e.g. ("rds:StopDBInstance", "rds:StartDBInstance")
    resource_arn: str

    @classmethod
    def rds_instance(cls, identifier: str, arn: str) -> StopStartTarget:
        """An RDS DB instance (stopped, it keeps its storage; RDS starts it by itself after 7 days)."""
        return cls(
            "rds",
            "stopDBInstance",
            "startDBInstance",
            {"DbInstanceIdentifier": identifier},
            ("rds:StopDBInstance", "rds:StartDBInstance"),
            arn,
        )

    @classmethod
    def ec2_instance(cls, scope: Construct, instance_id: str) -> StopStartTarget:
        """An EC2 instance (stopped, it keeps its EBS volumes and gives up its auto-assigned public address)."""
        stack = Stack.of(scope)
        arn = stack.format_arn(service="ec2", resource="instance", resource_name=instance_id)
        return cls(
            "ec2",
            "stopInstances",
            "startInstances",
            {"InstanceIds": [instance_id]},
            ("ec2:StopInstances", "ec2:StartInstances"),
            arn,
        )


class StopStartSchedule(Construct):
    """Two EventBridge Scheduler schedules: stop at `stop_hour`, start at `start_hour`, Monday to Friday.

    Hours are whole hours in `time_zone` (an IANA name, daylight saving time followed). The schedules are
    named `<name>-stop` and `<name>-start`; their role can call only the target's two actions on its ARN.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        target: StopStartTarget,
        time_zone: str,
        stop_hour: int,
        start_hour: int,
    ) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description=f"EventBridge Scheduler: stop and start {name} after hours",
        )
        self.role.add_to_policy(iam.PolicyStatement(actions=list(target.iam_actions), resources=[target.resource_arn]))
        self.stop = self._schedule("Stop", f"{name}-stop", target, target.stop_action, stop_hour, time_zone)
        self.start = self._schedule("Start", f"{name}-start", target, target.start_action, start_hour, time_zone)

    def _schedule(
        self, id: str, schedule_name: str, target: StopStartTarget, action: str, hour: int, time_zone: str
    ) -> scheduler.CfnSchedule:
        # The L1 schedule: the L2 universal target adds a `*` resource policy of its own to the role.
        stack = Stack.of(self)
        return scheduler.CfnSchedule(
            self,
            id,
            name=schedule_name,
            description=f"{target.service}:{action} at {hour}:00 {time_zone}, Monday to Friday",
            schedule_expression=f"cron(0 {hour} ? * MON-FRI *)",
            schedule_expression_timezone=time_zone,
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            target=scheduler.CfnSchedule.TargetProperty(
                arn=f"arn:{stack.partition}:scheduler:::aws-sdk:{target.service}:{action}",
                role_arn=self.role.role_arn,
                input=stack.to_json_string(dict(target.input)),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(maximum_retry_attempts=3),
            ),
        )
