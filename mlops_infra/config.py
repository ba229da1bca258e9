"""Typed, validated per-environment settings read from ``config/<env>.toml``.

Every value that differs between environments lives in a TOML file; this module turns one
file into a frozen :class:`EnvironmentConfig` or raises :class:`ConfigError` with one line
per problem, each naming the file, the field path, the bad value and what is allowed.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

CONFIG_DIR_ENV = "MLOPS_CONFIG_DIR"
DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"

ENV_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]{1,15}$")
ENV_NAME_RULE = "2-16 lower-case letters or digits, starting with a letter"
REGION_PATTERN = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
ACCOUNT_PATTERN = re.compile(r"^\d{12}$")
PREFIX_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,18}[a-z0-9]$")
INSTANCE_CLASS_PATTERN = re.compile(r"^db\.[a-z][a-z0-9-]*\.[a-z0-9]+$")
ENGINE_VERSION_PATTERN = re.compile(r"^(\d+)\.(\d+)$")
SUPPORTED_POSTGRES_MAJORS = (16, 17)

# The values CloudWatch Logs accepts for a log group's retention.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


class ConfigError(Exception):
    """One or more problems in a config file; ``str()`` is the message shown to the user."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class FieldProblem(ValueError):
    """A cross-field rule's verdict on one field (a dotted path relative to the model)."""

    def __init__(self, field: str, value: Any, message: str) -> None:
        self.field = field
        self.value = value
        super().__init__(message)


class FieldProblems(ValueError):
    """Every cross-field problem of one model, so that each gets its own line."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(problem) for problem in problems))


def _report(problems: list[FieldProblem]) -> None:
    if problems:
        raise FieldProblems(problems)


# --------------------------------------------------------------------------------------------
# Reusable field types: each error says what is allowed, in words.


def _between(low: int, high: int) -> AfterValidator:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return AfterValidator(check)


def _matching(pattern: re.Pattern[str], allowed: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"must be {allowed}")
        return value

    return AfterValidator(check)


def _one_of(choices: Iterable[int]) -> AfterValidator:
    allowed = tuple(choices)

    def check(value: int) -> int:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(map(str, allowed))}")
        return value

    return AfterValidator(check)


def _unique(value: list[Any]) -> list[Any]:
    duplicates = sorted({str(item) for item in value if value.count(item) > 1})
    if duplicates:
        raise ValueError(f"must not repeat entries (repeated: {', '.join(duplicates)})")
    return value


def _ipv4_cidr(value: str) -> str:
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as error:
        raise ValueError(f"must be an IPv4 network in CIDR notation such as 10.0.0.0/16 ({error})") from None
    if not 16 <= network.prefixlen <= 24:
        raise ValueError("must have a prefix length between /16 and /24 (VPC limits)")
    return value


Region = Annotated[str, _matching(REGION_PATTERN, "an AWS region name such as us-east-1")]
Retention = Annotated[int, _one_of(LOG_RETENTION_DAYS)]
NonEmpty = Annotated[str, Field(min_length=1, max_length=256)]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --------------------------------------------------------------------------------------------
# Sections of a config file.


class AwsSettings(_Settings):
    """Where the environment lives."""

    region: Region
    account: Annotated[str, _matching(ACCOUNT_PATTERN, "a 12-digit AWS account ID")] | None = None
    availability_zones: Annotated[list[str], Field(min_length=2, max_length=6), AfterValidator(_unique)]
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
        _report(problems)
        return self


class NamingSettings(_Settings):
    """Prefix of globally unique names (S3 buckets)."""

    prefix: Annotated[
        str,
        _matching(PREFIX_PATTERN, "2-20 lower-case letters, digits or hyphens, not starting or ending with a hyphen"),
    ]


class TagSettings(_Settings):
    """Tags put on every resource; the environment's name is added as `Environment`."""

    project: NonEmpty
    owner: NonEmpty
    cost_center: NonEmpty
    extra: dict[str, NonEmpty] = Field(default_factory=dict)


