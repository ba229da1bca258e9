"""`mlops-ops cost`: hand-computed estimates of a small template, the shipped environments' totals, and how a
config or template change moves a total."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from mlops_infra.config import EnvironmentConfig, load_config
from mlops_infra.ops import cli
from mlops_infra.ops.cost import CostFailed, EnvironmentCost, compare, cost_of, price_book
from tests.conftest import ROOT, Synth

CENT = 0.01
BOOK = price_book("us-east-1")


def test_prices_used_by_the_hand_computations() -> None:
    """The arithmetic below uses these prices: a price update fails here first (then update the numbers)."""
    assert BOOK.date
    assert "us-east-1" in BOOK.source
    assert BOOK.hours_per_month == 730
    assert BOOK.weekdays_per_month == 21.7
    assert {key: BOOK.prices[key] for key in USED_PRICES} == USED_PRICES
    assert BOOK.rds_instance_hour["db.t3.micro"] == 0.018
    assert BOOK.rds_instance_hour["db.t4g.micro"] == 0.016
    assert BOOK.rds_instance_hour["db.m6g.large"] == 0.159  # PostgreSQL, as the rest of the table (MySQL: 0.152)
    assert BOOK.ec2_instance_hour["t4g.nano"] == 0.0042
    assert BOOK.baseline["nat_gb_per_gateway"] == 10
    assert BOOK.baseline["alb_requests_per_month"] == 2_000_000
    assert BOOK.baseline["alb_gb_per_month"] == 20
    assert BOOK.baseline["rds_daily_change_fraction"] == 0.02
    assert BOOK.baseline["nat_instance_root_gb"] == 8
    assert BOOK.baseline["log_gb_per_group"] == 1
    assert BOOK.baseline["container_insights_service_month"] == 2
    assert BOOK.left_out
    assert any("traffic" in item for item in BOOK.left_out)


USED_PRICES = {
    "nat_gateway_hour": 0.045,
    "nat_gateway_gb": 0.045,
    "public_ipv4_hour": 0.005,
    "ebs_gp3_gb_month": 0.08,
    "alb_hour": 0.0225,
    "alb_lcu_hour": 0.008,
    "fargate_vcpu_hour": 0.04048,
    "fargate_gb_hour": 0.004445,
    "fargate_spot_vcpu_hour": 0.014168,
    "fargate_spot_gb_hour": 0.001556,
    "rds_gp3_gb_month": 0.115,
    "rds_backup_gb_month": 0.095,
    "kms_key_month": 1.0,
    "secret_month": 0.4,
    "alarm_standard_month": 0.1,
    "alarm_high_resolution_month": 0.3,
    "dashboard_month": 3.0,
    "logs_ingestion_gb": 0.5,
    "logs_storage_gb_month": 0.03,
    "cloudfront_gb": 0.085,
    "cloudfront_10k_https_requests": 0.01,  # HTTPS, North America / Europe (HTTP: 0.0075)
}


def _metric(name: str, period: int = 60) -> dict[str, Any]:
    return {"Id": name.lower(), "MetricStat": {"Metric": {"MetricName": name, "Namespace": "X"}, "Period": period}}


FIXTURE: dict[str, Any] = {
    "Resources": {
        "Nat": {"Type": "AWS::EC2::NatGateway", "Properties": {"SubnetId": "s-1"}},
        "NatIp": {"Type": "AWS::EC2::EIP", "Properties": {"Domain": "vpc"}},
        "NatInstance": {
            "Type": "AWS::EC2::Instance",
            "Properties": {"InstanceType": "t4g.nano", "SourceDestCheck": False},
        },
        "OtherInstance": {"Type": "AWS::EC2::Instance", "Properties": {"InstanceType": "t4g.nano"}},  # not a NAT
        "Alb": {"Type": "AWS::ElasticLoadBalancingV2::LoadBalancer", "Properties": {"Scheme": "internal"}},
        "Db": {
            "Type": "AWS::RDS::DBInstance",
            "Properties": {
                "DBInstanceClass": "db.t3.micro",
                "AllocatedStorage": "20",
                "MultiAZ": False,
                "BackupRetentionPeriod": 7,
                "ManageMasterUserPassword": True,
            },
        },
        "Cluster": {
            "Type": "AWS::ECS::Cluster",
            "Properties": {"ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}]},
        },
        "Task": {"Type": "AWS::ECS::TaskDefinition", "Properties": {"Cpu": "256", "Memory": "512"}},
        "Service": {
            "Type": "AWS::ECS::Service",
            "Properties": {
                "Cluster": {"Ref": "Cluster"},
                "TaskDefinition": {"Ref": "Task"},
                "DesiredCount": 2,
                "ServiceName": "api",
            },
        },
        "Endpoint": {"Type": "AWS::EC2::VPCEndpoint", "Properties": {"VpcEndpointType": "Gateway"}},  # free
        "Key": {"Type": "AWS::KMS::Key", "Properties": {}},
        "Secret": {"Type": "AWS::SecretsManager::Secret", "Properties": {}},
        "Single": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"MetricName": "CPUUtilization", "Period": 60}},
        "Math": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {"Metrics": [{"Id": "e", "Expression": "a - b"}, _metric("A"), _metric("B")]},
        },
        "Fast": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"MetricName": "Latency", "Period": 10}},
        "Board": {"Type": "AWS::CloudWatch::Dashboard", "Properties": {}},
        "Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 30}},
    }
}


def _without_schedule(config: EnvironmentConfig) -> EnvironmentConfig:
    """The config with no after-hours schedule (and so nothing that stops with it)."""
    return config.model_copy(
        update={
            "services": config.services.model_copy(update={"schedule": None}),
            "database": config.database.model_copy(update={"stop_after_hours": False}),
            "network": config.network.model_copy(update={"stop_nat_after_hours": False}),
        }
    )


@pytest.fixture(scope="module")
def dev() -> EnvironmentConfig:
    return load_config("dev")


def test_fixture_template_by_hand(dev: EnvironmentConfig) -> None:
    cost = cost_of({"MlopsDev": FIXTURE}, _without_schedule(dev))
    expected = {
        "NAT gateways": 730 * 0.045 + 10 * 0.045,  # 32.85 + 0.45 = 33.30
        "NAT instances": 730 * 0.0042 + 8 * 0.08,  # 3.066 + 0.64 = 3.706
        "Public IPv4 addresses": 2 * 730 * 0.005,  # the Elastic IP + the NAT instance's address = 7.30
        # LCUs: 2,000,000 requests / 730 h / 3600 s / 25 = 0.0304 (beats 20 GB / 730 h = 0.0274 GB an hour);
        # 730 h x 0.0304 = 22.2222 LCU-hours
        "Load balancers": 730 * 0.0225 + 2_000_000 / 3600 / 25 * 0.008,  # 16.425 + 0.177778 = 16.602778
        "RDS Db": 730 * 0.018,  # 13.14
        "RDS storage": 20 * 0.115,  # 2.30
        "RDS backup storage": 20 * 0.02 * 7 * 0.095,  # 2.8 GB beyond the free amount = 0.266
        "Fargate api": 2 * 730 * (0.25 * 0.04048 + 0.5 * 0.004445),  # 2 x 730 x 0.0123425 = 18.02005
        "Container Insights": 1 * 2.00,
        "KMS keys": 1 * 1.00,
        "Secrets": 2 * 0.40,  # its own + the RDS-managed master password
        "CloudWatch alarms": 3 * 0.10 + 1 * 0.30,  # Single (1) + Math (2 metrics) standard, Fast high-resolution
        "Dashboards": 3.00,
        "CloudWatch Logs": 1 * 0.50 + (30 * 24 / 730) * 0.03,  # 1 GB ingested + 0.9863 GB stored = 0.529589
    }
    assert cost.by_component() == pytest.approx(expected, abs=1e-9)
    assert cost.total == pytest.approx(102.564418, abs=1e-5)  # the sum of the above
    assert cost.price_date == BOOK.date
    assert cost.left_out == BOOK.left_out


def test_fixture_with_the_schedule_runs_the_service_217_hours(dev: EnvironmentConfig) -> None:
    schedule = dev.services.schedule
    assert schedule is not None
    assert (schedule.start_hour, schedule.stop_hour) == (8, 18)
    cost = cost_of({"MlopsDev": FIXTURE}, dev)
    # (18 - 8) h x 21.7 weekdays = 217 h instead of 730 h
    assert cost.by_component()["Fargate api"] == pytest.approx(2 * 217 * 0.0123425, abs=1e-9)  # 5.356645


SPOT_TASK_HOUR = 0.25 * 0.014168 + 0.5 * 0.001556  # the fixture's (0.25 vCPU, 0.5 GB) task on Spot: 0.00432
TASK_HOUR = 0.25 * 0.04048 + 0.5 * 0.004445  # ... on demand: 0.0123425


def test_fixture_after_hours_with_spot(dev: EnvironmentConfig) -> None:
    """Dev's config: the NAT instance and the database stop with the services and start an hour before them."""
    assert (dev.database.stop_after_hours, dev.network.stop_nat_after_hours) == (True, True)
    template = copy.deepcopy(FIXTURE)
    service = template["Resources"]["Service"]["Properties"]
    service["CapacityProviderStrategy"] = [{"CapacityProvider": "FARGATE_SPOT", "Weight": 1}]
    by_component = cost_of({"MlopsDev": template}, dev).by_component()
    # (18 - 8 + 1) h x 21.7 weekdays = 238.7 h
    assert by_component["NAT instances"] == pytest.approx(238.7 * 0.0042 + 8 * 0.08, abs=1e-9)  # 1.64254
    assert by_component["Public IPv4 addresses"] == pytest.approx((730 + 238.7) * 0.005, abs=1e-9)  # EIP all month
    assert by_component["RDS Db"] == pytest.approx(238.7 * 0.018, abs=1e-9)  # 4.2966
    assert by_component["RDS storage"] == pytest.approx(20 * 0.115, abs=1e-9)  # billed while stopped too
    assert by_component["Fargate api"] == pytest.approx(2 * 217 * SPOT_TASK_HOUR, abs=1e-9)  # 1.87488
    # A strategy of FARGATE weight 1 and FARGATE_SPOT weight 3: three tasks in four on Spot.
    service["CapacityProviderStrategy"] = [
        {"CapacityProvider": "FARGATE", "Weight": 1},
        {"CapacityProvider": "FARGATE_SPOT", "Weight": 3},
    ]
    mixed = cost_of({"MlopsDev": template}, dev).by_component()["Fargate api"]
    assert mixed == pytest.approx(2 * 217 * (0.75 * SPOT_TASK_HOUR + 0.25 * TASK_HOUR), abs=1e-9)  # 2.745321


