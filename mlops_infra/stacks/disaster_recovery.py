"""`Mlops<Env>Dr`: what the environment keeps in its disaster-recovery region (replica bucket, backup copies)."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct

from mlops_infra import names
from mlops_infra.config import EnvironmentConfig
from mlops_infra.constructs import ArtifactStorage, customer_managed_key, protected_vault
from mlops_infra.stacks.common import stateful_removal_policy, storage_lifecycle


class DisasterRecoveryStack(Stack):
    """The replica of the models bucket and the vault receiving backup copies, each with a key of this region."""

    def __init__(self, scope: Construct, id: str, *, config: EnvironmentConfig, **kwargs: Any) -> None:
        super().__init__(scope, id, **kwargs)
        stateful = stateful_removal_policy(config)
        alias_prefix = names.key_alias_prefix(config.name)
        self.replica: ArtifactStorage | None = None
        self.backup_vault = None
        if config.storage.replication:
            # Same alias as the primary region's storage key: the source bucket names it, not its ARN.
            self.storage_key = customer_managed_key(
                self,
                "StorageKey",
                alias=f"{alias_prefix}/storage",
                description="Objects of the models bucket's replica",
                removal_policy=stateful,
            )
            self.replica = ArtifactStorage(
                self,
                "ModelReplica",
                bucket_name=config.models_replica_bucket_name,
                access_logs_bucket_name=config.replica_access_logs_bucket_name,
                encryption_key=self.storage_key,
                removal_policy=stateful,
                **storage_lifecycle(config),
            )
        if config.backup.copy_to_dr_region:
            self.backup_key = customer_managed_key(
                self,
                "BackupKey",
                alias=f"{alias_prefix}/backup",
                description="AWS Backup copies from the primary region",
                removal_policy=stateful,
            )
            self.backup_vault = protected_vault(
                self,
                "BackupVault",
                name=f"{names.backup_vault(config.name)}-dr",
                encryption_key=self.backup_key,
                removal_policy=stateful,
            )
