"""`Mlops<Env>Foundation`: the network and every stateful resource of one environment.

Kept apart from the services so that no service change can replace a database, bucket,
repository or key; termination-protected where the config says so.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_backup as backup
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from mlops_infra import names
from mlops_infra.config import EnvironmentConfig
from mlops_infra.constructs import (
    ArtifactStorage,
    BackupPlan,
    Database,
    DataKeys,
    Network,
    ReplicationDestination,
    StopStartSchedule,
    StopStartTarget,
)
from mlops_infra.stacks.common import database_removal_policy, retention, stateful_removal_policy, storage_lifecycle


class FoundationStack(Stack):
    """Keys, VPC, database and models bucket of one environment."""

    def __init__(self, scope: Construct, id: str, *, config: EnvironmentConfig, **kwargs: Any) -> None:
        super().__init__(scope, id, **kwargs)
        stateful = stateful_removal_policy(config)
        self.keys = DataKeys(
            self,
            "Keys",
            alias_prefix=names.key_alias_prefix(config.name),
            removal_policy=stateful,
            log_group_patterns=names.log_group_patterns(config.name),
        )
        network = config.network
        self.network = Network(
            self,
            "Network",
            cidr=network.cidr,
            availability_zones=config.aws.availability_zones,
            nat_gateways=network.nat_gateways,
            nat=network.nat,
            nat_instance_type=network.nat_instance_type,
            flow_log_traffic_type=ec2.FlowLogTrafficType[network.flow_log_traffic_type],
            flow_log_retention=retention(network.flow_log_retention_days),
            flow_log_group_name=names.flow_log_group_name(config.name),
            log_encryption_key=self.keys.logs,
            log_removal_policy=stateful,
            interface_endpoints=network.interface_endpoints,
            public_subnet_mask=network.public_subnet_mask,
            private_subnet_mask=network.private_subnet_mask,
            isolated_subnet_mask=network.isolated_subnet_mask,
        )
        database = config.database
        self.database = Database(
            self,
            "Database",
            vpc=self.network.vpc,
            instance_identifier=names.database_identifier(config.name),
            engine_version=database.engine_version,
            instance_type=ec2.InstanceType(database.instance_class.removeprefix("db.")),
            allocated_storage_gib=database.allocated_storage_gib,
            max_allocated_storage_gib=database.max_allocated_storage_gib,
            multi_az=database.multi_az,
            backup_retention=Duration.days(database.backup_retention_days),
            deletion_protection=database.deletion_protection,
            removal_policy=database_removal_policy(config),
            encryption_key=self.keys.database,
            log_encryption_key=self.keys.logs,
            log_retention=retention(database.log_retention_days),
            performance_insights=database.performance_insights,
        )
        self.after_hours = self._stop_after_hours(config)
        schedule = config.services.schedule
        hour, time_zone, start_window = 5, "UTC", None  # 05:00 UTC within AWS Backup's default 8 hours
        if config.database.stop_after_hours and schedule is not None:
            # Back the database up while it runs: an hour after the services start, within the hour.
            hour, time_zone, start_window = (schedule.start_hour + 1) % 24, schedule.time_zone, Duration.hours(1)
        self.backup = BackupPlan(
            self,
            "Backup",
            name=names.backup_vault(config.name),
            encryption_key=self.keys.backup,
            resources=[backup.BackupResource.from_rds_database_instance(self.database.instance)],
            retention=Duration.days(config.backup.retention_days),
            removal_policy=stateful,
            copy_to_vault_arn=self._dr_vault_arn(config) if config.backup.copy_to_dr_region else None,
            hour=hour,
            time_zone=time_zone,
            start_window=start_window,
        )
        storage = config.storage
        replication = None
        if storage.replication and config.aws.dr_region:
            replication = ReplicationDestination(
                bucket_name=config.models_replica_bucket_name,
                region=config.aws.dr_region,
                key_alias=f"{names.key_alias_prefix(config.name)}/storage",
            )
        self.storage = ArtifactStorage(
            self,
            "ModelStorage",
            bucket_name=config.models_bucket_name,
            access_logs_bucket_name=config.access_logs_bucket_name,
            encryption_key=self.keys.storage,
            removal_policy=stateful,
            replication=replication,
            **storage_lifecycle(config),
        )

    def _stop_after_hours(self, config: EnvironmentConfig) -> list[StopStartSchedule]:
        """The database and NAT instances stop with the services and start an hour before them, where asked."""
        schedule = config.services.schedule
        if schedule is None:
            return []
        found: list[tuple[str, str, StopStartTarget]] = []
        if config.database.stop_after_hours:
            instance = self.database.instance
            identifier = names.database_identifier(config.name)
            found.append(
                ("DatabaseAfterHours", identifier, StopStartTarget.rds_instance(identifier, instance.instance_arn))
            )
        if config.network.stop_nat_after_hours:
            for index, nat in enumerate(self.network.nat_instances, start=1):
                target = StopStartTarget.ec2_instance(self, nat.instance_id)
                found.append((f"NatInstance{index}AfterHours", f"mlops-{config.name}-nat-{index}", target))
        return [
            StopStartSchedule(
                self,
                id,
                name=name,
                target=target,
                time_zone=schedule.time_zone,
                stop_hour=schedule.stop_hour,
                start_hour=schedule.start_hour - 1,  # config: start_hour >= 1 when anything stops
            )
            for id, name, target in found
        ]

    def _dr_vault_arn(self, config: EnvironmentConfig) -> str:
        """The DR-region vault (stack Mlops<Env>Dr), by name: no cross-region reference needed."""
        return (
            f"arn:{self.partition}:backup:{config.aws.dr_region}:{self.account}:"
            f"backup-vault:{names.backup_vault(config.name)}-dr"
        )
