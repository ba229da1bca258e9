"""Optional feature cache: ElastiCache (Valkey or Redis OSS), encrypted at rest and in transit."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_kms as kms
from constructs import Construct

CACHE_PORT = 6379


class FeatureCache(Construct):
    """A replication group in the private subnets that only the given security groups can reach."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        engine: str,
        node_type: str,
        replicas: int,
        clients: Sequence[ec2.ISecurityGroup],
        encryption_key: kms.IKey,
        description: str = "MLOps feature cache",
    ) -> None:
        super().__init__(scope, id)
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, description=f"{description}: clients only", allow_all_outbound=False
        )
        for client in clients:
            self.security_group.add_ingress_rule(client, ec2.Port.tcp(CACHE_PORT), "feature cache client")
        subnets = vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        subnet_group = elasticache.CfnSubnetGroup(
            self, "Subnets", description=description, subnet_ids=subnets.subnet_ids
        )
        self.replication_group = elasticache.CfnReplicationGroup(
            self,
            "ReplicationGroup",
            replication_group_description=description,
            engine=engine,
            cache_node_type=node_type,
            num_cache_clusters=1 + replicas,
            automatic_failover_enabled=replicas > 0,
            multi_az_enabled=replicas > 0,
            cache_subnet_group_name=subnet_group.ref,
            security_group_ids=[self.security_group.security_group_id],
            port=CACHE_PORT,
            at_rest_encryption_enabled=True,
            kms_key_id=encryption_key.key_arn,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            auto_minor_version_upgrade=True,
            snapshot_retention_limit=1,
        )
        self.endpoint_address = self.replication_group.attr_primary_end_point_address
        self.port = CACHE_PORT
