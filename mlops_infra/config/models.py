"""The settings of one environment, section by section, and the rules that span sections."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from mlops_infra.config.fields import (
    ACCOUNT_PATTERN,
    ENGINE_VERSION_PATTERN,
    ENV_NAME_PATTERN,
    ENV_NAME_RULE,
    INSTANCE_CLASS_PATTERN,
    PREFIX_PATTERN,
    SUPPORTED_POSTGRES_MAJORS,
    FieldProblem,
    NonEmpty,
    Region,
    Retention,
    Settings,
    between,
    ipv4_cidr,
    is_time_zone,
    matching,
    one_of,
    report,
    unique,
)


class AwsSettings(Settings):
    """Where the environment lives."""

    region: Region
    account: Annotated[str, matching(ACCOUNT_PATTERN, "a 12-digit AWS account ID")] | None = None
    availability_zones: Annotated[list[str], Field(min_length=2, max_length=6), AfterValidator(unique)]
    dr_region: Region | None = None

    @model_validator(mode="after")
    def _zones_and_regions(self) -> AwsSettings:
        problems = [
            FieldProblem(
                f"availability_zones[{index}]",
                zone,
                f"must be an availability zone of region {self.region} (such as {self.region}a)",
            )
            for index, zone in enumerate(self.availability_zones)
            if not re.fullmatch(re.escape(self.region) + r"[a-z]", zone)
        ]
        if self.dr_region == self.region:
            problems.append(FieldProblem("dr_region", self.dr_region, "must differ from aws.region"))
        report(problems)
        return self


class NamingSettings(Settings):
    """Prefix of globally unique names (S3 buckets)."""

    prefix: Annotated[
        str,
        matching(PREFIX_PATTERN, "2-20 lower-case letters, digits or hyphens, not starting or ending with a hyphen"),
    ]


class TagSettings(Settings):
    """Tags put on every resource; the environment's name is added as `Environment`."""

    project: NonEmpty
    owner: NonEmpty
    cost_center: NonEmpty
    extra: dict[str, NonEmpty] = Field(default_factory=dict)


