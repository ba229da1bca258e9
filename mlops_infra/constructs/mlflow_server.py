"""The MLflow tracking server and model registry as an `HttpService`.

Backend store: its own database on the shared RDS instance, through `postgresql+psycopg2`; the
password comes from the RDS-managed secret as an ECS secret and the image's entrypoint
(model-registry/entrypoint.py) builds the store URI from it at start. Artifacts: proxied by the
server (`--serve-artifacts`) into `s3://<bucket>/<prefix>`. Optional basic auth keeps its users
in a second database on the same instance, with an admin password generated into Secrets Manager.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from mlops_infra.constructs.database import Database
from mlops_infra.constructs.http_service import HttpService, HttpServiceOptions

MLFLOW_PORT = 5000


class MlflowServer(Construct):
    """MLflow on Fargate; `.service` is the underlying `HttpService`, `.tracking_uri` its internal URL."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        image: ecs.ContainerImage,
        database: Database,
        database_key: kms.IKey,
        database_name: str,
        artifacts_bucket: s3.IBucket,
        artifacts_key: kms.IKey,
        artifacts_prefix: str,
        allowed_hosts: Sequence[str],
        tracking_uri: str,
        auth: bool,
        options: HttpServiceOptions,
        admin_secret_removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        """`admin_secret_removal_policy`: basic auth creates the admin user with the secret's password on the first
        start only and never reads it again; a re-created stack generates a new secret, which the auth database does
        not know: keep the old one (RETAIN) to recover, by setting the admin's password through MLflow's API."""
        super().__init__(scope, id)
        self.tracking_uri = tracking_uri
        environment = {
            "DB_HOST": database.instance.db_instance_endpoint_address,
            "DB_PORT": database.instance.db_instance_endpoint_port,
            "DB_NAME": database_name,
            "MLFLOW_BACKEND_STORE_DRIVER": "postgresql+psycopg2",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_AUTH": "true" if auth else "false",
        }
        secrets = {
            "DB_USER": ecs.Secret.from_secrets_manager(database.secret, "username"),
            "DB_PASSWORD": ecs.Secret.from_secrets_manager(database.secret, "password"),
        }
        self.admin_secret: secretsmanager.Secret | None = None
        if auth:
            self.admin_secret = secretsmanager.Secret(
                self,
                "AdminPassword",
                # Encrypted with Secrets Manager's AWS-managed key: the database key lives in the data
                # stack, whose key policy must not name roles of this stack (a dependency cycle).
                description="MLflow basic-auth admin password (user admin)",
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    password_length=32, exclude_punctuation=True
                ),
                removal_policy=admin_secret_removal_policy,
            )
            environment["MLFLOW_AUTH_DB_NAME"] = f"{database_name}_auth"
            environment["MLFLOW_ADMIN_USERNAME"] = "admin"
            secrets["MLFLOW_ADMIN_PASSWORD"] = ecs.Secret.from_secrets_manager(self.admin_secret)
        command = [
            "--host", "0.0.0.0",
            "--port", str(MLFLOW_PORT),
            "--serve-artifacts",
            "--artifacts-destination", f"s3://{artifacts_bucket.bucket_name}/{artifacts_prefix}",
            "--allowed-hosts", ",".join(allowed_hosts),
        ]  # fmt: skip
        self.service = HttpService(
            self,
            "Service",
            options=options,
            container_port=MLFLOW_PORT,
            image=image,
            environment=environment,
            secrets=secrets,
            command=command,
            health_check_path="/health",
            container_health_check=[
                "CMD-SHELL",
                f"python -c \"import urllib.request; urllib.request.urlopen('http://localhost:{MLFLOW_PORT}/health')\"",
            ],
        )
        self._grant(database_key, artifacts_bucket, artifacts_key, artifacts_prefix)

    def _grant(self, database_key: kms.IKey, bucket: s3.IBucket, bucket_key: kms.IKey, prefix: str) -> None:
        """The task reads and writes artifacts under its prefix only; the task start decrypts its secrets."""
        role = self.service.task_role
        self.artifacts_objects_arn = bucket.arn_for_objects(f"{prefix}/*")
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], resources=[self.artifacts_objects_arn]
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{prefix}/*", prefix]}},
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[bucket_key.key_arn])
        )
        execution_role = self.service.task_definition.obtain_execution_role()
        database_key.grant_decrypt(execution_role)