# The shipped config at the shipped prices; a change to the templates or the prices moves these: review the
# report (`make cost`) and update them. Each environment has one CloudFront distribution: 10 GB x 0.085 +
# 1,000,000 / 10,000 x 0.0100 = 0.85 + 1.00 = 1.85 (0.25 more than at the HTTP rate, 0.0075, of the 55.56, 236.41
# and 968.02 before); prod's db.m6g.large multi-AZ: 2 x 730 h x 0.159 = 232.14 (10.22 more than at 0.152). The log
# group of the state machine that restarts services on a database password rotation adds the baseline's 1 GB a
# month (0.50 ingested + storage for its retention: 14 / 30 / 90 days): 55.81, 236.66, 978.49 before it.
SHIPPED_TOTALS = {"dev": 56.32, "staging": 237.19, "prod": 979.08}
DEV_CAP = 60.00  # the promise: dev at most $60 a month at the baseline, after-hours schedule on


@pytest.fixture(scope="module")
def shipped(synth: Synth) -> dict[str, EnvironmentCost]:
    return {name: cost_of(synth.outdir, config) for name, config in synth.configs.items()}


def test_shipped_totals(shipped: dict[str, EnvironmentCost]) -> None:
    assert {name: cost.total for name, cost in shipped.items()} == pytest.approx(SHIPPED_TOTALS, abs=CENT)
    assert shipped["dev"].total <= DEV_CAP