class NetworkSettings(Settings):
    """The VPC."""

    cidr: Annotated[str, AfterValidator(ipv4_cidr)]
    nat_gateways: Annotated[int, between(1, 6)]
    flow_log_traffic_type: Literal["ALL", "ACCEPT", "REJECT"]
    flow_log_retention_days: Retention
    interface_endpoints: Annotated[list[Literal["ecr", "logs", "secretsmanager"]], AfterValidator(unique)] = Field(
        default_factory=list
    )
    public_subnet_mask: Annotated[int, between(16, 28)] = 24
    private_subnet_mask: Annotated[int, between(16, 28)] = 20
    isolated_subnet_mask: Annotated[int, between(16, 28)] = 24
    # NAT for the private subnets: `nat_gateways` managed NAT gateways, or as many NAT instances (cheaper,
    # no managed failover: production configs must use gateways).
    nat: Literal["gateway", "instance"] = "gateway"
    nat_instance_type: Annotated[
        str, matching(re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$"), "an EC2 instance type such as t4g.nano")
    ] = "t4g.nano"
    # Stop the NAT instances after hours with the services (`services.schedule`): nothing in the private
    # subnets needs the internet while the services are at 0; they start an hour before the services.
    stop_nat_after_hours: bool = False

    def subnet_masks(self) -> dict[str, int]:
        return {
            "public": self.public_subnet_mask,
            "private": self.private_subnet_mask,
            "isolated": self.isolated_subnet_mask,
        }


class DatabaseSettings(Settings):
    """The RDS PostgreSQL instance shared by the backend and MLflow."""

    engine_version: Annotated[str, matching(ENGINE_VERSION_PATTERN, "a PostgreSQL version MAJOR.MINOR such as 17.6")]
    instance_class: Annotated[str, matching(INSTANCE_CLASS_PATTERN, "an RDS instance class such as db.t3.micro")]
    allocated_storage_gib: Annotated[int, between(20, 65536)]
    max_allocated_storage_gib: Annotated[int, between(20, 65536)] | None = None
    multi_az: bool
    backup_retention_days: Annotated[int, between(1, 35)]
    deletion_protection: bool
    performance_insights: bool = True
    log_retention_days: Retention = 30
    # Stop the instance after hours with the services (`services.schedule`); it starts an hour before them.
    stop_after_hours: bool = False

    @model_validator(mode="after")
    def _versions_and_storage(self) -> DatabaseSettings:
        problems: list[FieldProblem] = []
        match = ENGINE_VERSION_PATTERN.fullmatch(self.engine_version)
        if match and int(match.group(1)) not in SUPPORTED_POSTGRES_MAJORS:
            allowed = ", ".join(map(str, SUPPORTED_POSTGRES_MAJORS))
            problems.append(
                FieldProblem("engine_version", self.engine_version, f"major version must be one of {allowed}")
            )
        if self.max_allocated_storage_gib is not None and self.max_allocated_storage_gib <= self.allocated_storage_gib:
            problems.append(
                FieldProblem(
                    "max_allocated_storage_gib",
                    self.max_allocated_storage_gib,
                    f"must be greater than allocated_storage_gib ({self.allocated_storage_gib}) or left out",
                )
            )
        report(problems)
        return self

    @property
    def engine_major_version(self) -> str:
        return self.engine_version.split(".")[0]


class StorageSettings(Settings):
    """The models bucket and its access-log bucket."""

    noncurrent_transition_days: Annotated[int, between(30, 3650)]
    noncurrent_expiration_days: Annotated[int, between(31, 3650)]
    abort_incomplete_multipart_days: Annotated[int, between(1, 365)] = 7
    access_log_expiration_days: Annotated[int, between(1, 3650)] = 90
    replication: bool = False

    @model_validator(mode="after")
    def _expiry_after_transition(self) -> StorageSettings:
        if self.noncurrent_expiration_days <= self.noncurrent_transition_days:
            report(
                [
                    FieldProblem(
                        "noncurrent_expiration_days",
                        self.noncurrent_expiration_days,
                        f"must be greater than noncurrent_transition_days ({self.noncurrent_transition_days})",
                    )
                ]
            )
        return self


class RegistrySettings(Settings):
    """The ECR repositories' lifecycle."""

    max_image_count: Annotated[int, between(1, 1000)]
    untagged_expiry_days: Annotated[int, between(1, 365)] = 7


# Fargate's valid task sizes: CPU units -> allowed memory (MiB).
FARGATE_MEMORY: dict[int, range] = {
    256: range(512, 2049, 512),
    512: range(1024, 4097, 1024),
    1024: range(2048, 8193, 1024),
    2048: range(4096, 16385, 1024),
    4096: range(8192, 30721, 1024),
    8192: range(16384, 61441, 4096),
    16384: range(32768, 122881, 8192),
}
IMAGE_TAG_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
IMAGE_TAG_RULE = "an image tag: up to 128 letters, digits, _ . -, not starting with . or -"


class ServiceSize(Settings):
    """One Fargate service's task size, count and scaling."""

    cpu: Annotated[int, one_of(FARGATE_MEMORY)]
    memory_mib: Annotated[int, between(512, 122880)]
    desired_count: Annotated[int, between(0, 100)]
    min_tasks: Annotated[int, between(0, 100)]
    max_tasks: Annotated[int, between(1, 100)]
    cpu_target_percent: Annotated[int, between(10, 90)] = 70
    requests_per_target: Annotated[int, between(1, 100000)] | None = None

    @model_validator(mode="after")
    def _size_and_bounds(self) -> ServiceSize:
        problems: list[FieldProblem] = []
        allowed = FARGATE_MEMORY.get(self.cpu)
        if allowed is not None and self.memory_mib not in allowed:
            problems.append(
                FieldProblem(
                    "memory_mib",
                    self.memory_mib,
                    f"is not a Fargate size for cpu = {self.cpu}: use {allowed.start}-{allowed.stop - 1} "
                    f"in steps of {allowed.step}",
                )
            )
        if not self.min_tasks <= self.desired_count <= self.max_tasks:
            problems.append(
                FieldProblem(
                    "desired_count",
                    self.desired_count,
                    f"must lie between min_tasks ({self.min_tasks}) and max_tasks ({self.max_tasks})",
                )
            )
        report(problems)
        return self


class ScheduleSettings(Settings):
    """After-hours shutdown: services scale to 0 at `stop_hour` and back at `start_hour`, Monday to Friday."""

    time_zone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"
    stop_hour: Annotated[int, between(0, 23)] = 18
    start_hour: Annotated[int, between(0, 23)] = 8

    @model_validator(mode="after")
    def _time_zone_and_order(self) -> ScheduleSettings:
        problems: list[FieldProblem] = []
        if not is_time_zone(self.time_zone):
            problems.append(FieldProblem("time_zone", self.time_zone, "must be an IANA time zone such as Europe/Paris"))
        if self.start_hour == self.stop_hour:
            problems.append(FieldProblem("start_hour", self.start_hour, "must differ from stop_hour"))
        report(problems)
        return self


class ServicesSettings(Settings):
    """The Fargate services: images, deployment safety, sizes and the after-hours schedule."""

    default_image_tag: Annotated[str, matching(IMAGE_TAG_PATTERN, IMAGE_TAG_RULE)]
    deployment: Literal["rolling", "canary", "blue_green"]
    bake_time_minutes: Annotated[int, between(0, 1440)] = 5
    canary_percent: Annotated[int, between(1, 99)] = 10
    deploy_alarm_5xx_count: Annotated[int, between(1, 100000)] = 5
    deploy_alarm_p99_latency_ms: Annotated[int, between(10, 60000)] = 2000
    log_retention_days: Retention = 30
    schedule: ScheduleSettings | None = None
    # Where the tasks run: on-demand Fargate, or Fargate Spot (about 70 % cheaper; a task can be stopped with
    # two minutes' notice and is then replaced, so production configs must use on_demand).
    capacity: Literal["on_demand", "spot"] = "on_demand"
    backend: ServiceSize
    mlflow: ServiceSize
    inference: ServiceSize
    frontend: ServiceSize


class MlflowSettings(Settings):
    """The MLflow tracking server and model registry."""

    image: Literal["asset", "registry"] = "asset"
    auth: bool = False
    database_name: Annotated[str, matching(re.compile(r"^[a-z][a-z0-9_]{0,62}$"), "a PostgreSQL database name")] = (
        "mlflow"
    )


ModelName = Annotated[
    str,
    matching(re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"), "1-100 letters, digits, . _ - (an MLflow model name)"),
]


class InferenceSettings(Settings):
    """The model-inference service."""

    model_name: ModelName


class FrontendSettings(Settings):
    """Where the web frontend is served from, and its optional custom domain."""

    hosting: Literal["s3", "ecs"] = "s3"
    domain_name: Annotated[str, Field(min_length=3, max_length=253)] | None = None
    certificate_arn: Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:acm:us-east-1:\d{12}:certificate/.+$")] | None = (
        None
    )
    web_acl_arn: Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:wafv2:us-east-1:\d{12}:global/webacl/.+$")] | None = (
        None
    )
    log_expiration_days: Annotated[int, between(1, 3650)] = 90

    @model_validator(mode="after")
    def _domain_needs_certificate(self) -> FrontendSettings:
        if (self.domain_name is None) != (self.certificate_arn is None):
            report(
                [
                    FieldProblem(
                        "certificate_arn" if self.domain_name else "domain_name",
                        self.certificate_arn if self.domain_name else self.domain_name,
                        "domain_name and certificate_arn go together (an ACM certificate in us-east-1)",
                    )
                ]
            )
        return self


