"""Customer-managed KMS keys: one key per kind of data, each with yearly rotation.

Which key protects what:

| key         | protects                                                             |
|-------------|----------------------------------------------------------------------|
| `database`  | RDS storage, Performance Insights, the RDS-managed master secret     |
| `storage`   | S3 objects of the models bucket (and of its replica, in the DR region)|
| `logs`      | CloudWatch log groups: VPC flow logs, database logs, service logs    |
| `messaging` | SNS topics (alerts)                                                  |
| `backup`    | AWS Backup recovery points (the DR region's vault has its own key)   |
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct


def customer_managed_key(
    scope: Construct,
    id: str,
    *,
    alias: str,
    description: str,
    removal_policy: RemovalPolicy,
) -> kms.Key:
    """A symmetric KMS key with rotation and an alias; deletion waits the longest window."""
    return kms.Key(
        scope,
        id,
        alias=alias,
        description=description,
        enable_key_rotation=True,
        pending_window=Duration.days(30),
        removal_policy=removal_policy,
    )


class DataKeys(Construct):
    """The environment's customer-managed keys (see the module docstring for which protects what)."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        alias_prefix: str,
        removal_policy: RemovalPolicy,
        log_group_patterns: Sequence[str] = ("*",),
    ) -> None:
        """`log_group_patterns`: names of the log groups (wildcards allowed) CloudWatch Logs may encrypt with the
        `logs` key; the default is any of this account and region."""
        super().__init__(scope, id)
        self.database = customer_managed_key(
            self,
            "Database",
            alias=f"{alias_prefix}/database",
            description="RDS storage, Performance Insights and the master user secret",
            removal_policy=removal_policy,
        )
        self.storage = customer_managed_key(
            self,
            "Storage",
            alias=f"{alias_prefix}/storage",
            description="Objects of the models bucket",
            removal_policy=removal_policy,
        )
        self.logs = customer_managed_key(
            self,
            "Logs",
            alias=f"{alias_prefix}/logs",
            description="CloudWatch log groups of this environment",
            removal_policy=removal_policy,
        )
        self.messaging = customer_managed_key(
            self,
            "Messaging",
            alias=f"{alias_prefix}/messaging",
            description="SNS topics of this environment",
            removal_policy=removal_policy,
        )
        self.backup = customer_managed_key(
            self,
            "Backup",
            alias=f"{alias_prefix}/backup",
            description="AWS Backup vault of this environment",
            removal_policy=removal_policy,
        )
        self._allow_cloudwatch_logs(self.logs, log_group_patterns)
        self._allow_cloudwatch_alarms(self.messaging)

    @staticmethod
    def _allow_cloudwatch_logs(key: kms.Key, patterns: Sequence[str]) -> None:
        """CloudWatch Logs encrypts with the key, but only for the named log groups of this account and region."""
        stack = Stack.of(key)
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsOfThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=[
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncryptFrom",
                    "kms:ReEncryptTo",
                    "kms:GenerateDataKey",
                    "kms:GenerateDataKeyWithoutPlaintext",
                    "kms:DescribeKey",
                ],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": [
                            f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:{pattern}"
                            for pattern in patterns
                        ]
                    }
                },
            )
        )

    @staticmethod
    def _allow_cloudwatch_alarms(key: kms.Key) -> None:
        """CloudWatch alarms publish to encrypted topics only if they may use the key."""
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(key).account}},
            )
        )