class NetworkSettings(_Settings):
    """The VPC."""

    cidr: Annotated[str, AfterValidator(_ipv4_cidr)]
    nat_gateways: Annotated[int, _between(1, 6)]
    flow_log_traffic_type: Literal["ALL", "ACCEPT", "REJECT"]
    flow_log_retention_days: Retention
    interface_endpoints: Annotated[list[Literal["ecr", "logs", "secretsmanager"]], AfterValidator(_unique)] = Field(
        default_factory=list
    )
    public_subnet_mask: Annotated[int, _between(16, 28)] = 24
    private_subnet_mask: Annotated[int, _between(16, 28)] = 20
    isolated_subnet_mask: Annotated[int, _between(16, 28)] = 24
    # NAT for the private subnets: `nat_gateways` managed NAT gateways, or as many NAT instances (cheaper,
    # no managed failover: production configs must use gateways).
    nat: Literal["gateway", "instance"] = "gateway"
    nat_instance_type: Annotated[
        str, _matching(re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$"), "an EC2 instance type such as t4g.nano")
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


class DatabaseSettings(_Settings):
    """The RDS PostgreSQL instance shared by the backend and MLflow."""

    engine_version: Annotated[str, _matching(ENGINE_VERSION_PATTERN, "a PostgreSQL version MAJOR.MINOR such as 17.6")]
    instance_class: Annotated[str, _matching(INSTANCE_CLASS_PATTERN, "an RDS instance class such as db.t3.micro")]
    allocated_storage_gib: Annotated[int, _between(20, 65536)]
    max_allocated_storage_gib: Annotated[int, _between(20, 65536)] | None = None
    multi_az: bool
    backup_retention_days: Annotated[int, _between(1, 35)]
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
        _report(problems)
        return self

    @property
    def engine_major_version(self) -> str:
        return self.engine_version.split(".")[0]


class StorageSettings(_Settings):
    """The models bucket and its access-log bucket."""

    noncurrent_transition_days: Annotated[int, _between(30, 3650)]
    noncurrent_expiration_days: Annotated[int, _between(31, 3650)]
    abort_incomplete_multipart_days: Annotated[int, _between(1, 365)] = 7
    access_log_expiration_days: Annotated[int, _between(1, 3650)] = 90
    replication: bool = False

    @model_validator(mode="after")
    def _expiry_after_transition(self) -> StorageSettings:
        if self.noncurrent_expiration_days <= self.noncurrent_transition_days:
            _report(
                [
                    FieldProblem(
                        "noncurrent_expiration_days",
                        self.noncurrent_expiration_days,
                        f"must be greater than noncurrent_transition_days ({self.noncurrent_transition_days})",
                    )
                ]
            )
        return self


class RegistrySettings(_Settings):
    """The ECR repositories' lifecycle."""

    max_image_count: Annotated[int, _between(1, 1000)]
    untagged_expiry_days: Annotated[int, _between(1, 365)] = 7


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


class ServiceSize(_Settings):
    """One Fargate service's task size, count and scaling."""

    cpu: Annotated[int, _one_of(FARGATE_MEMORY)]
    memory_mib: Annotated[int, _between(512, 122880)]
    desired_count: Annotated[int, _between(0, 100)]
    min_tasks: Annotated[int, _between(0, 100)]
    max_tasks: Annotated[int, _between(1, 100)]
    cpu_target_percent: Annotated[int, _between(10, 90)] = 70
    requests_per_target: Annotated[int, _between(1, 100000)] | None = None

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
        _report(problems)
        return self


class ScheduleSettings(_Settings):
    """After-hours shutdown: services scale to 0 at `stop_hour` and back at `start_hour`, Monday to Friday."""

    time_zone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"
    stop_hour: Annotated[int, _between(0, 23)] = 18
    start_hour: Annotated[int, _between(0, 23)] = 8

    @model_validator(mode="after")
    def _time_zone_and_order(self) -> ScheduleSettings:
        problems: list[FieldProblem] = []
        if not _is_time_zone(self.time_zone):
            problems.append(FieldProblem("time_zone", self.time_zone, "must be an IANA time zone such as Europe/Paris"))
        if self.start_hour == self.stop_hour:
            problems.append(FieldProblem("start_hour", self.start_hour, "must differ from stop_hour"))
        _report(problems)
        return self


class ServicesSettings(_Settings):
    """The Fargate services: images, deployment safety, sizes and the after-hours schedule."""

    default_image_tag: Annotated[str, _matching(IMAGE_TAG_PATTERN, IMAGE_TAG_RULE)]
    deployment: Literal["rolling", "canary", "blue_green"]
    bake_time_minutes: Annotated[int, _between(0, 1440)] = 5
    canary_percent: Annotated[int, _between(1, 99)] = 10
    deploy_alarm_5xx_count: Annotated[int, _between(1, 100000)] = 5
    deploy_alarm_p99_latency_ms: Annotated[int, _between(10, 60000)] = 2000
    log_retention_days: Retention = 30
    schedule: ScheduleSettings | None = None
    # Where the tasks run: on-demand Fargate, or Fargate Spot (about 70 % cheaper; a task can be stopped with
    # two minutes' notice and is then replaced, so production configs must use on_demand).
    capacity: Literal["on_demand", "spot"] = "on_demand"
    backend: ServiceSize
    mlflow: ServiceSize
    inference: ServiceSize
    frontend: ServiceSize


class MlflowSettings(_Settings):
    """The MLflow tracking server and model registry."""

    image: Literal["asset", "registry"] = "asset"
    auth: bool = False
    database_name: Annotated[str, _matching(re.compile(r"^[a-z][a-z0-9_]{0,62}$"), "a PostgreSQL database name")] = (
        "mlflow"
    )


ModelName = Annotated[
    str,
    _matching(re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"), "1-100 letters, digits, . _ - (an MLflow model name)"),
]


class InferenceSettings(_Settings):
    """The model-inference service."""

    model_name: ModelName


class FrontendSettings(_Settings):
    """Where the web frontend is served from, and its optional custom domain."""

    hosting: Literal["s3", "ecs"] = "s3"
    domain_name: Annotated[str, Field(min_length=3, max_length=253)] | None = None
    certificate_arn: Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:acm:us-east-1:\d{12}:certificate/.+$")] | None = (
        None
    )
    web_acl_arn: Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:wafv2:us-east-1:\d{12}:global/webacl/.+$")] | None = (
        None
    )
    log_expiration_days: Annotated[int, _between(1, 3650)] = 90

    @model_validator(mode="after")
    def _domain_needs_certificate(self) -> FrontendSettings:
        if (self.domain_name is None) != (self.certificate_arn is None):
            _report(
                [
                    FieldProblem(
                        "certificate_arn" if self.domain_name else "domain_name",
                        self.certificate_arn if self.domain_name else self.domain_name,
                        "domain_name and certificate_arn go together (an ACM certificate in us-east-1)",
                    )
                ]
            )
        return self


class LoadBalancerSettings(_Settings):
    """The internal Application Load Balancer shared by the services."""

    idle_timeout_seconds: Annotated[int, _between(1, 4000)] = 60
    deletion_protection: bool
    cloudfront_prefix_list_id: Annotated[str, _matching(re.compile(r"^pl-[0-9a-f]{8,17}$"), "a prefix list ID pl-...")]
    # HTTPS between CloudFront and the load balancer: an ACM certificate of aws.region for origin_domain_name.
    certificate_arn: Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/.+$")] | None = (
        None
    )
    origin_domain_name: Annotated[str, Field(min_length=3, max_length=253)] | None = None

    @model_validator(mode="after")
    def _certificate_needs_domain(self) -> LoadBalancerSettings:
        if (self.certificate_arn is None) != (self.origin_domain_name is None):
            missing = "origin_domain_name" if self.certificate_arn else "certificate_arn"
            _report(
                [
                    FieldProblem(
                        missing,
                        None,
                        "certificate_arn and origin_domain_name go together (the name the certificate is for)",
                    )
                ]
            )
        return self