class LoadBalancerSettings(Settings):
    """The internal Application Load Balancer shared by the services."""

    idle_timeout_seconds: Annotated[int, between(1, 4000)] = 60
    deletion_protection: bool
    cloudfront_prefix_list_id: Annotated[str, matching(re.compile(r"^pl-[0-9a-f]{8,17}$"), "a prefix list ID pl-...")]
    # HTTPS between CloudFront and the load balancer: an ACM certificate of aws.region for origin_domain_name.
    certificate_arn: Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/.+$")] | None = (
        None
    )
    origin_domain_name: Annotated[str, Field(min_length=3, max_length=253)] | None = None

    @model_validator(mode="after")
    def _certificate_needs_domain(self) -> LoadBalancerSettings:
        if (self.certificate_arn is None) != (self.origin_domain_name is None):
            missing = "origin_domain_name" if self.certificate_arn else "certificate_arn"
            report(
                [
                    FieldProblem(
                        missing,
                        None,
                        "certificate_arn and origin_domain_name go together (the name the certificate is for)",
                    )
                ]
            )
        return self


class CacheSettings(Settings):
    """Optional feature cache (ElastiCache, Valkey or Redis OSS)."""

    enabled: bool = False
    engine: Literal["valkey", "redis"] = "valkey"
    node_type: Annotated[
        str, matching(re.compile(r"^cache\.[a-z0-9]+\.[a-z0-9]+$"), "a node type such as cache.t4g.micro")
    ] = "cache.t4g.micro"
    replicas: Annotated[int, between(0, 5)] = 0


