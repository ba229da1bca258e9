"""Bad config files through the real entry point: `python app.py` exits 2 with one clear line per problem.

Every case is a copy of the shipped config/*.toml with one change (or a few), given to app.py via
$MLOPS_CONFIG_DIR. All the app.py processes of CASES are started at once by a session fixture and
run concurrently; each test then waits on its own process and checks: exit code 2, the expected
lines on stderr (file, field path, bad value, what is allowed) and no others, no traceback, no
template written. MORE_CASES, further message checks of the same shape, run in-process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from mlops_infra.config import ConfigError, load_all

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config"
HEADER = "mlops-infra: invalid configuration"
TIMEOUT_SECONDS = 60

Transform = Callable[[str], str]


def replace(old: str, new: str) -> Transform:
    """Change the one occurrence of `old` (the case fails loudly if the shipped file no longer has it)."""

    def transform(text: str) -> str:
        assert text.count(old) == 1, f"{old!r} should occur once in the shipped config"
        return text.replace(old, new)

    return transform


def chain(*transforms: Transform) -> Transform:
    """Several changes to one file, in order."""

    def transform(text: str) -> str:
        for step in transforms:
            text = step(text)
        return text

    return transform


def prepend(lines: str) -> Transform:
    """Add top-level keys before the first [section]."""
    return lambda text: f"{lines}\n{text}"


def shipped(env: str) -> Transform:
    """The text of a shipped config, for a new file."""
    return lambda _: (SHIPPED / f"{env}.toml").read_text(encoding="utf-8")


def line_number(env: str, needle: str) -> int:
    lines = (SHIPPED / f"{env}.toml").read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, start=1) if needle in line)


@dataclass(frozen=True)
class Problem:
    """One expected stderr line: it starts with `<config folder>/<file>: ` and contains every part."""

    file: str
    parts: tuple[str, ...]


def problem(file: str, *parts: str) -> Problem:
    return Problem(file, parts)


@dataclass(frozen=True)
class Case:
    id: str
    edits: tuple[tuple[str, Transform], ...]  # (file name in the config folder, how to change its text)
    expected: tuple[Problem, ...]  # every problem line app.py must print, no more
    folder: Literal["copy", "empty", "missing"] = "copy"


def case(
    id: str,
    file: str,
    transform: Transform,
    *parts: str,
) -> Case:
    """The common shape: one change to one file, one expected problem in that file."""
    return Case(id, ((file, transform),), (problem(file, *parts),))


CASES: list[Case] = [
    # -- the file itself
    case(
        "invalid-toml",
        "dev.toml",
        replace("nat_gateways = 1", "nat_gateways = = 1"),
        "invalid TOML",
        f"line {line_number('dev', 'nat_gateways = 1')}",
    ),
    case(
        "name-key-in-file",
        "dev.toml",
        prepend('name = "qa"'),
        "name = ",
        "qa",
        "unknown key; the environment's name is the file's",
    ),
    # -- keys and types
    case(
        "wrong-type-string-for-int",
        "dev.toml",
        replace("nat_gateways = 1", 'nat_gateways = "1"'),
        'network.nat_gateways = "1"',
        "must be a whole number",
    ),
    case(
        "unknown-top-level-key",
        "staging.toml",
        prepend("colour = 1"),
        "colour = 1",
        "unknown key; allowed keys here: production, termination_protection, removal_policy, aws, naming, tags",
    ),
    case(
        "unknown-nested-key",
        "prod.toml",
        replace("[network]\n", "[network]\nnat_gateway = 1\n"),
        "network.nat_gateway = 1",
        "unknown key; allowed keys here: cidr, nat_gateways, flow_log_traffic_type, flow_log_retention_days",
    ),
    case(
        "missing-required-key",
        "staging.toml",
        replace("max_image_count = 100", ""),
        "registry.max_image_count",
        "is required but missing",
    ),
    # -- aws
    case(
        "az-not-in-region",
        "dev.toml",
        replace('"us-east-1b"]', '"us-west-2b"]'),
        'aws.availability_zones[1] = "us-west-2b"',
        "must be an availability zone of region us-east-1 (such as us-east-1a)",
    ),
    case(
        "nat-gateways-more-than-azs",
        "staging.toml",
        replace("nat_gateways = 1", "nat_gateways = 3"),
        "network.nat_gateways = 3",
        "must not exceed the number of availability zones (2)",
    ),
    case(
        "cidr-too-small-for-3-azs",
        "prod.toml",
        replace('cidr = "10.30.0.0/16"', 'cidr = "10.30.0.0/20"'),
        'network.cidr = "10.30.0.0/20"',
        "is too small for 3 availability zones x public /24, private /20, isolated /24",
    ),
    case(
        "bad-flow-log-traffic-type",
        "staging.toml",
        replace('flow_log_traffic_type = "ALL"', 'flow_log_traffic_type = "DENY"'),
        'network.flow_log_traffic_type = "DENY"',
        'must be one of "ALL", "ACCEPT" or "REJECT"',
    ),
    case(
        "backup-retention-90-days",
        "prod.toml",
        replace("backup_retention_days = 30", "backup_retention_days = 90"),
        "database.backup_retention_days = 90",
        "must be between 1 and 35",
    ),
    case(
        "production-removal-policy-destroy",
        "prod.toml",
        replace('removal_policy = "retain"', 'removal_policy = "destroy"'),
        'removal_policy = "destroy"',
        "must be retain or snapshot when production = true",
    ),
    Case(
        "two-files-two-problems",
        (
            ("dev.toml", replace("nat_gateways = 1", 'nat_gateways = "1"')),
            ("prod.toml", replace("backup_retention_days = 30", "backup_retention_days = 90")),
        ),
        (
            problem("dev.toml", 'network.nat_gateways = "1"', "must be a whole number"),
            problem("prod.toml", "database.backup_retention_days = 90", "must be between 1 and 35"),
        ),
    ),
    # -- the config folder
    Case(
        "folder-without-toml-files",
        (("README.md", lambda _: "configs go here\n"), ("dev.yaml", lambda _: "production: false\n")),
        (problem("", "no <env>.toml files found"),),
        folder="empty",
    ),
    Case(
        "folder-does-not-exist",
        (),
        (problem("", "config folder not found (set MLOPS_CONFIG_DIR or create it)"),),
        folder="missing",
    ),
]

# More message checks. The entry point treats every problem the same way (header, exit 2, no template),
# so these run in-process through load_all(): each app.py run costs ~0.15 s of CPU, these cost milliseconds.
MORE_CASES: list[Case] = [
    # -- the file itself
    case(
        "duplicate-key",
        "staging.toml",
        replace("nat_gateways = 1", "nat_gateways = 1\nnat_gateways = 2"),
        "invalid TOML",
        f"line {line_number('staging', 'nat_gateways = 1') + 1}",
    ),
    case(
        "bad-file-name",
        "Dev-1.toml",
        shipped("dev"),
        "file name 'Dev-1'",
        "an environment's name must be 2-16 lower-case letters or digits, starting with a letter",
    ),
    # -- keys and types
    case(
        "wrong-type-float-for-int",
        "staging.toml",
        replace("max_image_count = 100", "max_image_count = 100.0"),
        "registry.max_image_count = 100.0",
        "must be a whole number",
    ),
    case(
        "wrong-type-string-for-bool",
        "prod.toml",
        replace("multi_az = true", 'multi_az = "yes"'),
        'database.multi_az = "yes"',
        "must be true or false",
    ),
    case(
        "missing-section",
        "dev.toml",
        replace("[registry]\nmax_image_count = 100", ""),
        "registry",
        "is required but missing",
    ),
    # -- aws
    case(
        "az-repeated",
        "staging.toml",
        replace('"us-east-1b"]', '"us-east-1a"]'),
        "aws.availability_zones = ",
        "must not repeat entries (repeated: us-east-1a)",
    ),
    case(
        "bad-region",
        "dev.toml",
        replace('region = "us-east-1"', 'region = "useast1"'),
        'aws.region = "useast1"',
        "must be an AWS region name such as us-east-1",
    ),
    case(
        "account-id-as-number",
        "dev.toml",
        replace('# account = "111111111111"', "account = 111111111111"),
        "aws.account = 111111111111",
        "must be a string in quotes",
    ),
    # -- naming and tags
    case(
        "empty-tag",
        "staging.toml",
        replace('owner = "platform-team"', 'owner = ""'),
        'tags.owner = ""',
        "must not be empty",
    ),
    # -- network
    case(
        "cidr-not-an-address",
        "staging.toml",
        replace('cidr = "10.20.0.0/16"', 'cidr = "10.20.0/16x"'),
        'network.cidr = "10.20.0/16x"',
        "must be an IPv4 network in CIDR notation",
    ),
    case(
        "cidr-larger-than-a-vpc",
        "prod.toml",
        replace('cidr = "10.30.0.0/16"', 'cidr = "10.0.0.0/12"'),
        'network.cidr = "10.0.0.0/12"',
        "must have a prefix length between /16 and /24",
    ),
    case(
        "cidr-24-with-3-azs-and-small-subnets",
        "prod.toml",
        replace(
            'cidr = "10.30.0.0/16"',
            'cidr = "10.30.0.0/24"\npublic_subnet_mask = 26\nprivate_subnet_mask = 26\nisolated_subnet_mask = 26',
        ),
        'network.cidr = "10.30.0.0/24"',
        "is too small for 3 availability zones x public /26, private /26, isolated /26",
    ),
    case(
        # With the default masks the private /20 subnets cannot be in a /24 VPC at all: the CIDR is blamed.
        "cidr-24-with-default-subnets",
        "prod.toml",
        replace('cidr = "10.30.0.0/16"', 'cidr = "10.30.0.0/24"'),
        'network.cidr = "10.30.0.0/24"',
        "is smaller than one subnet (private /20): widen it or set network.<tier>_subnet_mask",
    ),
    case(
        "subnet-mask-out-of-range",
        "dev.toml",
        replace('cidr = "10.10.0.0/16"', 'cidr = "10.10.0.0/16"\nisolated_subnet_mask = 29'),
        "network.isolated_subnet_mask = 29",
        "must be between 16 and 28",
    ),
    case(
        "bad-interface-endpoint",
        "prod.toml",
        replace('"secretsmanager"]', '"s3"]'),
        'network.interface_endpoints[2] = "s3"',
        'must be one of "ecr", "logs" or "secretsmanager"',
    ),
    # -- database
    case(
        "engine-version-without-minor",
        "staging.toml",
        replace('engine_version = "17.6"', 'engine_version = "17"'),
        'database.engine_version = "17"',
        "must be a PostgreSQL version MAJOR.MINOR such as 17.6",
    ),
    case(
        "max-storage-not-above-storage",
        "dev.toml",
        replace("max_allocated_storage_gib = 50", "max_allocated_storage_gib = 20"),
        "database.max_allocated_storage_gib = 20",
        "must be greater than allocated_storage_gib (20) or left out",
    ),
    # -- storage
    case(
        "noncurrent-expiration-below-its-minimum",
        "dev.toml",
        replace("noncurrent_expiration_days = 90", "noncurrent_expiration_days = 30"),
        "storage.noncurrent_expiration_days = 30",
        "must be between 31 and 3650",
    ),
    # -- production = true may not weaken production
    case(
        "production-without-dr-backup-copies",
        "prod.toml",
        replace("copy_to_dr_region = true", "copy_to_dr_region = false"),
        "backup.copy_to_dr_region = false",
        "must be true when production = true (backups survive the loss of the region)",
    ),
    case(
        "production-cache-without-replica",
        "prod.toml",
        replace("replicas = 1", "replicas = 0"),
        "cache.replicas = 0",
        "must be at least 1 when production = true and the cache is enabled (multi-AZ failover)",
    ),
    case(
        "production-without-termination-protection",
        "prod.toml",
        replace("termination_protection = true", "termination_protection = false"),
        "termination_protection = false",
        "must be true when production = true",
    ),
    case(
        "production-short-backups",
        "prod.toml",
        replace("backup_retention_days = 30", "backup_retention_days = 3"),
        "database.backup_retention_days = 3",
        "must be at least 7 when production = true",
    ),
    case(
        "production-partial-flow-logs",
        "prod.toml",
        replace('flow_log_traffic_type = "ALL"', 'flow_log_traffic_type = "REJECT"'),
        'network.flow_log_traffic_type = "REJECT"',
        "must be ALL when production = true",
    ),
    # -- several problems in one run
    Case(
        "one-file-two-field-problems",
        (
            (
                "staging.toml",
                chain(
                    replace("nat_gateways = 1", "nat_gateways = 0"),
                    replace("max_image_count = 100", "max_image_count = 5000"),
                ),
            ),
        ),
        (
            problem("staging.toml", "network.nat_gateways = 0", "must be between 1 and 6"),
            problem("staging.toml", "registry.max_image_count = 5000", "must be between 1 and 1000"),
        ),
    ),
    Case(
        "one-file-two-production-problems",
        (
            (
                "prod.toml",
                chain(
                    replace('removal_policy = "retain"', 'removal_policy = "destroy"'),
                    replace("multi_az = true", "multi_az = false"),
                ),
            ),
        ),
        (
            problem("prod.toml", 'removal_policy = "destroy"', "must be retain or snapshot when production = true"),
            problem("prod.toml", "database.multi_az = false", "must be true when production = true"),
        ),
    ),
    case(
        "dr-region-equals-region",
        "prod.toml",
        replace('dr_region = "us-west-2"', 'dr_region = "us-east-1"'),
        'aws.dr_region = "us-east-1"',
        "must differ from aws.region",
    ),
    case(
        "bad-account-id",
        "dev.toml",
        replace('# account = "111111111111"', 'account = "1234"'),
        'aws.account = "1234"',
        "must be a 12-digit AWS account ID",
    ),
    # -- naming and tags
    case(
        "bad-prefix",
        "dev.toml",
        replace('prefix = "example"', 'prefix = "Example_"'),
        'naming.prefix = "Example_"',
        "must be 2-20 lower-case letters, digits or hyphens, not starting or ending with a hyphen",
    ),
    # -- network
    case(
        "cidr-host-bits-set",
        "dev.toml",
        replace('cidr = "10.10.0.0/16"', 'cidr = "10.10.0.1/16"'),
        'network.cidr = "10.10.0.1/16"',
        "must be an IPv4 network in CIDR notation such as 10.0.0.0/16",
    ),
    case(
        "log-retention-not-a-cloudwatch-value",
        "dev.toml",
        replace("flow_log_retention_days = 14", "flow_log_retention_days = 10"),
        "network.flow_log_retention_days = 10",
        "must be one of 1, 3, 5, 7, 14, 30, 60, 90",
    ),
    # -- database
    case(
        "bad-instance-class",
        "dev.toml",
        replace('instance_class = "db.t4g.micro"', 'instance_class = "t3.micro"'),
        'database.instance_class = "t3.micro"',
        "must be an RDS instance class such as db.t3.micro",
    ),
    case(
        "engine-major-not-supported",
        "dev.toml",
        replace('engine_version = "17.6"', 'engine_version = "12.4"'),
        'database.engine_version = "12.4"',
        "major version must be one of 16, 17",
    ),
    # -- storage
    case(
        "noncurrent-expiration-not-after-transition",
        "staging.toml",
        replace("noncurrent_transition_days = 30", "noncurrent_transition_days = 180"),
        "storage.noncurrent_expiration_days = 180",
        "must be greater than noncurrent_transition_days (180)",
    ),
    # -- production = true may not weaken production
    case(
        "production-without-deletion-protection",
        "prod.toml",
        replace(
            "multi_az = true\nbackup_retention_days = 30\ndeletion_protection = true",
            "multi_az = true\nbackup_retention_days = 30\ndeletion_protection = false",
        ),
        "database.deletion_protection = false",
        "must be true when production = true",
    ),
    case(
        "production-load-balancer-without-deletion-protection",
        "prod.toml",
        replace(
            "idle_timeout_seconds = 120\ndeletion_protection = true",
            "idle_timeout_seconds = 120\ndeletion_protection = false",
        ),
        "load_balancer.deletion_protection = false",
        "must be true when production = true",
    ),
    case(
        "production-with-after-hours-shutdown",
        "prod.toml",
        replace("[services.backend]", '[services.schedule]\ntime_zone = "UTC"\n\n[services.backend]'),
        "services.schedule = {...}",
        "must be left out when production = true",
    ),
    case(
        "production-on-fargate-spot",
        "prod.toml",
        replace('deployment = "blue_green"', 'deployment = "blue_green"\ncapacity = "spot"'),
        'services.capacity = "spot"',
        "must be on_demand when production = true (Fargate Spot tasks can be stopped at any time)",
    ),
    case(
        "database-stops-without-a-schedule",
        "staging.toml",
        replace("[storage]", "stop_after_hours = true\n\n[storage]"),
        "database.stop_after_hours = true",
        "needs a [services.schedule] section",
    ),
    case(
        "schedule-starts-when-it-stops",
        "dev.toml",
        replace("start_hour = 8", "start_hour = 18"),
        "services.schedule.start_hour = 18",
        "must differ from stop_hour",
    ),
    case(
        "nat-gateway-cannot-stop",
        "dev.toml",
        replace('nat = "instance"', 'nat = "gateway"'),
        "network.stop_nat_after_hours = true",
        'needs network.nat = "instance" (NAT gateways cannot stop)',
    ),
    case(
        "stopped-resources-start-at-midnight",
        "dev.toml",
        replace("start_hour = 8", "start_hour = 0"),
        "services.schedule.start_hour = 0",
        "must be at least 1 when the database or NAT instances stop after hours (they start an hour earlier)",
    ),
    case(
        "fargate-memory-not-valid-for-cpu",
        "staging.toml",
        replace("cpu = 512\nmemory_mib = 1024\ndesired_count = 2", "cpu = 512\nmemory_mib = 700\ndesired_count = 2"),
        "services.backend.memory_mib = 700",
        "is not a Fargate size for cpu = 512: use 1024-4096 in steps of 1024",
    ),
    case(
        "desired-count-outside-bounds",
        "dev.toml",
        replace(
            "desired_count = 1\nmin_tasks = 1\nmax_tasks = 2\n\n[services.mlflow]",
            "desired_count = 5\nmin_tasks = 1\nmax_tasks = 2\n\n[services.mlflow]",
        ),
        "services.backend.desired_count = 5",
        "must lie between min_tasks (1) and max_tasks (2)",
    ),
    case(
        "unknown-time-zone",
        "dev.toml",
        replace('time_zone = "America/New_York"', 'time_zone = "Mars/Olympus"'),
        'services.schedule.time_zone = "Mars/Olympus"',
        "must be an IANA time zone",
    ),
    case(
        "bad-deployment-strategy",
        "staging.toml",
        replace('deployment = "canary"', 'deployment = "big_bang"'),
        'services.deployment = "big_bang"',
        'must be one of "rolling", "canary" or "blue_green"',
    ),
    case(
        "origin-certificate-without-domain",
        "staging.toml",
        replace(
            'cloudfront_prefix_list_id = "pl-3b927c52"\n\n[cache]',
            'cloudfront_prefix_list_id = "pl-3b927c52"\n'
            'certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/x"\n\n[cache]',
        ),
        "load_balancer.origin_domain_name = (not set)",
        "certificate_arn and origin_domain_name go together",
    ),
    case(
        "origin-certificate-of-another-region",
        "staging.toml",
        replace(
            'cloudfront_prefix_list_id = "pl-3b927c52"\n\n[cache]',
            'cloudfront_prefix_list_id = "pl-3b927c52"\n'
            'certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/x"\n'
            'origin_domain_name = "origin.example.com"\n\n[cache]',
        ),
        'load_balancer.certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/x"',
        "must be a certificate of us-east-1",
    ),
    case(
        "domain-without-certificate",
        "prod.toml",
        replace('hosting = "s3"', 'hosting = "s3"\ndomain_name = "mlops.example.com"'),
        "frontend.certificate_arn",
        "domain_name and certificate_arn go together",
    ),
    case(
        "replication-without-dr-region",
        "dev.toml",
        replace("replication = false", "replication = true"),
        "storage.replication = true",
        "needs aws.dr_region to be set",
    ),
    Case(
        "dr-copies-without-dr-region",
        (("prod.toml", replace('dr_region = "us-west-2"', "")),),
        (
            problem("prod.toml", "storage.replication = true", "needs aws.dr_region to be set"),
            problem("prod.toml", "backup.copy_to_dr_region = true", "needs aws.dr_region to be set"),
        ),
    ),
    case(
        "production-without-multi-az",
        "prod.toml",
        replace("multi_az = true", "multi_az = false"),
        "database.multi_az = false",
        "must be true when production = true",
    ),
    # -- several problems in one run
]


def prepare(case: Case, base: Path) -> Path:
    """Build the case's config folder under `base`; return the path to give as $MLOPS_CONFIG_DIR."""
    if case.folder == "missing":
        return base / "does-not-exist"
    folder = base / "config"
    folder.mkdir()
    if case.folder == "copy":
        for path in SHIPPED.glob("*.toml"):
            shutil.copy(path, folder / path.name)
    for name, transform in case.edits:
        path = folder / name
        before = path.read_text(encoding="utf-8") if path.exists() else ""
        after = transform(before)
        assert after != before, f"{case.id}: the edit of {name} changed nothing"
        path.write_text(after, encoding="utf-8")
    return folder


