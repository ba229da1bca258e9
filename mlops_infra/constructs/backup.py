"""AWS Backup for the data that needs it: a vault and a daily plan, optionally copied to another region."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy, TimeZone
from aws_cdk import aws_backup as backup
from aws_cdk import aws_events as events
from aws_cdk import aws_kms as kms
from constructs import Construct


def protected_vault(
    scope: Construct, id: str, *, name: str, encryption_key: kms.IKey, removal_policy: RemovalPolicy
) -> backup.BackupVault:
    """A vault encrypted with a customer-managed key whose recovery points nobody can delete early."""
    return backup.BackupVault(
        scope,
        id,
        backup_vault_name=name,
        encryption_key=encryption_key,
        block_recovery_point_deletion=True,
        removal_policy=removal_policy,
    )


class BackupPlan(Construct):
    """A daily backup of `resources` into a protected vault, kept `retention`, optionally copied.

    It starts at `hour` o'clock in `time_zone` (default 05:00 UTC), within `start_window` (AWS Backup's
    default: 8 hours); a database that stops after hours is backed up in the morning, within an hour.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        encryption_key: kms.IKey,
        resources: Sequence[backup.BackupResource],
        retention: Duration,
        removal_policy: RemovalPolicy,
        copy_to_vault_arn: str | None = None,
        hour: int = 5,
        time_zone: str = "UTC",
        start_window: Duration | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.vault = protected_vault(
            self, "Vault", name=name, encryption_key=encryption_key, removal_policy=removal_policy
        )
        copies = None
        if copy_to_vault_arn is not None:
            destination = backup.BackupVault.from_backup_vault_arn(self, "CopyVault", copy_to_vault_arn)
            copies = [backup.BackupPlanCopyActionProps(destination_backup_vault=destination, delete_after=retention)]
        self.plan = backup.BackupPlan(self, "Plan", backup_plan_name=name, backup_vault=self.vault)
        self.plan.add_rule(
            backup.BackupPlanRule(
                rule_name="daily",
                schedule_expression=events.Schedule.cron(hour=str(hour), minute="0"),
                schedule_expression_timezone=None if time_zone == "UTC" else TimeZone.of(time_zone),
                start_window=start_window,
                delete_after=retention,
                copy_actions=copies,
            )
        )
        self.selection = self.plan.add_selection("Selection", resources=list(resources))