def test_shipped_fargate_follows_the_config(shipped: dict[str, EnvironmentCost], synth: Synth) -> None:
    """Each environment's Fargate lines equal desired count x hours x (vCPU, GB) from its config."""
    for name, config in synth.configs.items():
        hours = 217 if config.services.schedule else 730
        spot = config.services.capacity == "spot"
        vcpu, gb = (0.014168, 0.001556) if spot else (0.04048, 0.004445)
        sizes = [config.services.backend, config.services.mlflow, config.services.inference]
        expected = sum(
            size.desired_count * hours * (size.cpu / 1024 * vcpu + size.memory_mib / 1024 * gb) for size in sizes
        )
        fargate = sum(item.monthly for item in shipped[name].items if item.component.startswith("Fargate "))
        assert fargate == pytest.approx(expected, abs=CENT), name


def _env_assembly(synth: Synth, title: str) -> dict[str, dict[str, Any]]:
    return {name: copy.deepcopy(t) for name, t in synth.templates.items() if name.startswith(f"Mlops{title}")}


def test_one_nat_gateway_less_lowers_prod_by_its_monthly_cost(
    synth: Synth, shipped: dict[str, EnvironmentCost]
) -> None:
    assembly = _env_assembly(synth, "Prod")
    resources = assembly["MlopsProdFoundation"]["Resources"]
    gateways = [lid for lid, resource in resources.items() if resource["Type"] == "AWS::EC2::NatGateway"]
    assert len(gateways) == synth.configs["prod"].network.nat_gateways == 3
    del resources[gateways[-1]]
    lower = cost_of(assembly, synth.configs["prod"])
    assert shipped["prod"].total - lower.total == pytest.approx(730 * 0.045 + 10 * 0.045, abs=1e-6)  # 33.30


