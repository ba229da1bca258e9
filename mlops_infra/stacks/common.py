"""Translations from config values to CDK values, shared by the stacks."""

from __future__ import annotations

from typing import TypedDict

from aws_cdk import Environment, RemovalPolicy
from aws_cdk import aws_logs as logs

from mlops_infra.config import EnvironmentConfig


def database_removal_policy(config: EnvironmentConfig) -> RemovalPolicy:
    """The database follows the configured policy as is (snapshot, retain or destroy)."""
    return RemovalPolicy(config.removal_policy.upper())


def stateful_removal_policy(config: EnvironmentConfig) -> RemovalPolicy:
    """Buckets, keys and log groups cannot be snapshotted: `snapshot` keeps them (RETAIN)."""
    return RemovalPolicy.DESTROY if config.removal_policy == "destroy" else RemovalPolicy.RETAIN


class StorageLifecycle(TypedDict):
    """The lifecycle keyword arguments of `ArtifactStorage`."""

    noncurrent_transition_days: int
    noncurrent_expiration_days: int
    abort_incomplete_multipart_days: int
    access_log_expiration_days: int


def storage_lifecycle(config: EnvironmentConfig) -> StorageLifecycle:
    """The models bucket's lifecycle from config, for the bucket and its DR replica alike."""
    storage = config.storage
    return StorageLifecycle(
        noncurrent_transition_days=storage.noncurrent_transition_days,
        noncurrent_expiration_days=storage.noncurrent_expiration_days,
        abort_incomplete_multipart_days=storage.abort_incomplete_multipart_days,
        access_log_expiration_days=storage.access_log_expiration_days,
    )


_RETENTION_BY_DAYS = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def retention(days: int) -> logs.RetentionDays:
    """The RetentionDays member for a number of days (config has validated the number)."""
    return _RETENTION_BY_DAYS[days]


def aws_environment(config: EnvironmentConfig, region: str | None = None) -> Environment:
    return Environment(account=config.aws.account, region=region or config.aws.region)
