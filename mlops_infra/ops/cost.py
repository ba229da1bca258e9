"""`mlops-ops cost`: the monthly cost of each environment, estimated offline from the synthesized templates.

What runs is counted from the cloud assembly (`cdk synth` output): NAT gateways and NAT instances, load
balancers, RDS instances, Fargate services, ElastiCache, interface endpoints, KMS keys, secrets, alarms,
dashboards, CloudFront, log groups and AWS Backup plans. The config adds what templates do not say in hours:
the after-hours schedule (services run `start_hour`..`stop_hour` on weekdays only; a database or NAT instance
that stops with them runs from an hour earlier). Prices and the usage
baseline of the traffic-dependent charges come from a data file, `mlops_infra/pricing/<region>.toml`, never
from this code; the report names its price date and what it leaves out.

Rules worth knowing when reading a figure:
- a month is `hours_per_month` (730) hours; a scheduled service runs (stop - start) hours x `weekdays_per_month`;
- a multi-AZ RDS instance is billed twice (instance hours and storage); automated backups are free up to the
  provisioned storage, beyond that the daily change x retention days is billed;
- an alarm costs its price once per metric it reads: a single-metric alarm once, a metric-math alarm once per
  `MetricStat` it uses; high resolution (period < 60 s) at the high-resolution price;
- a NAT instance is any `AWS::EC2::Instance` with `SourceDestCheck: false`; every Elastic IP (all month), and
  every NAT instance without one (while it runs), is a public IPv4 address;
- a service's tasks run on Fargate Spot in the share of its capacity provider strategy's weights;
- a load balancer's LCUs come from the baseline traffic: one new connection per request (25 a second make an
  LCU) or the bytes processed (1 GB an hour makes an LCU), whichever is larger;
- Container Insights is a flat amount per service of a cluster that enables it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from mlops_infra.config import ConfigError, EnvironmentConfig, environment_names, load_config
from mlops_infra.ops.errors import OpsError

Template = Mapping[str, Any]
Assembly = Mapping[str, Template]  # stack name -> template
STACK_SUFFIXES = ("", "Foundation", "Dr")  # Mlops<Env>, Mlops<Env>Foundation, Mlops<Env>Dr
DEFAULT_ASSEMBLY = "cdk.out"
Format = Literal["markdown", "text"]
# What one load balancer capacity unit covers (Application Load Balancer pricing): the dimensions that bind first.
ALB_CONNECTIONS_PER_LCU_SECOND = 25
ALB_GB_PER_LCU_HOUR = 1.0


class CostFailed(OpsError):
    """The estimate could not be made: no assembly, an environment's stacks missing, a price not in the file."""


# --------------------------------------------------------------------------------------------
# Prices.


@dataclass(frozen=True)
class PriceBook:
    """One region's on-demand prices and the stated usage baseline, as read from the pricing data file."""

    region: str
    currency: str
    date: str
    source: str
    hours_per_month: float
    weekdays_per_month: float
    prices: Mapping[str, float]
    rds_instance_hour: Mapping[str, float]
    elasticache_node_hour: Mapping[str, float]
    ec2_instance_hour: Mapping[str, float]
    baseline: Mapping[str, float]
    left_out: tuple[str, ...]
    path: str

    @classmethod
    def from_toml(cls, text: str, path: str) -> PriceBook:
        try:
            data = tomllib.loads(text)
            prices = dict(data["prices"])
            tables = {name: {str(k): float(v) for k, v in prices.pop(name).items()} for name in _TABLES}
            return cls(
                region=str(data["region"]),
                currency=str(data["currency"]),
                date=str(data["date"]),
                source=str(data["source"]),
                hours_per_month=float(data["hours_per_month"]),
                weekdays_per_month=float(data["weekdays_per_month"]),
                prices={str(k): float(v) for k, v in prices.items()},
                rds_instance_hour=tables["rds_instance_hour"],
                elasticache_node_hour=tables["elasticache_node_hour"],
                ec2_instance_hour=tables["ec2_instance_hour"],
                baseline={str(k): float(v) for k, v in data["baseline"].items() if k != "left_out"},
                left_out=tuple(str(item) for item in data["baseline"]["left_out"]),
                path=path,
            )
        except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise CostFailed(f"{path}: not a valid pricing file ({type(error).__name__}: {error})") from None

    def price(self, key: str) -> float:
        if key not in self.prices:
            raise CostFailed(f"{self.path}: no price {key!r} in [prices]")
        return self.prices[key]

    def assume(self, key: str) -> float:
        if key not in self.baseline:
            raise CostFailed(f"{self.path}: no baseline {key!r} in [baseline]")
        return self.baseline[key]

    def hourly(self, table: str, kind: str) -> float:
        prices: Mapping[str, float] = getattr(self, table)
        if kind not in prices:
            raise CostFailed(f"{self.path}: no price for {kind} in [prices.{table}]: add it to estimate this resource")
        return prices[kind]