class CacheSettings(_Settings):
    """Optional feature cache (ElastiCache, Valkey or Redis OSS)."""

    enabled: bool = False
    engine: Literal["valkey", "redis"] = "valkey"
    node_type: Annotated[
        str, _matching(re.compile(r"^cache\.[a-z0-9]+\.[a-z0-9]+$"), "a node type such as cache.t4g.micro")
    ] = "cache.t4g.micro"
    replicas: Annotated[int, _between(0, 5)] = 0


class BackupSettings(_Settings):
    """AWS Backup of the database: daily, kept `retention_days`, optionally copied to the DR region."""

    retention_days: Annotated[int, _between(1, 3650)]
    copy_to_dr_region: bool = False


GITHUB_REPOSITORY_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class CiSettings(_Settings):
    """Keyless CI: which GitHub repository (and GitHub environment) may deploy this environment."""

    github_repository: Annotated[str, _matching(GITHUB_REPOSITORY_PATTERN, "a GitHub repository owner/name")]
    github_environment: Annotated[str, Field(min_length=1, max_length=255)] | None = None


EMAIL_PATTERN = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
Percent = Annotated[int, _between(1, 100)]
MissingData = Literal["breaching", "notBreaching", "ignore", "missing"]


class AlarmThresholds(_Settings):
    """Thresholds of the platform's alarms (see the README's alarm table for what each watches)."""

    inference_latency_ms: Annotated[int, _between(1, 600000)] = 100
    inference_latency_period_seconds: Annotated[int, _one_of((60, 300, 900, 3600))] = 300
    inference_latency_evaluation_periods: Annotated[int, _between(1, 100)] = 2
    p99_latency_ms: Annotated[int, _between(10, 600000)] = 1000
    error_rate_percent: Percent = 5
    unhealthy_targets: Annotated[int, _between(1, 1000)] = 1
    cpu_percent: Percent = 85
    memory_percent: Percent = 85
    rds_cpu_percent: Percent = 80
    rds_free_storage_gib: Annotated[int, _between(1, 65536)] = 5
    rds_connections: Annotated[int, _between(1, 100000)] = 100
    model_accuracy_min: Annotated[float, Field(gt=0, le=1)] = 0.8
    model_drift_max: Annotated[float, Field(gt=0, le=1)] = 0.3
    evaluation_periods: Annotated[int, _between(1, 100)] = 3


