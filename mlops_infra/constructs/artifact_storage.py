"""The models bucket: versioned, KMS-encrypted, TLS-only, access-logged, lifecycle-managed,
optionally replicated to a bucket in another region."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct


@dataclass(frozen=True)
class ReplicationDestination:
    """A bucket in another region of the same account, encrypted with the key behind `key_alias`.

    Named, not referenced, so the source stack needs no cross-region reference: the alias
    stands in for the key's ARN (S3 accepts an alias ARN as the replica key).
    """

    bucket_name: str
    region: str
    key_alias: str  # e.g. "alias/mlops-prod/storage"


class ArtifactStorage(Construct):
    """A bucket for model artifacts plus the bucket that receives its server access logs."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        bucket_name: str,
        access_logs_bucket_name: str,
        encryption_key: kms.IKey,
        noncurrent_transition_days: int,
        noncurrent_expiration_days: int,
        abort_incomplete_multipart_days: int,
        access_log_expiration_days: int,
        removal_policy: RemovalPolicy,
        replication: ReplicationDestination | None = None,
    ) -> None:
        super().__init__(scope, id)
        # Server access logging cannot deliver to a KMS-encrypted bucket: SSE-S3 here.
        self.access_logs_bucket = s3.Bucket(
            self,
            "AccessLogs",
            bucket_name=access_logs_bucket_name,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(access_log_expiration_days))
            ],
            removal_policy=removal_policy,
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=bucket_name,
            versioned=True,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=encryption_key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix=f"{bucket_name}/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="noncurrent-versions",
                    noncurrent_version_transitions=[
                        s3.NoncurrentVersionTransition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(noncurrent_transition_days),
                        )
                    ],
                    noncurrent_version_expiration=Duration.days(noncurrent_expiration_days),
                ),
                s3.LifecycleRule(
                    id="abort-incomplete-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(abort_incomplete_multipart_days),
                ),
            ],
            removal_policy=removal_policy,
        )
        self.replication_role: iam.Role | None = None
        # Wildcard resources the replication role needs (object keys and the replica key's ID are unknown).
        self.replication_wildcard_resources: list[str] = []
        if replication is not None:
            self.replication_role = self._replicate_to(replication, encryption_key)

    def _replicate_to(self, destination: ReplicationDestination, source_key: kms.IKey) -> iam.Role:
        """Replicate every object version, KMS-encrypted ones included, and delete markers."""
        stack = Stack.of(self)
        destination_arn = f"arn:{stack.partition}:s3:::{destination.bucket_name}"
        replica_key_arn = f"arn:{stack.partition}:kms:{destination.region}:{stack.account}:{destination.key_alias}"
        source_objects = self.bucket.arn_for_objects("*")
        destination_objects = f"{destination_arn}/*"
        replica_keys = f"arn:{stack.partition}:kms:{destination.region}:{stack.account}:key/*"
        self.replication_wildcard_resources = [source_objects, destination_objects, replica_keys]
        role = iam.Role(
            self,
            "ReplicationRole",
            assumed_by=iam.ServicePrincipal("s3.amazonaws.com"),
            description=f"S3 replication of {self.bucket.node.path} to {destination.region}",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetReplicationConfiguration", "s3:ListBucket"], resources=[self.bucket.bucket_arn]
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"],
                resources=[source_objects],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"],
                resources=[destination_objects],
            )
        )
        source_key.grant_decrypt(role)
        # The replica key's ID is not known here; only the key behind the alias may be used.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:Encrypt", "kms:GenerateDataKey"],
                resources=[replica_keys],
                conditions={"ForAnyValue:StringEquals": {"kms:ResourceAliases": destination.key_alias}},
            )
        )
        cfn_bucket = self.bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        cfn_bucket.replication_configuration = s3.CfnBucket.ReplicationConfigurationProperty(
            role=role.role_arn,
            rules=[
                s3.CfnBucket.ReplicationRuleProperty(
                    id="disaster-recovery",
                    status="Enabled",
                    priority=1,
                    filter=s3.CfnBucket.ReplicationRuleFilterProperty(prefix=""),
                    delete_marker_replication=s3.CfnBucket.DeleteMarkerReplicationProperty(status="Enabled"),
                    source_selection_criteria=s3.CfnBucket.SourceSelectionCriteriaProperty(
                        sse_kms_encrypted_objects=s3.CfnBucket.SseKmsEncryptedObjectsProperty(status="Enabled")
                    ),
                    destination=s3.CfnBucket.ReplicationDestinationProperty(
                        bucket=destination_arn,
                        encryption_configuration=s3.CfnBucket.EncryptionConfigurationProperty(
                            replica_kms_key_id=replica_key_arn
                        ),
                    ),
                )
            ],
        )
        return role