class BackupSettings(Settings):
    """AWS Backup of the database: daily, kept `retention_days`, optionally copied to the DR region."""

    retention_days: Annotated[int, between(1, 3650)]
    copy_to_dr_region: bool = False


GITHUB_REPOSITORY_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class CiSettings(Settings):
    """Keyless CI: which GitHub repository (and GitHub environment) may deploy this environment."""

    github_repository: Annotated[str, matching(GITHUB_REPOSITORY_PATTERN, "a GitHub repository owner/name")]
    github_environment: Annotated[str, Field(min_length=1, max_length=255)] | None = None


EMAIL_PATTERN = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
Percent = Annotated[int, between(1, 100)]
MissingData = Literal["breaching", "notBreaching", "ignore", "missing"]


class AlarmThresholds(Settings):
    """Thresholds of the platform's alarms (see the README's alarm table for what each watches)."""

    inference_latency_ms: Annotated[int, between(1, 600000)] = 100
    inference_latency_period_seconds: Annotated[int, one_of((60, 300, 900, 3600))] = 300
    inference_latency_evaluation_periods: Annotated[int, between(1, 100)] = 2
    p99_latency_ms: Annotated[int, between(10, 600000)] = 1000
    error_rate_percent: Percent = 5
    unhealthy_targets: Annotated[int, between(1, 1000)] = 1
    cpu_percent: Percent = 85
    memory_percent: Percent = 85
    rds_cpu_percent: Percent = 80
    rds_free_storage_gib: Annotated[int, between(1, 65536)] = 5
    rds_connections: Annotated[int, between(1, 100000)] = 100
    model_accuracy_min: Annotated[float, Field(gt=0, le=1)] = 0.8
    model_drift_max: Annotated[float, Field(gt=0, le=1)] = 0.3
    evaluation_periods: Annotated[int, between(1, 100)] = 3


class ObservabilitySettings(Settings):
    """Alert topic, dashboard and alarms."""

    alert_emails: Annotated[list[str], AfterValidator(unique)] = Field(default_factory=list)
    models: Annotated[list[ModelName], AfterValidator(unique)] | None = None
    model_missing_data: MissingData = "breaching"
    thresholds: AlarmThresholds = Field(default_factory=AlarmThresholds)

    @model_validator(mode="after")
    def _emails(self) -> ObservabilitySettings:
        report(
            [
                FieldProblem(f"alert_emails[{index}]", address, "must be an e-mail address such as oncall@example.com")
                for index, address in enumerate(self.alert_emails)
                if not EMAIL_PATTERN.fullmatch(address)
            ]
        )
        return self


