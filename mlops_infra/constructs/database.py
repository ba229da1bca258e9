"""RDS PostgreSQL in isolated subnets, encrypted, SSL-only, its master password managed by RDS."""

from __future__ import annotations

from typing import cast

from aws_cdk import Duration, Names, RemovalPolicy, SecretValue, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

POSTGRES_PORT = 5432
# Logs RDS exports to CloudWatch; their groups are created here so retention and KMS are ours.
EXPORTED_LOGS = ("postgresql", "upgrade")


class Database(Construct):
    """A PostgreSQL instance that accepts connections only from peers granted with `allow_from`.

    Placed in the VPC's isolated subnets unless `subnets` says otherwise.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        instance_identifier: str,
        engine_version: str,
        instance_type: ec2.InstanceType,
        allocated_storage_gib: int,
        max_allocated_storage_gib: int | None,
        multi_az: bool,
        backup_retention: Duration,
        deletion_protection: bool,
        removal_policy: RemovalPolicy,
        encryption_key: kms.IKey,
        log_encryption_key: kms.IKey,
        log_retention: logs.RetentionDays,
        performance_insights: bool,
        master_username: str = "mlops_admin",
        subnets: ec2.SubnetSelection | None = None,
    ) -> None:
        super().__init__(scope, id)
        major = engine_version.split(".")[0]
        engine = rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.of(engine_version, major))
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            allow_all_outbound=False,
            description=f"{instance_identifier}: PostgreSQL, ingress only from granted peers",
        )
        parameter_group = rds.ParameterGroup(
            self,
            "Parameters",
            engine=engine,
            description=f"{instance_identifier}: SSL required",
            parameters={"rds.force_ssl": "1"},
        )
        self.log_groups = [
            logs.LogGroup(
                self,
                f"{name.capitalize()}Logs",
                log_group_name=f"/aws/rds/instance/{instance_identifier}/{name}",
                encryption_key=log_encryption_key,
                retention=log_retention,
                removal_policy=removal_policy if removal_policy != RemovalPolicy.SNAPSHOT else RemovalPolicy.RETAIN,
            )
            for name in EXPORTED_LOGS
        ]
        self.instance = rds.DatabaseInstance(
            self,
            "Instance",
            instance_identifier=instance_identifier,
            engine=engine,
            instance_type=instance_type,
            vpc=vpc,
            vpc_subnets=subnets or ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[self.security_group],
            port=POSTGRES_PORT,
            # Replaced below by a password that RDS generates, stores and rotates in Secrets Manager.
            credentials=rds.Credentials.from_password(master_username, SecretValue.unsafe_plain_text("unused")),
            parameter_group=parameter_group,
            allocated_storage=allocated_storage_gib,
            max_allocated_storage=max_allocated_storage_gib,
            storage_type=rds.StorageType.GP3,
            storage_encrypted=True,
            storage_encryption_key=encryption_key,
            multi_az=multi_az,
            backup_retention=backup_retention,
            copy_tags_to_snapshot=True,
            delete_automated_backups=False,
            deletion_protection=deletion_protection,
            removal_policy=removal_policy,
            cloudwatch_logs_exports=list(EXPORTED_LOGS),
            enable_performance_insights=performance_insights,
            performance_insight_encryption_key=encryption_key if performance_insights else None,
            iam_authentication=True,
            auto_minor_version_upgrade=True,
            publicly_accessible=False,
        )
        for group in self.log_groups:
            self.instance.node.add_dependency(group)
        cfn = self.instance.node.default_child
        assert isinstance(cfn, rds.CfnDBInstance)
        cfn.add_property_deletion_override("MasterUserPassword")
        cfn.manage_master_user_password = True
        cfn.master_user_secret = rds.CfnDBInstance.MasterUserSecretProperty(kms_key_id=encryption_key.key_arn)
        self.secret: secretsmanager.ISecret = secretsmanager.Secret.from_secret_complete_arn(
            self, "MasterSecret", cfn.attr_master_user_secret_secret_arn
        )
        self.master_username = master_username
        self.port = POSTGRES_PORT

    def allow_from(self, peer: ec2.ISecurityGroup, description: str) -> None:
        """Open the PostgreSQL port to one peer (a service's security group), and nothing else.

        The rule is created beside the peer: a service stack may depend on the data stack, never
        the other way round, so granting a new service never touches the database's stack.
        """
        same_stack = Stack.of(peer) is Stack.of(self)
        ec2.CfnSecurityGroupIngress(
            self if same_stack else cast(Construct, peer),
            f"PostgresFrom{Names.unique_id(peer)}" if same_stack else "PostgresIngress",
            group_id=self.security_group.security_group_id,
            source_security_group_id=peer.security_group_id,
            ip_protocol="tcp",
            from_port=POSTGRES_PORT,
            to_port=POSTGRES_PORT,
            description=f"PostgreSQL from {description}",
        )