class ObservabilitySettings(_Settings):
    """Alert topic, dashboard and alarms."""

    alert_emails: Annotated[list[str], AfterValidator(_unique)] = Field(default_factory=list)
    models: Annotated[list[ModelName], AfterValidator(_unique)] | None = None
    model_missing_data: MissingData = "breaching"
    thresholds: AlarmThresholds = Field(default_factory=AlarmThresholds)

    @model_validator(mode="after")
    def _emails(self) -> ObservabilitySettings:
        _report(
            [
                FieldProblem(f"alert_emails[{index}]", address, "must be an e-mail address such as oncall@example.com")
                for index, address in enumerate(self.alert_emails)
                if not EMAIL_PATTERN.fullmatch(address)
            ]
        )
        return self


def _is_time_zone(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


class EnvironmentConfig(_Settings):
    """Everything one environment (dev, staging, prod, ...) is built from."""

    name: Annotated[str, _matching(ENV_NAME_PATTERN, ENV_NAME_RULE)]
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
        _report(problems)
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


# --------------------------------------------------------------------------------------------
# Loading and error reporting.


def config_dir() -> Path:
    """The folder holding `<env>.toml` files: `$MLOPS_CONFIG_DIR`, else the repository's `config/`."""
    return Path(os.environ.get(CONFIG_DIR_ENV) or DEFAULT_CONFIG_DIR)


def environment_names(directory: Path | None = None) -> list[str]:
    """The environments defined in a config folder, sorted."""
    folder = directory or config_dir()
    if not folder.is_dir():
        raise ConfigError([f"{_display(folder)}: config folder not found (set {CONFIG_DIR_ENV} or create it)"])
    # Hidden files (editor backups such as .#dev.toml) are not environments.
    return sorted(path.stem for path in folder.glob("*.toml") if not path.name.startswith((".", "#")))


def load_config(env: str, directory: Path | None = None) -> EnvironmentConfig:
    """Read and validate `<directory>/<env>.toml`; raise ConfigError naming every problem."""
    folder = directory or config_dir()
    path = folder / f"{env}.toml"
    shown = _display(path)
    if not ENV_NAME_PATTERN.fullmatch(env):
        raise ConfigError(
            [f"{shown}: file name {env!r}: an environment's name must be {ENV_NAME_RULE} (it names the stacks)"]
        )
    if not path.is_file():
        known = ", ".join(environment_names(folder)) or "none"
        raise ConfigError([f"{shown}: no such file: unknown environment {env!r} (known environments: {known})"])
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"{shown}: invalid TOML: {error}"]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([f"{shown}: cannot read file: {error}"]) from None
    if "name" in raw:
        raise ConfigError([f"{shown}: name = {_show(raw['name'])}: unknown key; the environment's name is the file's"])
    try:
        return EnvironmentConfig.model_validate({"name": env, **raw})
    except ValidationError as error:
        raise ConfigError(_describe(shown, error)) from None