def pack(cases: list[Case]) -> list[Case]:
    """Cases that break different files of a copied folder, merged into one app.py run (at most one per file).

    app.py reads every file and reports every problem of every file, so one run checks several bad
    inputs; fewer runs keep the test suite's CPU time down (each run costs ~0.15 s of CPU).
    """
    runs: list[list[Case]] = []
    for case in cases:
        files = {name for name, _ in case.edits}
        group = next(
            (
                group
                for group in runs
                if case.folder == "copy"
                and all(other.folder == "copy" and not files & {name for name, _ in other.edits} for other in group)
            ),
            None,
        )
        if group is None:
            runs.append([case])
        else:
            group.append(case)
    return [
        group[0]
        if len(group) == 1
        else Case(
            "+".join(case.id for case in group),
            tuple(edit for case in group for edit in case.edits),
            tuple(problem for case in group for problem in case.expected),
        )
        for group in runs
    ]


RUNS = pack(CASES)
RUN_OF = {case.id: run.id for run in RUNS for case in CASES if case.id in run.id.split("+")}


def check_problems(case: Case, config_dir: Path, lines: list[str], *, exact: bool = True) -> None:
    """Every expected problem has its line (file first), and (if exact) there is no other line."""
    for expected in case.expected:
        start = f"{config_dir / expected.file if expected.file else config_dir}: "
        matching = [line for line in lines if line.startswith(start) and all(part in line for part in expected.parts)]
        assert matching, f"no line starting with {start!r} and containing {expected.parts!r} in:\n" + "\n".join(lines)
    if exact:
        assert len(lines) == len(case.expected), f"expected {len(case.expected)} problem lines, got:\n" + "\n".join(
            lines
        )