_TABLES = ("rds_instance_hour", "elasticache_node_hour", "ec2_instance_hour")
_RULE = "BackupPlan.BackupPlanRule"


@cache
def price_book(region: str = "us-east-1") -> PriceBook:
    """The shipped pricing file of a region (`mlops_infra/pricing/<region>.toml`)."""
    resource = resources.files("mlops_infra").joinpath("pricing", f"{region}.toml")
    if not resource.is_file():
        raise CostFailed(f"no pricing file for region {region} (mlops_infra/pricing/{region}.toml)")
    return PriceBook.from_toml(resource.read_text(encoding="utf-8"), f"mlops_infra/pricing/{region}.toml")


def load_price_book(path: Path) -> PriceBook:
    try:
        return PriceBook.from_toml(path.read_text(encoding="utf-8"), str(path))
    except OSError as error:
        raise CostFailed(f"cannot read pricing file {path}: {error}") from None


# --------------------------------------------------------------------------------------------
# The estimate.


@dataclass(frozen=True)
class LineItem:
    component: str
    quantity: str  # the quantity and the assumption behind the figure, in words
    monthly: float  # USD per month, unrounded


@dataclass(frozen=True)
class EnvironmentCost:
    environment: str
    items: tuple[LineItem, ...]
    price_date: str
    source: str
    currency: str
    left_out: tuple[str, ...]

    @property
    def total(self) -> float:
        return sum(item.monthly for item in self.items)

    def by_component(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for item in self.items:
            totals[item.component] = totals.get(item.component, 0.0) + item.monthly
        return totals


def load_assembly(directory: Path) -> dict[str, dict[str, Any]]:
    """Stack name -> template of every `<stack>.template.json` in a cloud assembly folder."""
    if not directory.is_dir():
        raise CostFailed(f"{directory}: no cloud assembly folder (run `make synth` or `npx cdk synth` first)")
    templates: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.template.json")):
        try:
            template = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise CostFailed(f"{path}: cannot read the template: {error}") from None
        if not isinstance(template, dict):
            raise CostFailed(f"{path}: not a CloudFormation template (a JSON object)")
        templates[path.name.removesuffix(".template.json")] = template
    if not templates:
        raise CostFailed(f"{directory}: no *.template.json files (run `make synth` first)")
    return templates


def environment_templates(assembly: Assembly, config: EnvironmentConfig) -> dict[str, Template]:
    """The templates of one environment: Mlops<Env>, Mlops<Env>Foundation and Mlops<Env>Dr (when made)."""
    names = [f"Mlops{config.title}{suffix}" for suffix in STACK_SUFFIXES]
    found = {name: assembly[name] for name in names if name in assembly}
    if not found:
        raise CostFailed(
            f"no stacks of environment {config.name} ({', '.join(names[:2])}) in the assembly: synthesize it first"
        )
    return found


def cost_of(assembly: Assembly | Path, config: EnvironmentConfig, prices: PriceBook | None = None) -> EnvironmentCost:
    """The monthly estimate of one environment from its synthesized templates and its config."""
    templates = load_assembly(assembly) if isinstance(assembly, Path) else assembly
    book = prices or price_book(config.aws.region)
    stacks = environment_templates(templates, config)
    estimate = _Estimate(stacks, config, book)
    return EnvironmentCost(
        environment=config.name,
        items=tuple(estimate.items()),
        price_date=book.date,
        source=book.source,
        currency=book.currency,
        left_out=book.left_out,
    )


@dataclass(frozen=True)
class _Resource:
    stack: str
    logical_id: str
    properties: Mapping[str, Any]

    def number(self, key: str, default: float | None = None) -> float:
        return self.literal(self.properties.get(key, default), key)

    def literal(self, value: Any, name: str) -> float:
        """`value`, at property path `name`, as a number; anything else (a CloudFormation intrinsic such as `Ref` or
        `Fn::If`, a word) is a CostFailed naming the stack, the resource and the property."""
        try:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise TypeError
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
        except (TypeError, ValueError):
            raise CostFailed(
                f"{self.stack}/{self.logical_id}: {name} = {json.dumps(value)} is not a number the estimate can use"
            ) from None

    def text(self, key: str) -> str:
        value = self.properties.get(key)
        if not isinstance(value, str):
            raise CostFailed(f"{self.stack}/{self.logical_id}: {key} = {json.dumps(value)} is not a literal string")
        return value


def _is_false(value: Any) -> bool:
    return value is False or (isinstance(value, str) and value.lower() == "false")


def _ref(value: Any) -> str | None:
    return value["Ref"] if isinstance(value, Mapping) and isinstance(value.get("Ref"), str) else None


def _spot_share(service: _Resource) -> float:
    """The share of a service's tasks on Fargate Spot, by the weights of its capacity provider strategy."""
    weights = {
        str(item.get("CapacityProvider")): service.literal(item.get("Weight", 0), "CapacityProviderStrategy.Weight")
        for item in service.properties.get("CapacityProviderStrategy") or []
        if isinstance(item, Mapping)
    }
    total = sum(weights.values())
    return weights.get("FARGATE_SPOT", 0.0) / total if total else 0.0


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _money(value: float) -> str:
    return f"${value:,.2f}"


def _num(value: float) -> str:
    return f"{value:,.2f}".rstrip("0").rstrip(".")


class _Estimate:
    def __init__(self, stacks: Mapping[str, Template], config: EnvironmentConfig, book: PriceBook) -> None:
        self.stacks = stacks
        self.config = config
        self.book = book
        self.hours = book.hours_per_month

    def of_type(self, resource_type: str) -> list[_Resource]:
        return [
            _Resource(stack, logical_id, resource.get("Properties") or {})
            for stack, template in self.stacks.items()
            for logical_id, resource in (template.get("Resources") or {}).items()
            if resource.get("Type") == resource_type
        ]

    def find(self, stack: str, logical_id: str | None) -> _Resource | None:
        if logical_id is None:
            return None
        resource = (self.stacks[stack].get("Resources") or {}).get(logical_id)
        return None if resource is None else _Resource(stack, logical_id, resource.get("Properties") or {})

    def service_hours(self) -> tuple[float, str]:
        """Hours a month a service's tasks run: all month, or the after-hours schedule's working hours."""
        return self.running_hours(stops=True, lead=0)

    def stopped_after_hours(self, stops: bool) -> tuple[float, str]:
        """Hours a month a database or NAT instance runs: all month, or from an hour before the services start."""
        return self.running_hours(stops=stops, lead=1)

    def running_hours(self, *, stops: bool, lead: int) -> tuple[float, str]:
        """All month, or (with a schedule, for what `stops`) from `lead` hours before `start_hour` to `stop_hour`
        on weekdays; the hours and how they were counted."""
        schedule = self.config.services.schedule
        if not stops or schedule is None:
            return self.hours, f"{_num(self.hours)} h"
        daily = (schedule.stop_hour - schedule.start_hour + lead) % 24
        hours = daily * self.book.weekdays_per_month
        return hours, f"{_num(hours)} h ({daily} h x {_num(self.book.weekdays_per_month)} weekdays)"

    def items(self) -> list[LineItem]:
        items: list[LineItem] = []
        for part in (
            self.nat,
            self.public_ipv4,
            self.load_balancers,
            self.databases,
            self.fargate,
            self.container_insights,
            self.cache,
            self.endpoints,
            self.keys,
            self.secrets,
            self.alarms,
            self.dashboards,
            self.cloudfront,
            self.logs,
            self.backup,
        ):
            items.extend(part())
        return items

    # Network -------------------------------------------------------------------------------

    def nat_instances(self) -> list[_Resource]:
        return [
            instance
            for instance in self.of_type("AWS::EC2::Instance")
            if _is_false(instance.properties.get("SourceDestCheck"))
        ]

    def nat(self) -> list[LineItem]:
        book, items = self.book, []
        gateways = len(self.of_type("AWS::EC2::NatGateway"))
        if gateways:
            gb = book.assume("nat_gb_per_gateway")
            monthly = gateways * (self.hours * book.price("nat_gateway_hour") + gb * book.price("nat_gateway_gb"))
            items.append(
                LineItem("NAT gateways", f"{gateways} x {_num(self.hours)} h + {_num(gb)} GB processed each", monthly)
            )
        instances = self.nat_instances()
        if instances:
            hours, running = self.stopped_after_hours(self.config.network.stop_nat_after_hours)
            kinds: dict[str, int] = {}
            monthly = 0.0
            for instance in instances:
                kind = instance.text("InstanceType")
                kinds[kind] = kinds.get(kind, 0) + 1
                disk = self.root_volume_gb(instance)  # billed while stopped too
                monthly += hours * book.hourly("ec2_instance_hour", kind) + disk * book.price("ebs_gp3_gb_month")
            described = ", ".join(f"{count} x {kind}" for kind, count in sorted(kinds.items()))
            items.append(LineItem("NAT instances", f"{described} x {running}, with root volume", monthly))
        return items

    def root_volume_gb(self, instance: _Resource) -> float:
        sizes = [
            instance.literal(mapping["Ebs"]["VolumeSize"], "BlockDeviceMappings.Ebs.VolumeSize")
            for mapping in instance.properties.get("BlockDeviceMappings") or []
            if isinstance(mapping, Mapping)
            and isinstance(mapping.get("Ebs"), Mapping)
            and "VolumeSize" in mapping["Ebs"]
        ]
        return sum(sizes) if sizes else self.book.assume("nat_instance_root_gb")

    def public_ipv4(self) -> list[LineItem]:
        eips = self.of_type("AWS::EC2::EIP")
        with_eip = {_ref(eip.properties.get("InstanceId")) for eip in eips}
        with_eip |= {_ref(a.properties.get("InstanceId")) for a in self.of_type("AWS::EC2::EIPAssociation")}
        bare = [instance for instance in self.nat_instances() if instance.logical_id not in with_eip]
        if not eips and not bare:
            return []
        # An instance's own public address is released while it is stopped; an Elastic IP is billed all month.
        bare_hours, running = self.stopped_after_hours(self.config.network.stop_nat_after_hours)
        monthly = (len(eips) * self.hours + len(bare) * bare_hours) * self.book.price("public_ipv4_hour")
        parts = [f"{_count(len(eips), 'Elastic IP')} x {_num(self.hours)} h"] if eips else []
        parts += [f"{_count(len(bare), 'NAT instance')} x {running}"] if bare else []
        return [LineItem("Public IPv4 addresses", " + ".join(parts), monthly)]

    def load_balancers(self) -> list[LineItem]:
        count = len(self.of_type("AWS::ElasticLoadBalancingV2::LoadBalancer"))
        if not count:
            return []
        lcu = self.load_balancer_capacity_units()
        requests, gb = self.book.assume("alb_requests_per_month"), self.book.assume("alb_gb_per_month")
        hourly = self.book.price("alb_hour") + lcu * self.book.price("alb_lcu_hour")
        quantity = f"{count} x {_num(self.hours)} h + {lcu:.3f} LCU each ({requests:,.0f} requests, {_num(gb)} GB)"
        return [LineItem("Load balancers", quantity, count * hourly * self.hours)]

    def load_balancer_capacity_units(self) -> float:
        """Average LCUs of the baseline traffic: the larger of new connections (one per request, no keep-alive:
        25 a second make an LCU) and bytes processed (1 GB an hour makes an LCU)."""
        per_hour = 1 / self.hours
        connections = self.book.assume("alb_requests_per_month") * per_hour / 3600 / ALB_CONNECTIONS_PER_LCU_SECOND
        processed = self.book.assume("alb_gb_per_month") * per_hour / ALB_GB_PER_LCU_HOUR
        return max(connections, processed)

    def endpoints(self) -> list[LineItem]:
        interface = [
            endpoint
            for endpoint in self.of_type("AWS::EC2::VPCEndpoint")
            if endpoint.properties.get("VpcEndpointType") == "Interface"
        ]
        if not interface:
            return []
        zones = sum(max(1, len(endpoint.properties.get("SubnetIds") or [])) for endpoint in interface)
        gb = self.book.assume("interface_endpoint_gb")
        monthly = zones * self.hours * self.book.price("interface_endpoint_hour") + len(
            interface
        ) * gb * self.book.price("interface_endpoint_gb")
        quantity = f"{len(interface)} endpoints in {zones} AZ-subnets x {_num(self.hours)} h + {_num(gb)} GB each"
        return [LineItem("Interface endpoints", quantity, monthly)]

    # Data ----------------------------------------------------------------------------------

    def databases(self) -> list[LineItem]:
        book, items = self.book, []
        for db in self.of_type("AWS::RDS::DBInstance"):
            kind = db.text("DBInstanceClass")
            copies = 2 if db.properties.get("MultiAZ") is True or db.properties.get("MultiAZ") == "true" else 1
            az = "multi-AZ (x2)" if copies == 2 else "single-AZ"
            storage = db.number("AllocatedStorage")
            hours, running = self.stopped_after_hours(self.config.database.stop_after_hours)
            retention = db.number("BackupRetentionPeriod", 1)
            change = book.assume("rds_daily_change_fraction")
            backup_gb = storage * change * retention  # beyond the free 100 % of provisioned storage
            items += [
                LineItem(
                    f"RDS {db.logical_id}",
                    f"{kind} {az} x {running}",
                    copies * hours * book.hourly("rds_instance_hour", kind),
                ),
                LineItem(
                    "RDS storage",
                    f"{_num(storage)} GB gp3{' x2' if copies == 2 else ''}",
                    copies * storage * book.price("rds_gp3_gb_month"),
                ),
                LineItem(
                    "RDS backup storage",
                    f"{_num(backup_gb)} GB beyond the free amount ({_num(storage)} GB x {change:g}/day x "
                    f"{_num(retention)} days)",
                    backup_gb * book.price("rds_backup_gb_month"),
                ),
            ]
        return items

    def cache(self) -> list[LineItem]:
        items = []
        for group in self.of_type("AWS::ElastiCache::ReplicationGroup"):
            kind = group.text("CacheNodeType")
            if "NumNodeGroups" in group.properties or "ReplicasPerNodeGroup" in group.properties:
                nodes = group.number("NumNodeGroups", 1) * (1 + group.number("ReplicasPerNodeGroup", 0))
            else:
                nodes = group.number("NumCacheClusters", 1)
            monthly = nodes * self.hours * self.book.hourly("elasticache_node_hour", kind)
            items.append(LineItem("ElastiCache", f"{_num(nodes)} x {kind} x {_num(self.hours)} h", monthly))
        return items

    def backup(self) -> list[LineItem]:
        plans = self.of_type("AWS::Backup::BackupPlan")
        databases = self.of_type("AWS::RDS::DBInstance")
        if not plans or not databases:
            return []
        book = self.book
        size = sum(db.number("AllocatedStorage") for db in databases)
        change = book.assume("rds_daily_change_fraction")
        items = []
        for plan in plans:
            rules = (plan.properties.get("BackupPlan") or {}).get("BackupPlanRule") or []
            for rule in rules:
                days = plan.literal(
                    (rule.get("Lifecycle") or {}).get("DeleteAfterDays", 35), f"{_RULE}.Lifecycle.DeleteAfterDays"
                )
                stored = size * (1 + change * days)
                items.append(
                    LineItem(
                        "AWS Backup storage",
                        f"{_num(stored)} GB ({_num(size)} GB full + {change:g}/day x {_num(days)} days)",
                        stored * book.price("backup_rds_gb_month"),
                    )
                )
                for copy in rule.get("CopyActions") or []:
                    copy_days = plan.literal(
                        (copy.get("Lifecycle") or {}).get("DeleteAfterDays", days),
                        f"{_RULE}.CopyActions.Lifecycle.DeleteAfterDays",
                    )
                    copied = size * (1 + change * copy_days)
                    moved = size * change * book.hours_per_month / 24
                    items.append(
                        LineItem(
                            "AWS Backup DR-region copies",
                            f"{_num(copied)} GB stored + {_num(moved)} GB/month copied across regions",
                            copied * book.price("backup_rds_gb_month") + moved * book.price("cross_region_transfer_gb"),
                        )
                    )
        return items

    # Compute -------------------------------------------------------------------------------

    def fargate(self) -> list[LineItem]:
        hours, described = self.service_hours()
        items = []
        for service in self.of_type("AWS::ECS::Service"):
            spot = _spot_share(service)
            vcpu_price, gb_price = (
                spot * self.book.price(f"fargate_spot_{unit}_hour")
                + (1 - spot) * self.book.price(f"fargate_{unit}_hour")
                for unit in ("vcpu", "gb")
            )
            task = self.find(service.stack, _ref(service.properties.get("TaskDefinition")))
            if task is None:
                raise CostFailed(f"{service.stack}/{service.logical_id}: its task definition is not in the template")
            vcpu, gb = task.number("Cpu") / 1024, task.number("Memory") / 1024
            count = service.number("DesiredCount", 1)
            name = service.properties.get("ServiceName")
            monthly = count * hours * (vcpu * vcpu_price + gb * gb_price)
            items.append(
                LineItem(
                    f"Fargate {name if isinstance(name, str) else service.logical_id}",
                    f"{_num(count)} x ({_num(vcpu)} vCPU, {_num(gb)} GB) x {described}"
                    + (" on Fargate Spot" if spot == 1 else f", {spot:.0%} on Fargate Spot" if spot else ""),
                    monthly,
                )
            )
        return items

    def container_insights(self) -> list[LineItem]:
        enabled = {
            (cluster.stack, cluster.logical_id)
            for cluster in self.of_type("AWS::ECS::Cluster")
            if any(
                setting.get("Name") == "containerInsights" and setting.get("Value") in ("enabled", "enhanced")
                for setting in cluster.properties.get("ClusterSettings") or []
            )
        }
        count = sum(
            1
            for service in self.of_type("AWS::ECS::Service")
            if (service.stack, _ref(service.properties.get("Cluster"))) in enabled
        )
        if not count:
            return []
        flat = self.book.assume("container_insights_service_month")
        return [LineItem("Container Insights", f"{count} services x {_money(flat)} flat", count * flat)]

    # Security ------------------------------------------------------------------------------

    def keys(self) -> list[LineItem]:
        count = len(self.of_type("AWS::KMS::Key"))
        return [LineItem("KMS keys", f"{count} keys", count * self.book.price("kms_key_month"))] if count else []

    def secrets(self) -> list[LineItem]:
        own = len(self.of_type("AWS::SecretsManager::Secret"))
        managed = sum(
            1
            for db in self.of_type("AWS::RDS::DBInstance")
            if db.properties.get("ManageMasterUserPassword") in (True, "true")
        )
        count = own + managed
        if not count:
            return []
        return [LineItem("Secrets", f"{own} secrets + {managed} RDS-managed", count * self.book.price("secret_month"))]

    # Observability ---------------------------------------------------------------------------

    def alarms(self) -> list[LineItem]:
        standard = high = 0
        alarms = self.of_type("AWS::CloudWatch::Alarm")
        for alarm in alarms:
            metrics = alarm.properties.get("Metrics")
            if isinstance(metrics, list):
                periods = [
                    alarm.literal((entry["MetricStat"] or {}).get("Period", 60), "Metrics.MetricStat.Period")
                    for entry in metrics
                    if isinstance(entry, Mapping) and "MetricStat" in entry
                ]
            else:
                periods = [alarm.number("Period", 60)]
            high += sum(1 for period in periods if period < 60)
            standard += sum(1 for period in periods if period >= 60)
        composite = len(self.of_type("AWS::CloudWatch::CompositeAlarm"))
        if not alarms and not composite:
            return []
        book = self.book
        monthly = (
            standard * book.price("alarm_standard_month")
            + high * book.price("alarm_high_resolution_month")
            + composite * book.price("composite_alarm_month")
        )
        quantity = f"{len(alarms)} alarms reading {standard} standard + {high} high-resolution metrics"
        if composite:
            quantity += f", {composite} composite"
        return [LineItem("CloudWatch alarms", quantity, monthly)]

    def dashboards(self) -> list[LineItem]:
        count = len(self.of_type("AWS::CloudWatch::Dashboard"))
        return [LineItem("Dashboards", f"{count}", count * self.book.price("dashboard_month"))] if count else []

    def cloudfront(self) -> list[LineItem]:
        count = len(self.of_type("AWS::CloudFront::Distribution"))
        if not count:
            return []
        book = self.book
        gb, requests = book.assume("cloudfront_gb_out"), book.assume("cloudfront_https_requests")
        monthly = count * (
            gb * book.price("cloudfront_gb") + requests / 10_000 * book.price("cloudfront_10k_https_requests")
        )
        return [LineItem("CloudFront", f"{count} x ({_num(gb)} GB out + {requests:,.0f} HTTPS requests)", monthly)]

    def logs(self) -> list[LineItem]:
        groups = self.of_type("AWS::Logs::LogGroup")
        if not groups:
            return []
        gb = self.book.assume("log_gb_per_group")
        # Steady state: each group holds its retention's worth of ingestion (never-expiring groups: one year).
        stored = sum(gb * group.number("RetentionInDays", 365) * 24 / self.hours for group in groups)
        monthly = len(groups) * gb * self.book.price("logs_ingestion_gb") + stored * self.book.price(
            "logs_storage_gb_month"
        )
        return [
            LineItem(
                "CloudWatch Logs",
                f"{len(groups)} log groups x {_num(gb)} GB ingested + {_num(stored)} GB stored",
                monthly,
            )
        ]


# --------------------------------------------------------------------------------------------
# Reports.


def render(costs: Sequence[EnvironmentCost], fmt: Format = "markdown") -> str:
    """One table per environment (component, quantity, monthly), its total, the price date and what is left out."""
    if not costs:
        return ""
    first = costs[0]
    parts: list[str] = []
    for cost in costs:
        rows = [(item.component, item.quantity, _money(item.monthly)) for item in cost.items]
        title = f"{cost.environment}: {_money(cost.total)} per month"
        if fmt == "markdown":
            lines = [f"## {title}", "", "| Component | Quantity / assumption | Monthly USD |", "|---|---|---:|"]
            lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
            lines.append(f"| **Total** | | **{_money(cost.total)}** |")
        else:
            widths = [
                max(len(row[i]) for row in [*rows, ("Component", "Quantity / assumption", "Monthly USD")])
                for i in range(3)
            ]
            line = "  ".join("-" * width for width in widths)
            lines = [title, line]
            header = ("Component", "Quantity / assumption", "Monthly USD")
            lines += [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in [header, *rows]]
            lines += [line, f"{'Total':<{widths[0]}}  {'':<{widths[1]}}  {_money(cost.total):>{widths[2]}}"]
        parts.append("\n".join(lines))
    bullet = "- "
    footer = [
        f"Prices: {first.source} (price date {first.price_date}, {first.currency}); estimates, not a quote.",
        "Left out:",
        *(f"{bullet}{item}" for item in first.left_out),
    ]
    if fmt == "markdown":
        footer[0] = f"_{footer[0]}_"
    title_line = "# Monthly cost estimate" if fmt == "markdown" else "Monthly cost estimate"
    return title_line + "\n\n" + "\n\n".join(parts) + "\n\n" + "\n".join(footer) + "\n"


def compare(base: EnvironmentCost, head: EnvironmentCost) -> str:
    """A Markdown snippet: the monthly change of one environment, and the components that moved."""
    change = head.total - base.total
    sign = "+" if change >= 0 else "-"
    lines = [
        f"**{head.environment}**: {_money(base.total)} -> {_money(head.total)} per month "
        f"({sign}{_money(abs(change))}; prices of {head.price_date})"
    ]
    before, after = base.by_component(), head.by_component()
    moved = [
        (name, before.get(name, 0.0), after.get(name, 0.0))
        for name in [*before, *(name for name in after if name not in before)]
        if abs(after.get(name, 0.0) - before.get(name, 0.0)) >= 0.005
    ]
    if moved:
        lines += ["", "| Component | Before | After | Change |", "|---|---:|---:|---:|"]
        for name, old, new in moved:
            delta = new - old
            lines.append(
                f"| {name} | {_money(old)} | {_money(new)} | {'+' if delta >= 0 else '-'}{_money(abs(delta))} |"
            )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# The subcommand.


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "cost",
        help="monthly cost estimate of each environment from the synthesized templates",
        description=(
            "Estimate each environment's monthly cost, component by component, from a synthesized cloud assembly "
            "and the config, at the on-demand prices and usage baseline of mlops_infra/pricing/<region>.toml."
        ),
    )
    parser.add_argument("--assembly", default=DEFAULT_ASSEMBLY, help="cloud assembly folder (default: cdk.out)")
    parser.add_argument("--config-dir", help="folder of <env>.toml files (default: $MLOPS_CONFIG_DIR, else config/)")
    parser.add_argument("--env", nargs="+", default=[], metavar="ENV", help="only these environments")
    parser.add_argument("--format", choices=("markdown", "text"), default="markdown", help="report format")
    parser.add_argument("--prices", help="a pricing file instead of the shipped one of each environment's region")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    directory = Path(args.config_dir) if args.config_dir else None
    try:
        names = list(args.env) or environment_names(directory)
        configs = [load_config(name, directory) for name in names]
    except ConfigError as error:
        raise CostFailed(str(error)) from None
    assembly = load_assembly(Path(args.assembly))
    book = load_price_book(Path(args.prices)) if args.prices else None
    costs = [cost_of(assembly, config, book) for config in configs]
    sys.stdout.write(render(costs, args.format))
    return 0