def test_a_larger_desired_count_raises_dev_by_one_task(synth: Synth, shipped: dict[str, EnvironmentCost]) -> None:
    assembly = _env_assembly(synth, "Dev")
    resources = assembly["MlopsDev"]["Resources"]
    (backend,) = [r for r in resources.values() if r["Properties"].get("ServiceName") == "mlops-backend-service"]
    assert backend["Properties"]["DesiredCount"] == synth.configs["dev"].services.backend.desired_count == 1
    backend["Properties"]["DesiredCount"] = 2
    higher = cost_of(assembly, synth.configs["dev"])
    # one more (0.25 vCPU, 0.5 GB) Spot task for 217 h: 217 x 0.00432 = 0.93744
    assert higher.total - shipped["dev"].total == pytest.approx(217 * SPOT_TASK_HOUR, abs=1e-6)


def test_no_schedule_runs_dev_all_month(synth: Synth, shipped: dict[str, EnvironmentCost]) -> None:
    always = cost_of(synth.outdir, _without_schedule(synth.configs["dev"]))
    # Spot per hour: backend 0.00432 + mlflow 0.00864 + inference 0.00864 = 0.0216, (730 - 217) h more: 11.0808;
    # the db.t4g.micro (0.016), the t4g.nano NAT instance (0.0042) and its address (0.005), 491.3 h more each.
    fargate, stopped = (730 - 217) * 0.0216, (730 - 238.7) * (0.016 + 0.0042 + 0.005)
    assert always.total - shipped["dev"].total == pytest.approx(fargate + stopped, abs=1e-6)  # 23.46156
    snippet = compare(shipped["dev"], always)
    assert snippet.startswith("**dev**: $56.32 -> $79.79 per month (+$23.46;")
    assert "| Fargate mlops-backend-service | $0.94 | $3.15 | +$2.22 |" in snippet
    assert "NAT gateways" not in snippet  # unchanged components are left out


