"""Restart the services that read a secret when its value rotates.

ECS injects a secret into a task when the task starts. After a rotation (RDS rotates its managed master
password every 7 days) running tasks keep the old value: their open database connections live on, new ones
fail. Secrets Manager publishes `Secret Label Updated` to EventBridge when AWSCURRENT moves to the new version
(a native event: no CloudTrail trail needed); a rule then starts a state machine that forces a new deployment
of each service, whose new tasks read the new value. No Lambda: Step Functions calls ECS directly.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct


class RestartOnSecretRotation(Construct):
    """When `secret_arn` gets a new current value, force a new deployment of every service in `services` (by a
    name for the construct IDs)."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        secret_arn: str,
        services: Mapping[str, ecs.BaseService],
        log_group_name: str,
        log_retention: logs.RetentionDays,
        log_encryption_key: kms.IKey,
        log_removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id)
        restarts = sfn.Parallel(self, "RestartServices", comment="A new deployment of each service")
        for name, service in services.items():
            restarts.branch(
                tasks.CallAwsService(
                    self,
                    f"Restart{name}",
                    service="ecs",
                    action="updateService",
                    parameters={
                        "Cluster": service.cluster.cluster_arn,
                        "Service": service.service_arn,
                        "ForceNewDeployment": True,
                    },
                    iam_resources=[service.service_arn],
                    result_selector={"deployments.$": "$.Service.Deployments[*].Id"},
                )
            )
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=log_group_name,
            retention=log_retention,
            encryption_key=log_encryption_key,
            removal_policy=log_removal_policy,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(restarts),
            timeout=Duration.minutes(5),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
        )
        self.rule = events.Rule(
            self,
            "Rotated",
            description="The secret has a new current value: restart the services that read it",
            event_pattern=events.EventPattern(
                source=["aws.secretsmanager"],
                detail_type=["Secret Label Updated"],
                resources=[secret_arn],
                detail={"labelUpdated": ["AWSCURRENT"]},
            ),
            targets=[targets.SfnStateMachine(self.state_machine)],
        )