class EnvironmentConfig(Settings):
    """Everything one environment (dev, staging, prod, ...) is built from."""

    name: Annotated[str, matching(ENV_NAME_PATTERN, ENV_NAME_RULE)]
    production: bool
    termination_protection: bool
    removal_policy: Literal["retain", "snapshot", "destroy"]
    aws: AwsSettings
    naming: NamingSettings
    tags: TagSettings
    network: NetworkSettings
    database: DatabaseSettings
    storage: StorageSettings
    registry: RegistrySettings
    services: ServicesSettings
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    inference: InferenceSettings
    frontend: FrontendSettings = Field(default_factory=FrontendSettings)
    load_balancer: LoadBalancerSettings
    cache: CacheSettings = Field(default_factory=CacheSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    backup: BackupSettings
    ci: CiSettings

    @model_validator(mode="after")
    def _cross_section_rules(self) -> EnvironmentConfig:
        zones = len(self.aws.availability_zones)
        problems: list[FieldProblem] = []
        if self.network.nat_gateways > zones:
            problems.append(
                FieldProblem(
                    "network.nat_gateways",
                    self.network.nat_gateways,
                    f"must not exceed the number of availability zones ({zones})",
                )
            )
        problems += _subnet_problems(self.network, zones)
        if self.storage.replication and self.aws.dr_region is None:
            problems.append(FieldProblem("storage.replication", True, "needs aws.dr_region to be set"))
        certificate = self.load_balancer.certificate_arn
        if certificate and certificate.split(":")[3] != self.aws.region:
            problems.append(
                FieldProblem(
                    "load_balancer.certificate_arn", certificate, f"must be a certificate of {self.aws.region}"
                )
            )
        if self.backup.copy_to_dr_region and self.aws.dr_region is None:
            problems.append(FieldProblem("backup.copy_to_dr_region", True, "needs aws.dr_region to be set"))
        problems += _after_hours_problems(self)
        if self.production:
            problems += _production_problems(self)
        longest = max(self.bucket_names, key=len)
        if len(longest) > 63:
            problems.append(
                FieldProblem("naming.prefix", self.naming.prefix, f"is too long: bucket name {longest} exceeds 63")
            )
        report(problems)
        return self

    @property
    def has_dr_region_stack(self) -> bool:
        """Whether anything lives in the DR region (the models replica, backup copies)."""
        return self.aws.dr_region is not None and (self.storage.replication or self.backup.copy_to_dr_region)

    @property
    def monitored_models(self) -> list[str]:
        """The models whose MLOps metrics are alarmed on: `observability.models`, else the served one."""
        return self.observability.models or [self.inference.model_name]

    # Names derived from the settings, in one place.
    @property
    def title(self) -> str:
        return self.name.capitalize()

    @property
    def models_bucket_name(self) -> str:
        return f"{self.naming.prefix}-mlops-models-{self.name}"

    @property
    def models_replica_bucket_name(self) -> str:
        return f"{self.models_bucket_name}-replica"

    @property
    def access_logs_bucket_name(self) -> str:
        return f"{self.naming.prefix}-mlops-access-logs-{self.name}"

    @property
    def replica_access_logs_bucket_name(self) -> str:
        return f"{self.access_logs_bucket_name}-replica"

    @property
    def bucket_names(self) -> list[str]:
        return [
            self.models_bucket_name,
            self.models_replica_bucket_name,
            self.access_logs_bucket_name,
            self.replica_access_logs_bucket_name,
        ]


def _subnet_problems(network: NetworkSettings, zones: int) -> list[FieldProblem]:
    """Allocate every tier's subnets in order, aligned, as CDK does; a problem if the VPC is too small."""
    vpc = ipaddress.IPv4Network(network.cidr)
    masks = network.subnet_masks()
    too_large = [tier for tier, mask in masks.items() if mask < vpc.prefixlen]
    if too_large:
        tiers = ", ".join(f"{tier} /{masks[tier]}" for tier in too_large)
        return [
            FieldProblem(
                "network.cidr",
                network.cidr,
                f"is smaller than one subnet ({tiers}): widen it or set network.<tier>_subnet_mask",
            )
        ]
    next_address = int(vpc.network_address)
    for mask in masks.values():
        size = 2 ** (32 - mask)
        for _ in range(zones):
            next_address = -(-next_address // size) * size + size
    if next_address > int(vpc.broadcast_address) + 1:
        tiers = ", ".join(f"{tier} /{mask}" for tier, mask in masks.items())
        return [FieldProblem("network.cidr", network.cidr, f"is too small for {zones} availability zones x {tiers}")]
    return []


def _after_hours_problems(config: EnvironmentConfig) -> list[FieldProblem]:
    """Stopping the database or the NAT instances follows the services' schedule, so it needs one."""
    problems = []
    schedule = config.services.schedule
    if config.database.stop_after_hours and schedule is None:
        problems.append(FieldProblem("database.stop_after_hours", True, "needs a [services.schedule] section"))
    stops = config.database.stop_after_hours or config.network.stop_nat_after_hours
    if stops and schedule is not None and schedule.start_hour == 0:
        problems.append(
            FieldProblem(
                "services.schedule.start_hour",
                0,
                "must be at least 1 when the database or NAT instances stop after hours (they start an hour earlier)",
            )
        )
    if config.network.stop_nat_after_hours:
        if schedule is None:
            problems.append(FieldProblem("network.stop_nat_after_hours", True, "needs a [services.schedule] section"))
        if config.network.nat != "instance":
            problems.append(
                FieldProblem(
                    "network.stop_nat_after_hours", True, 'needs network.nat = "instance" (NAT gateways cannot stop)'
                )
            )
    return problems


def _production_problems(config: EnvironmentConfig) -> list[FieldProblem]:
    """A config marked `production = true` may not weaken what protects production data."""
    rules: list[tuple[str, Any, bool, str]] = [
        (
            "removal_policy",
            config.removal_policy,
            config.removal_policy != "destroy",
            "must be retain or snapshot when production = true",
        ),
        (
            "termination_protection",
            config.termination_protection,
            config.termination_protection,
            "must be true when production = true",
        ),
        (
            "database.deletion_protection",
            config.database.deletion_protection,
            config.database.deletion_protection,
            "must be true when production = true",
        ),
        (
            "database.multi_az",
            config.database.multi_az,
            config.database.multi_az,
            "must be true when production = true",
        ),
        (
            "database.backup_retention_days",
            config.database.backup_retention_days,
            config.database.backup_retention_days >= 7,
            "must be at least 7 when production = true",
        ),
        (
            "network.nat",
            config.network.nat,
            config.network.nat == "gateway",
            "must be gateway when production = true",
        ),
        (
            "network.flow_log_traffic_type",
            config.network.flow_log_traffic_type,
            config.network.flow_log_traffic_type == "ALL",
            "must be ALL when production = true",
        ),
        (
            "backup.copy_to_dr_region",
            config.backup.copy_to_dr_region,
            config.backup.copy_to_dr_region,
            "must be true when production = true (backups survive the loss of the region)",
        ),
        (
            "load_balancer.deletion_protection",
            config.load_balancer.deletion_protection,
            config.load_balancer.deletion_protection,
            "must be true when production = true",
        ),
        (
            "cache.replicas",
            config.cache.replicas,
            not config.cache.enabled or config.cache.replicas >= 1,
            "must be at least 1 when production = true and the cache is enabled (multi-AZ failover)",
        ),
        (
            "services.schedule",
            config.services.schedule,
            config.services.schedule is None,
            "must be left out when production = true (no after-hours shutdown)",
        ),
        (
            "services.capacity",
            config.services.capacity,
            config.services.capacity == "on_demand",
            "must be on_demand when production = true (Fargate Spot tasks can be stopped at any time)",
        ),
    ]
    return [FieldProblem(field, value, message) for field, value, ok, message in rules if not ok]