def params(cases: list[Case]) -> list[object]:
    return [pytest.param(case, id=case.id) for case in cases]


# --------------------------------------------------------------------------------------------
# Through app.py, all processes at once.

# Runs app.py as `python app.py` does, then tells whether aws_cdk was imported before it gave up.
CDK_IMPORT_PROBE = """
import runpy, sys
sys.argv = ["app.py"]
try:
    runpy.run_path("app.py", run_name="__main__")
except SystemExit as exit:
    print(exit.code, "aws_cdk" in sys.modules)
"""


@dataclass
class Run:
    """One app.py process, started in the background, and what it was given."""

    config_dir: Path
    outdir: Path
    process: subprocess.Popen[str]
    _output: tuple[str, str] | None = None

    def result(self) -> tuple[int, str, str]:
        if self._output is None:
            self._output = self.process.communicate(timeout=TIMEOUT_SECONDS)
        stdout, stderr = self._output
        return self.process.returncode, stdout, stderr


def start(base: Path, config_dir: Path, *args: str) -> Run:
    outdir = base / "cdk.out"
    outdir.mkdir()
    env = {**os.environ, "MLOPS_CONFIG_DIR": str(config_dir), "CDK_OUTDIR": str(outdir)}
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Run(config_dir, outdir, process)


def start_all(base: Path) -> dict[str, Run]:
    """Start app.py once per case (and the import probe), all at once, in the background.

    Called by the session fixture `app_py_runs` in conftest.py before the app is synthesized, so
    these processes use the second core while the first one synthesizes.
    """
    started: dict[str, Run] = {}
    for case in RUNS:
        folder = base / case.id
        folder.mkdir()
        started[case.id] = start(folder, prepare(case, folder), "app.py")
    folder = base / "cdk-import-probe"
    folder.mkdir()
    started["cdk-import-probe"] = start(folder, prepare(CASES[0], folder), "-c", CDK_IMPORT_PROBE)
    return started