def load_all(directory: Path | None = None) -> list[EnvironmentConfig]:
    """Every environment of a config folder; all problems of all files in one ConfigError."""
    folder = directory or config_dir()
    names = environment_names(folder)
    if not names:
        raise ConfigError([f"{_display(folder)}: no <env>.toml files found"])
    configs, problems = [], []
    for name in names:
        try:
            configs.append(load_config(name, folder))
        except ConfigError as error:
            problems.extend(error.problems)
    if problems:
        raise ConfigError(problems)
    return configs


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _describe(shown: str, error: ValidationError) -> list[str]:
    problems: list[str] = []
    for item in error.errors(include_url=False):
        location = [str(part) for part in item["loc"]]
        value: Any = item.get("input")
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, FieldProblems):
            problems.extend(
                f"{shown}: {_join([*location, problem.field])} = {_show(problem.value)}: {problem}"
                for problem in cause.problems
            )
            continue
        message = _message(item, location)
        path = _join(location)
        if item["type"] == "missing":
            problems.append(f"{shown}: {path}: {message}")
        else:
            problems.append(f"{shown}: {path} = {_show(value)}: {message}")
    return problems


def _message(item: Any, location: list[str]) -> str:
    kind = item["type"]
    if kind == "value_error":
        return str(item["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(location[:-1])
        return f"unknown key; allowed keys here: {', '.join(allowed)}" if allowed else "unknown key"
    if kind == "missing":
        return "is required but missing"
    if kind == "literal_error":
        return f"must be one of {str(item['ctx']['expected']).replace(chr(39), chr(34))}"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        bound = next(iter((item.get("ctx") or {}).values()), "?")
        return f"must be {bounds[kind]} {bound}"
    readable = {
        "int_type": "must be a whole number",
        "float_type": "must be a number",
        "bool_type": "must be true or false",
        "string_type": "must be a string in quotes",
        "list_type": 'must be a list such as ["a", "b"]',
        "dict_type": "must be a table",
        "model_type": "must be a table",
        "model_attributes_type": "must be a table",
        "too_short": "has too few entries",
        "too_long": "has too many entries",
        "string_too_short": "must not be empty",
    }
    base = readable.get(kind, str(item["msg"]))
    if kind in ("too_short", "too_long") and "ctx" in item:
        ctx = item["ctx"]
        bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        base += f" (at {'least' if kind == 'too_short' else 'most'} {bound})"
    return base


def _allowed_keys(location: list[str]) -> list[str]:
    model: Any = EnvironmentConfig
    for part in location:
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        model = field.annotation
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [key for key in model.model_fields if not (model is EnvironmentConfig and key == "name")]
    return []


def _join(location: list[str]) -> str:
    text = ""
    for part in location:
        if part.isdigit():
            text += f"[{part}]"
        elif part.startswith("["):
            text += part
        else:
            text += f".{part}" if text else part
    # a FieldProblem path such as "availability_zones[1]" is already joined
    return text.replace(".[", "[")


def _show(value: Any) -> str:
    """A value as it is written in TOML."""
    if value is None:
        return "(not set)"
    if isinstance(value, list):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict | BaseModel):
        return "{...}"
    return repr(value)
