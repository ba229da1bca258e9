"""`Mlops<Env>`: the environment's entry point and home of its services.

`npx cdk deploy Mlops<Env>` deploys this stack and, through its dependencies, the foundation
(and DR) stacks first. Everything here can be replaced without data loss: the data lives in
the foundation.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_s3 as s3
from constructs import Construct

from mlops_infra import names
from mlops_infra.config import IMAGE_TAG_PATTERN, IMAGE_TAG_RULE, ConfigError, EnvironmentConfig, ServiceSize
from mlops_infra.constructs import (
    AlertTopic,
    ContainerRegistry,
    Deployment,
    FeatureCache,
    FrontendDistribution,
    HttpService,
    HttpServiceOptions,
    InternalLoadBalancer,
    MlflowServer,
    OffHours,
    PlatformAlarms,
    PlatformDashboard,
    RestartOnSecretRotation,
    Routing,
    Scaling,
    Thresholds,
    grant_put_metrics,
)
from mlops_infra.stacks.common import retention, stateful_removal_policy
from mlops_infra.stacks.foundation import FoundationStack

MLFLOW_IMAGE_DIRECTORY = Path(__file__).resolve().parent.parent.parent / "model-registry"
IMAGE_TAG_CONTEXT_KEY = "imageTag"
WEB_PORT = 80  # the listener CloudFront reaches through its VPC origin
WEB_TLS_PORT = 443  # the same, with load_balancer.certificate_arn
BACKEND_PATHS = ("/api/*",)
MISSING_DATA = {
    "breaching": cloudwatch.TreatMissingData.BREACHING,
    "notBreaching": cloudwatch.TreatMissingData.NOT_BREACHING,
    "ignore": cloudwatch.TreatMissingData.IGNORE,
    "missing": cloudwatch.TreatMissingData.MISSING,
}


class ApplicationStack(Stack):
    """Cluster, internal load balancer, the four services, the CloudFront edge and the optional cache."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: EnvironmentConfig,
        foundation: FoundationStack,
        registry: ContainerRegistry,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        self.config = config
        self.foundation = foundation
        self.registry = registry
        self.image_tag = self._image_tag()
        vpc = foundation.network.vpc
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            cluster_name=names.cluster_name(config.name),
            vpc=vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
            enable_fargate_capacity_providers=config.services.capacity == "spot",
        )
        self.edge_logs = self._build_edge_logs()
        self.load_balancer = InternalLoadBalancer(
            self,
            "LoadBalancer",
            vpc=vpc,
            idle_timeout=Duration.seconds(config.load_balancer.idle_timeout_seconds),
            deletion_protection=config.load_balancer.deletion_protection,
            access_logs_bucket=self.edge_logs,
            access_logs_prefix="alb",
            name=f"mlops-{config.name}",
        )
        lb = self.load_balancer
        origin_certificate = config.load_balancer.certificate_arn
        web = lb.add_listener(
            "Web",
            port=WEB_TLS_PORT if origin_certificate else WEB_PORT,
            callers=[ec2.Peer.prefix_list(config.load_balancer.cloudfront_prefix_list_id)],
            description="CloudFront (VPC origin) only",
            certificate=elbv2.ListenerCertificate.from_arn(origin_certificate) if origin_certificate else None,
        )
        mlflow_port = names.SERVICES["mlflow"][1]
        inference_port = names.SERVICES["inference"][1]
        mlflow_listener = lb.add_listener("Mlflow", port=mlflow_port, callers=[], description="MLflow clients")
        inference_listener = lb.add_listener(
            "Inference", port=inference_port, callers=[], description="inference clients"
        )
        dns = lb.load_balancer.load_balancer_dns_name
        mlflow_uri = f"http://{dns}:{mlflow_port}"
        inference_uri = f"http://{dns}:{inference_port}"

        self.mlflow = MlflowServer(
            self,
            "Mlflow",
            image=self._mlflow_image(),
            database=foundation.database,
            database_key=foundation.keys.database,
            database_name=config.mlflow.database_name,
            # By name, not by reference: the policy and the command then read plainly, with no import.
            artifacts_bucket=s3.Bucket.from_bucket_name(self, "ModelsBucket", config.models_bucket_name),
            artifacts_key=foundation.keys.storage,
            artifacts_prefix="mlflow",
            allowed_hosts=[
                dns,
                f"{dns}:{mlflow_port}",
                self._vpc_host_pattern(),
                "localhost",
                f"localhost:{mlflow_port}",
            ],
            tracking_uri=mlflow_uri,
            auth=config.mlflow.auth,
            options=self._options("mlflow", config.services.mlflow, Routing(mlflow_listener, lb.load_balancer, 10)),
            admin_secret_removal_policy=stateful_removal_policy(config),
        )
        self.backend = HttpService(
            self,
            "Backend",
            options=self._options(
                "backend", config.services.backend, Routing(web, lb.load_balancer, 10, BACKEND_PATHS)
            ),
            image=self._registry_image("mlops-backend"),
            container_port=names.SERVICES["backend"][1],
            health_check_path="/api/health",
            container_health_check=_http_probe(names.SERVICES["backend"][1], "/api/health"),
            environment={
                **self._mlflow_client_environment(),
                "NODE_ENV": "production",
                "PORT": str(names.SERVICES["backend"][1]),
                "MLFLOW_TRACKING_URI": mlflow_uri,
                "INFERENCE_URL": inference_uri,
                "DB_HOST": foundation.database.instance.db_instance_endpoint_address,
                "DB_PORT": foundation.database.instance.db_instance_endpoint_port,
                "DB_NAME": "postgres",
                "DB_SSL": "require",
            },
            secrets={
                **self._mlflow_client_secrets(),
                "DB_USER": ecs.Secret.from_secrets_manager(foundation.database.secret, "username"),
                "DB_PASSWORD": ecs.Secret.from_secrets_manager(foundation.database.secret, "password"),
            },
        )
        foundation.keys.database.grant_decrypt(self.backend.task_definition.obtain_execution_role())
        self.inference = HttpService(
            self,
            "Inference",
            options=self._options(
                "inference", config.services.inference, Routing(inference_listener, lb.load_balancer, 10)
            ),
            image=self._registry_image("mlops-inference"),
            container_port=inference_port,
            health_check_path="/ping",
            container_health_check=_http_probe(inference_port, "/ping"),
            environment={
                **self._mlflow_client_environment(),
                "MLFLOW_TRACKING_URI": mlflow_uri,
                "MODEL_URI": f"models:/{config.inference.model_name}@champion",
                "PORT": str(inference_port),
            },
            secrets=self._mlflow_client_secrets(),
        )
        grant_put_metrics(self.inference.task_role)  # MLOps/InferenceLatency, which `mlops-<env>-high-latency` watches
        self._wire_network(mlflow_port, inference_port)
        # ECS injects DB_PASSWORD at task start; RDS rotates it every 7 days: the readers restart on rotation.
        self.restart_on_rotation = RestartOnSecretRotation(
            self,
            "RestartOnDatabaseRotation",
            secret_arn=foundation.database.secret.secret_arn,
            services={"Backend": self.backend.service, "Mlflow": self.mlflow.service.service},
            log_group_name=names.state_machine_log_group(config.name, "restart-on-rotation"),
            log_retention=retention(config.services.log_retention_days),
            log_encryption_key=foundation.keys.logs,
            log_removal_policy=stateful_removal_policy(config),
        )
        self.frontend_service = self._build_frontend_service(web) if config.frontend.hosting == "ecs" else None
        self.frontend = self._build_frontend()
        self.cache = self._build_cache()
        self._build_observability()
        self._outputs(mlflow_uri, inference_uri)

    @property
    def services(self) -> dict[str, HttpService]:
        """Every ECS service of the environment, by short name."""
        services = {"backend": self.backend, "mlflow": self.mlflow.service, "inference": self.inference}
        if self.frontend_service is not None:
            services["frontend"] = self.frontend_service
        return services

    def _build_observability(self) -> None:
        """Alert topic, alarms (every one notifies the topic) and the `mlops-<env>` dashboard."""
        config = self.config
        observability = config.observability
        t = observability.thresholds
        self.alerts = AlertTopic(
            self,
            "Alerts",
            topic_name=names.alert_topic(config.name),
            encryption_key=self.foundation.keys.messaging,
            emails=observability.alert_emails,
        )
        self.alarms = PlatformAlarms(
            self,
            "Alarms",
            prefix=names.alarm_prefix(config.name),
            action=self.alerts.action,
            services=self.services,
            database=self.foundation.database.instance,
            models=config.monitored_models,
            # The config's thresholds carry the construct's field names one to one.
            thresholds=Thresholds(**t.model_dump(), model_missing_data=MISSING_DATA[observability.model_missing_data]),
            database_stops_on_schedule=config.database.stop_after_hours,
        )
        self.dashboard = PlatformDashboard(
            self,
            "Dashboard",
            name=names.dashboard(config.name),
            inference=self.inference,
            services=self.services,
            database=self.foundation.database.instance,
            models=config.monitored_models,
            alarms=[
                *self.alarms.alarms,
                *(alarm for service in self.services.values() for alarm in service.deployment_alarms),
            ],
        )

    # ----------------------------------------------------------------------------------------

    def _image_tag(self) -> str:
        """`-c imageTag=<git short sha>` when given, else the config's default tag."""
        tag = self.node.try_get_context(IMAGE_TAG_CONTEXT_KEY)
        if tag is None:
            return self.config.services.default_image_tag
        if not isinstance(tag, str) or not IMAGE_TAG_PATTERN.fullmatch(tag):
            raise ConfigError([f"-c {IMAGE_TAG_CONTEXT_KEY}={tag}: must be {IMAGE_TAG_RULE}"])
        return tag

    def _registry_image(self, repository: str) -> ecs.ContainerImage:
        return ecs.ContainerImage.from_ecr_repository(self.registry.repositories[repository], tag=self.image_tag)

    def _mlflow_image(self) -> ecs.ContainerImage:
        if self.config.mlflow.image == "registry":
            return self._registry_image(names.MLFLOW_REPOSITORY)
        return ecs.ContainerImage.from_asset(str(MLFLOW_IMAGE_DIRECTORY))

    def _mlflow_client_environment(self) -> dict[str, str]:
        """With MLflow's basic auth on, its clients sign in (MLflow's standard client variables)."""
        return {"MLFLOW_TRACKING_USERNAME": "admin"} if self.mlflow.admin_secret is not None else {}

    def _mlflow_client_secrets(self) -> dict[str, ecs.Secret]:
        secret = self.mlflow.admin_secret
        return {"MLFLOW_TRACKING_PASSWORD": ecs.Secret.from_secrets_manager(secret)} if secret is not None else {}

    def _vpc_host_pattern(self) -> str:
        """Host headers of health checks and in-VPC callers by IP: the VPC's leading octets and a wildcard."""
        network = ipaddress.IPv4Network(self.config.network.cidr)
        octets = str(network.network_address).split(".")[: max(1, network.prefixlen // 8)]
        return ".".join(octets) + ".*"

    def _options(self, short_name: str, size: ServiceSize, routing: Routing) -> HttpServiceOptions:
        config = self.config
        services = config.services
        schedule = services.schedule
        return HttpServiceOptions(
            cluster=self.cluster,
            service_name=names.SERVICES[short_name][0],
            cpu=size.cpu,
            memory_mib=size.memory_mib,
            desired_count=size.desired_count,
            routing=routing,
            deployment=Deployment(
                strategy=services.deployment,
                bake_time=Duration.minutes(services.bake_time_minutes),
                canary_percent=services.canary_percent,
                alarm_5xx_count=services.deploy_alarm_5xx_count,
                alarm_p99_latency=Duration.millis(services.deploy_alarm_p99_latency_ms),
            ),
            scaling=Scaling(
                min_tasks=size.min_tasks,
                max_tasks=size.max_tasks,
                cpu_target_percent=size.cpu_target_percent,
                requests_per_target=size.requests_per_target,
            ),
            log_group_name=names.service_log_group(config.name, short_name),
            log_retention=retention(services.log_retention_days),
            log_encryption_key=self.foundation.keys.logs,
            log_removal_policy=stateful_removal_policy(config),
            off_hours=OffHours(schedule.time_zone, schedule.stop_hour, schedule.start_hour) if schedule else None,
            alarm_name_prefix=names.deployment_alarm_prefix(config.name, short_name),
            capacity=services.capacity,
            task_family=names.task_family(config.name, short_name),
        )

    def _wire_network(self, mlflow_port: int, inference_port: int) -> None:
        """Who may call whom: each rule names its caller."""
        lb = self.load_balancer
        database = self.foundation.database
        for caller, port, description in (
            (self.backend, mlflow_port, "backend -> MLflow"),
            (self.inference, mlflow_port, "inference -> MLflow (loads the champion model)"),
            (self.backend, inference_port, "backend -> inference"),
        ):
            lb.allow(port, caller.security_group, description)
            caller.allow_to(lb.security_group, port, description)
        for caller, description in ((self.backend, "backend"), (self.mlflow.service, "MLflow backend store")):
            database.allow_from(caller.security_group, description)
            caller.allow_to(database.security_group, database.port, f"{description} -> database")

    def _build_edge_logs(self) -> s3.Bucket:
        """Access logs of the load balancer and CloudFront (CloudFront's standard logs need ACLs)."""
        return s3.Bucket(
            self,
            "EdgeLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.OBJECT_WRITER,
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-logs", expiration=Duration.days(self.config.frontend.log_expiration_days))
            ],
            removal_policy=stateful_removal_policy(self.config),
        )

    def _build_frontend_service(self, web: elbv2.ApplicationListener) -> HttpService:
        port = names.SERVICES["frontend"][1]
        return HttpService(
            self,
            "FrontendService",
            options=self._options(
                "frontend", self.config.services.frontend, Routing(web, self.load_balancer.load_balancer, 20, ("/*",))
            ),
            image=self._registry_image("mlops-frontend"),
            container_port=port,
            health_check_path="/",
            container_health_check=_http_probe(port, "/"),
            readonly_root_filesystem=False,  # web servers such as nginx write their caches and pid files
        )

    def _build_frontend(self) -> FrontendDistribution:
        frontend = self.config.frontend
        secure = self.config.load_balancer.certificate_arn is not None
        api_origin = origins.VpcOrigin.with_application_load_balancer(
            self.load_balancer.load_balancer,
            http_port=WEB_PORT,
            https_port=WEB_TLS_PORT if secure else None,
            protocol_policy=(
                cloudfront.OriginProtocolPolicy.HTTPS_ONLY if secure else cloudfront.OriginProtocolPolicy.HTTP_ONLY
            ),
            domain_name=self.config.load_balancer.origin_domain_name,
            vpc_origin_name=f"mlops-{self.config.name}-web",
        )
        certificate = (
            acm.Certificate.from_certificate_arn(self, "Certificate", frontend.certificate_arn)
            if frontend.certificate_arn
            else None
        )
        return FrontendDistribution(
            self,
            "Frontend",
            api_origin=api_origin,
            site_origin=api_origin if self.frontend_service is not None else None,
            log_bucket=self.edge_logs,
            domain_names=[frontend.domain_name] if frontend.domain_name else [],
            certificate=certificate,
            web_acl_arn=frontend.web_acl_arn,
            site_removal_policy=stateful_removal_policy(self.config),
            comment=f"MLOps Studio {self.config.name}",
        )

    def _build_cache(self) -> FeatureCache | None:
        cache = self.config.cache
        if not cache.enabled:
            return None
        clients = [self.backend, self.inference]
        feature_cache = FeatureCache(
            self,
            "FeatureCache",
            vpc=self.foundation.network.vpc,
            engine=cache.engine,
            node_type=cache.node_type,
            replicas=cache.replicas,
            clients=[client.security_group for client in clients],
            encryption_key=self.foundation.keys.database,
        )
        for client in clients:
            client.allow_to(feature_cache.security_group, feature_cache.port, f"{client.service_name} -> feature cache")
        return feature_cache

    def _outputs(self, mlflow_uri: str, inference_uri: str) -> None:
        """What operators and the smoke check read (`aws cloudformation describe-stacks`)."""
        outputs = {
            "ClusterName": self.cluster.cluster_name,
            "FrontendUrl": f"https://{self.frontend.distribution.distribution_domain_name}",
            "DistributionId": self.frontend.distribution.distribution_id,
            "LoadBalancerDns": self.load_balancer.load_balancer.load_balancer_dns_name,
            "MlflowTrackingUri": mlflow_uri,
            "InferenceUrl": inference_uri,
            "ImageTag": self.image_tag,
        }
        if self.frontend.bucket is not None:
            outputs["SiteBucket"] = self.frontend.bucket.bucket_name
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)


def _http_probe(port: int, path: str) -> list[str]:
    """A container health check that works with curl or busybox wget in the image."""
    url = f"http://localhost:{port}{path}"
    return ["CMD-SHELL", f"curl -fsS {url} >/dev/null || wget -qO- {url} >/dev/null || exit 1"]