def stop_all(runs: dict[str, Run]) -> None:
    for run in runs.values():
        if run.process.poll() is None:
            run.process.kill()
        run.process.communicate()


def test_case_ids_are_unique() -> None:
    ids = [case.id for case in CASES + MORE_CASES]
    assert len(ids) == len(set(ids))


def failed_run(run: Run) -> list[str]:
    """The problem lines of an app.py run that failed as it must: exit 2, header, no traceback, no template."""
    returncode, stdout, stderr = run.result()
    assert "Traceback" not in stderr, stderr
    assert returncode == 2, stderr
    assert stdout == ""
    assert list(run.outdir.iterdir()) == [], "app.py wrote into CDK_OUTDIR despite a bad config"
    header, *lines = stderr.splitlines()
    assert header == HEADER
    return lines


@pytest.mark.parametrize("case", params(CASES))
def test_app_py_reports_bad_config(case: Case, app_py_runs: dict[str, Run]) -> None:
    run = app_py_runs[RUN_OF[case.id]]
    check_problems(case, run.config_dir, failed_run(run), exact=False)


@pytest.mark.parametrize("run_case", params(RUNS))
def test_app_py_reports_nothing_else(run_case: Case, app_py_runs: dict[str, Run]) -> None:
    run = app_py_runs[run_case.id]
    check_problems(run_case, run.config_dir, failed_run(run))


def test_cases_are_packed_into_few_runs() -> None:
    assert len(RUNS) < len(CASES) / 2
    assert sorted(RUN_OF) == sorted(case.id for case in CASES)


def test_app_py_gives_up_before_importing_aws_cdk(app_py_runs: dict[str, Run]) -> None:
    returncode, stdout, stderr = app_py_runs["cdk-import-probe"].result()
    assert (returncode, stdout) == (0, "2 False\n"), stderr
    assert stderr.startswith(HEADER)


# --------------------------------------------------------------------------------------------
# In-process, through load_all().


@pytest.mark.parametrize("case", params(MORE_CASES))
def test_load_all_reports_bad_config(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # file names are shown relative to the working directory, as app.py's are
    config_dir = prepare(case, tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_all(config_dir)
    check_problems(case, config_dir, caught.value.problems)
