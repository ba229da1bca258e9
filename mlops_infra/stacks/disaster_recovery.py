"""`Mlops<Env>Dr`: what the environment keeps in its disaster-recovery region."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct

from mlops_infra import names
from mlops_infra.config import EnvironmentConfig
from mlops_infra.constructs import ArtifactStorage, customer_managed_key
from mlops_infra.stacks.common import stateful_removal_policy


class DisasterRecoveryStack(Stack):
    """The replica of the models bucket, encrypted with a key of the DR region."""

    def __init__(self, scope: Construct, id: str, *, config: EnvironmentConfig, **kwargs: Any) -> None:
        super().__init__(scope, id, **kwargs)
        stateful = stateful_removal_policy(config)
        # Same alias as the primary region's storage key: the source bucket names it, not its ARN.
        self.storage_key = customer_managed_key(
            self,
            "StorageKey",
            alias=f"{names.key_alias_prefix(config.name)}/storage",
            description="Objects of the models bucket's replica",
            removal_policy=stateful,
        )
        storage = config.storage
        self.replica = ArtifactStorage(
            self,
            "ModelReplica",
            bucket_name=config.models_replica_bucket_name,
            access_logs_bucket_name=config.replica_access_logs_bucket_name,
            encryption_key=self.storage_key,
            noncurrent_transition_days=storage.noncurrent_transition_days,
            noncurrent_expiration_days=storage.noncurrent_expiration_days,
            abort_incomplete_multipart_days=storage.abort_incomplete_multipart_days,
            access_log_expiration_days=storage.access_log_expiration_days,
            removal_policy=stateful,
        )