def test_cli_prints_one_table_per_environment(synth: Synth, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cost", "--assembly", str(synth.outdir)]) == 0
    out = capsys.readouterr().out
    for name, total in SHIPPED_TOTALS.items():
        assert f"## {name}: ${total:,.2f} per month" in out
        assert f"| **Total** | | **${total:,.2f}** |" in out
    assert f"price date {BOOK.date}" in out
    assert "Left out:" in out
    assert "beyond the stated baseline" in out


def test_cli_text_format_and_one_environment(synth: Synth, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cost", "--assembly", str(synth.outdir), "--env", "dev", "--format", "text"]) == 0
    out = capsys.readouterr().out
    assert "dev: $56.32 per month" in out
    assert "staging" not in out
    assert any(line.startswith("Total") and line.endswith("$56.32") for line in out.splitlines())


def test_cli_errors_are_sentences(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cost", "--assembly", str(tmp_path / "missing")]) == CostFailed.exit_code
    assert "no cloud assembly folder" in capsys.readouterr().err
    assert cli.main(["cost", "--assembly", str(tmp_path), "--env", "nosuch"]) == CostFailed.exit_code
    assert "unknown environment 'nosuch'" in capsys.readouterr().err


def test_an_unpriced_instance_class_is_named(dev: EnvironmentConfig) -> None:
    template = copy.deepcopy(FIXTURE)
    template["Resources"]["Db"]["Properties"]["DBInstanceClass"] = "db.x2g.16xlarge"
    with pytest.raises(CostFailed, match=r"no price for db\.x2g\.16xlarge"):
        cost_of({"MlopsDev": template}, dev)


INTRINSIC = {"Ref": "DesiredTasks"}
BACKUP_PLAN = {
    "Type": "AWS::Backup::BackupPlan",
    "Properties": {"BackupPlan": {"BackupPlanRule": [{"Lifecycle": {"DeleteAfterDays": 35}, "CopyActions": [{}]}]}},
}


@pytest.mark.parametrize(
    ("logical_id", "path", "prop"),
    [
        ("Service", ["DesiredCount"], "DesiredCount"),
        ("Service", ["CapacityProviderStrategy", 0, "Weight"], "CapacityProviderStrategy.Weight"),
        ("Single", ["Period"], "Period"),
        ("Math", ["Metrics", 1, "MetricStat", "Period"], "Metrics.MetricStat.Period"),
        ("NatInstance", ["BlockDeviceMappings", 0, "Ebs", "VolumeSize"], "BlockDeviceMappings.Ebs.VolumeSize"),
        (
            "Plan",
            ["BackupPlan", "BackupPlanRule", 0, "Lifecycle", "DeleteAfterDays"],
            "BackupPlan.BackupPlanRule.Lifecycle.DeleteAfterDays",
        ),
        (
            "Plan",
            ["BackupPlan", "BackupPlanRule", 0, "CopyActions", 0, "Lifecycle"],
            "BackupPlan.BackupPlanRule.CopyActions.Lifecycle.DeleteAfterDays",
        ),
    ],
)
def test_an_intrinsic_where_a_number_goes_is_named(
    dev: EnvironmentConfig, tmp_path: Path, logical_id: str, path: list[str | int], prop: str
) -> None:
    template = copy.deepcopy(FIXTURE)
    resources = template["Resources"]
    resources["Plan"] = copy.deepcopy(BACKUP_PLAN)
    resources["Service"]["Properties"]["CapacityProviderStrategy"] = [{"CapacityProvider": "FARGATE", "Weight": 1}]
    resources["NatInstance"]["Properties"]["BlockDeviceMappings"] = [{"Ebs": {"VolumeSize": 8}}]
    cost_of({"MlopsDev": template}, dev)  # every number literal: an estimate
    value = INTRINSIC if path[-1] != "Lifecycle" else {"DeleteAfterDays": INTRINSIC}
    parent = resources[logical_id]["Properties"]
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    message = f'MlopsDev/{logical_id}: {prop} = {{"Ref": "DesiredTasks"}} is not a number the estimate can use'
    with pytest.raises(CostFailed) as failure:
        cost_of({"MlopsDev": template}, dev)
    assert str(failure.value) == message

    # `mlops-ops diff` reports it in its cost section instead of failing
    from mlops_infra.ops.diff import cost_change

    (tmp_path / "MlopsDev.template.json").write_text(json.dumps(template), encoding="utf-8")
    lines = cost_change(ROOT / "config", tmp_path, ROOT / "config", tmp_path)
    assert f"- **dev**: no estimate ({message})" in lines


def test_a_template_that_is_not_an_object_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "MlopsDev.template.json").write_text("[]", encoding="utf-8")
    assert cli.main(["cost", "--assembly", str(tmp_path), "--env", "dev"]) == CostFailed.exit_code
    assert capsys.readouterr().err == (
        f"mlops-ops: {tmp_path / 'MlopsDev.template.json'}: not a CloudFormation template (a JSON object)\n"
    )


# --- in the offline PR diff -----------------------------------------------------------------


def test_the_diff_report_shows_each_environments_monthly_change(synth: Synth, tmp_path: Path) -> None:
    from mlops_infra.ops.diff import cost_change

    config = ROOT / "config"
    lines = cost_change(config, synth.outdir, config, synth.outdir)
    assert lines[0] == "## Monthly cost"
    assert any(line.startswith("**dev**: $56.32 -> $56.32 per month (+$0.00;") for line in lines)
    assert sum(line.startswith(("**dev**", "**staging**", "**prod**")) for line in lines) == 3
    # a base without this config (an older layout) is said so, not an error
    (tmp_path / "config").mkdir()
    lines = cost_change(tmp_path / "config", synth.outdir, config, synth.outdir)
    assert "- **prod**: new or not estimable at the base; now 979.08 USD" in lines
    # an app without a config/ folder (not this project's layout) gets no cost section
    assert cost_change(tmp_path / "none", synth.outdir, tmp_path / "none", synth.outdir) == []
