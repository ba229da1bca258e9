"""AWS Backup for the data that needs it: a vault and a daily plan, optionally copied to another region."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
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
    """A daily backup (05:00 UTC) of `resources` into a protected vault, kept `retention`, optionally copied."""

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
                schedule_expression=events.Schedule.cron(hour="5", minute="0"),
                delete_after=retention,
                copy_actions=copies,
            )
        )
        self.selection = self.plan.add_selection("Selection", resources=list(resources))
