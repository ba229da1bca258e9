"""Observability per environment: the alert topic, every alarm (each one pages), the dashboard, template sizes.

Every assertion reads the session's synth (tests/conftest.py); nothing is synthesized here. References
are followed by logical ID (`Ref`, `Fn::GetAtt`) and, across stacks, through `Fn::ImportValue` to the
foundation's export, so a test names the resource a metric or an action points at, not just its
shape. The dashboard body (an `Fn::Join` of JSON text and tokens) is parsed with each token written as
a placeholder: `<Ref:LogicalId>`, `<GetAtt:LogicalId.Attribute>`, `<Import:ExportName>`.

The last part checks bad observability settings in-process, through load_all() on a copy of config/:
each is rejected with one line naming the file, the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlops_infra.config import AlarmThresholds, ConfigError, ObservabilitySettings, load_all
from tests.conftest import ENVIRONMENTS, ROOT, Synth
from tests.templates import application, foundation, imported, target

# CloudFormation quotas per template (a template `cdk deploy` uploads to S3 may be 1 MB; we keep below 10^6 bytes).
SHARED_STACKS = ("MlopsCi", "MlopsRegistryUsEast1")  # no environment's own
MAX_TEMPLATE_BYTES = 1_000_000
MAX_RESOURCES = 500

SERVICES = {"backend": "mlops-backend-service", "mlflow": "mlops-mlflow", "inference": "mlops-inference"}
SERVICE_CASES = [(env, short) for env in ENVIRONMENTS for short in SERVICES]
ROLLBACK_CASES = [(env, short) for env, short in SERVICE_CASES if env != "dev"]  # canary (staging), blue/green (prod)
TARGET_GROUPS_PER_SERVICE = {"dev": 1, "staging": 2, "prod": 2}
ALERT_EMAILS = {
    "dev": [],
    "staging": ["mlops-oncall@example.com"],
    "prod": ["mlops-oncall@example.com", "platform-team@example.com"],
}
MODEL_MISSING_DATA = {"dev": "notBreaching", "staging": "breaching", "prod": "breaching"}
MODEL = "sales-forecaster"
DRIFTS = {"data": "DataDrift", "concept": "ConceptDrift", "prediction": "PredictionDrift"}
SERVICE_ALARMS = ("p99-latency", "5xx-rate", "unhealthy-targets", "tasks-below-desired", "cpu-high", "memory-high")
DEPLOY_ALARMS = ("deploy-5xx", "deploy-p99-latency")
DATABASE_ALARMS = ("rds-cpu-high", "rds-free-storage-low", "rds-connections-high")
GIB = 1024**3
ERROR_RATE = "IF(requests > 0, 100 * errors / requests, 0)"
# Today's thresholds, the same in every shipped config (README, "Observability").
THRESHOLDS = {
    "inference_latency_ms": 100,
    "inference_latency_period_seconds": 300,
    "inference_latency_evaluation_periods": 2,
    "p99_latency_ms": 1000,
    "error_rate_percent": 5,
    "unhealthy_targets": 1,
    "cpu_percent": 85,
    "memory_percent": 85,
    "rds_cpu_percent": 80,
    "rds_free_storage_gib": 5,
    "rds_connections": 100,
    "model_accuracy_min": 0.8,
    "model_drift_max": 0.3,
    "evaluation_periods": 3,
}
DASHBOARD_TITLES = [
    "Inference latency p50 / p99",
    "Inference 5xx error rate (%)",
    "Inference requests per minute",
    "Model accuracy",
    "Model drift",
    "ECS CPU (%)",
    "ECS memory (%)",
    "Running / desired tasks",
    "Healthy / unhealthy targets",
    "Network I/O (bytes/s)",
    "RDS CPU (%)",
    "RDS connections",
    "RDS free storage (bytes)",
    "Alarms",
]


# --- helpers: stacks, references ------------------------------------------------------------


def resource(synth: Synth, stack: str, logical_id: str) -> dict[str, Any]:
    return dict(synth.templates[stack]["Resources"][logical_id])


def only(synth: Synth, stack: str, resource_type: str) -> str:
    """The logical ID of the one resource of a type in a stack."""
    (logical_id,) = synth.resources(stack, resource_type)
    return logical_id


def stack_environment(synth: Synth) -> dict[str, str]:
    """Stack name -> the environment it belongs to, for every synthesized stack but the shared ones (no
    environment's: they must hold no topic, subscription, alarm or dashboard)."""
    owners = {stack.stack_name: env for env, stacks in synth.environments.items() for stack in stacks.all}
    assert set(owners) == set(synth.templates) - set(SHARED_STACKS)
    for kind in ("AWS::SNS::Topic", "AWS::SNS::Subscription", "AWS::CloudWatch::Alarm", "AWS::CloudWatch::Dashboard"):
        for shared in SHARED_STACKS:
            assert synth.resources(shared, kind) == {}, (shared, kind)
    return owners


def topic_id(synth: Synth, env: str) -> str:
    return only(synth, application(env), "AWS::SNS::Topic")


def ecs_service(synth: Synth, env: str, short: str) -> str:
    (logical_id,) = [
        logical_id
        for logical_id, service in synth.resources(application(env), "AWS::ECS::Service").items()
        if service["Properties"]["ServiceName"] == SERVICES[short]
    ]
    return logical_id


def target_groups(synth: Synth, env: str, short: str) -> set[str]:
    """The service's target groups: the one it is registered in and, for canary / blue-green, the alternate."""
    (config,) = resource(synth, application(env), ecs_service(synth, env, short))["Properties"]["LoadBalancers"]
    groups = {target(config["TargetGroupArn"])}
    if "AdvancedConfiguration" in config:
        groups.add(target(config["AdvancedConfiguration"]["AlternateTargetGroupArn"]))
    for group in groups:
        assert resource(synth, application(env), group)["Type"] == "AWS::ElasticLoadBalancingV2::TargetGroup"
    assert len(groups) == TARGET_GROUPS_PER_SERVICE[env]
    return groups


def cluster_id(synth: Synth, env: str) -> str:
    logical_id = only(synth, application(env), "AWS::ECS::Cluster")
    assert resource(synth, application(env), logical_id)["Properties"]["ClusterName"] == f"mlops-{env}"
    return logical_id


def load_balancer_id(synth: Synth, env: str) -> str:
    return only(synth, application(env), "AWS::ElasticLoadBalancingV2::LoadBalancer")


def database_id(synth: Synth, env: str) -> str:
    """The foundation's DB instance, `mlops-db-<env>`."""
    logical_id = only(synth, foundation(env), "AWS::RDS::DBInstance")
    assert resource(synth, foundation(env), logical_id)["Properties"]["DBInstanceIdentifier"] == f"mlops-db-{env}"
    return logical_id


# --- helpers: alarms ------------------------------------------------------------------------


def alarms(synth: Synth, env: str) -> dict[str, dict[str, Any]]:
    """AlarmName -> properties, for the alarms of the environment's application stack."""
    found = {
        alarm["Properties"]["AlarmName"]: alarm["Properties"]
        for alarm in synth.resources(application(env), "AWS::CloudWatch::Alarm").values()
    }
    assert len(found) == len(synth.resources(application(env), "AWS::CloudWatch::Alarm"))
    return found


def alarm(synth: Synth, env: str, name: str) -> dict[str, Any]:
    return alarms(synth, env)[f"mlops-{env}-{name}"]


def alarm_ids(synth: Synth, env: str) -> dict[str, str]:
    """AlarmName -> logical ID."""
    return {
        alarm["Properties"]["AlarmName"]: logical_id
        for logical_id, alarm in synth.resources(application(env), "AWS::CloudWatch::Alarm").items()
    }


def expected_alarm_names(synth: Synth, env: str) -> set[str]:
    names = {"high-latency", *DATABASE_ALARMS}
    names |= {f"{short}-{kind}" for short in SERVICES for kind in SERVICE_ALARMS + DEPLOY_ALARMS}
    for model in synth.configs[env].monitored_models:
        names |= {f"model-{model}-accuracy-low"} | {f"model-{model}-{drift}-drift-high" for drift in DRIFTS}
    return {f"mlops-{env}-{name}" for name in names}


def check_rule(
    properties: dict[str, Any], *, threshold: float, comparison: str, periods: int, missing: str = "notBreaching"
) -> None:
    """When the alarm fires: threshold, comparison, `periods` of `periods` datapoints, missing-data treatment."""
    assert properties["Threshold"] == threshold
    assert properties["ComparisonOperator"] == comparison
    assert (properties["EvaluationPeriods"], properties["DatapointsToAlarm"]) == (periods, periods)
    assert properties["TreatMissingData"] == missing


def check_metric(
    properties: dict[str, Any],
    *,
    namespace: str,
    name: str,
    statistic: str,
    period: int,
    dimensions: dict[str, Any],
) -> None:
    """A single-metric alarm (no metric math)."""
    assert "Metrics" not in properties
    assert (properties["Namespace"], properties["MetricName"]) == (namespace, name)
    assert (properties["Statistic"], properties["Period"]) == (statistic, period)
    assert {d["Name"]: d["Value"] for d in properties.get("Dimensions", [])} == dimensions


def returned(properties: dict[str, Any]) -> dict[str, Any]:
    """The metric-math query whose result the alarm evaluates (the one with ReturnData)."""
    (query,) = [query for query in properties["Metrics"] if query["ReturnData"]]
    return dict(query)


def queries(properties: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {query["Id"]: query for query in properties["Metrics"]}
    assert len(found) == len(properties["Metrics"]), "metric-math ids must be unique within an alarm"
    return found


def target_group_queries(
    synth: Synth, env: str, properties: dict[str, Any], ids: list[str], metric: str, statistic: str
) -> set[str]:
    """Check the queries `ids` read `metric` (`statistic`, 1 minute) of a target group of this environment's load
    balancer; return the target groups (logical IDs) they read."""
    all_queries = queries(properties)
    balancer = {"Fn::GetAtt": [load_balancer_id(synth, env), "LoadBalancerFullName"]}
    groups = []
    for id in ids:
        query = all_queries[id]
        assert query["ReturnData"] is False
        stat = query["MetricStat"]
        assert (stat["Stat"], stat["Period"]) == (statistic, 60)
        assert (stat["Metric"]["Namespace"], stat["Metric"]["MetricName"]) == ("AWS/ApplicationELB", metric)
        dimensions = {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]}
        assert set(dimensions) == {"LoadBalancer", "TargetGroup"}
        assert dimensions["LoadBalancer"] == balancer
        assert dimensions["TargetGroup"]["Fn::GetAtt"][1] == "TargetGroupFullName"
        groups.append(target(dimensions["TargetGroup"]))
    assert len(groups) == len(set(groups)), f"{metric}: a target group is read twice"
    return set(groups)


def summed(expression: str) -> list[str]:
    """The ids of a `FILL(a,0)+FILL(b,0)+...` expression (a missing count counts as 0, not as no data)."""
    terms = expression.split("+")
    ids = [re.fullmatch(r"FILL\(([a-z][a-z0-9_]*),0\)", term) for term in terms]
    assert all(ids), expression
    return [match.group(1) for match in ids if match]


def maximum(expression: str) -> list[str]:
    """The ids of a `MAX([a,b,...])` expression."""
    match = re.fullmatch(r"MAX\(\[([a-z0-9_,]+)\]\)", expression)
    assert match, expression
    return match.group(1).split(",")


def check_combined(
    synth: Synth, env: str, short: str, properties: dict[str, Any], *, metric: str, statistic: str, combine: str
) -> None:
    """A metric-math alarm over one metric of every target group of the service: `combine` is `sum` or `max`."""
    top = returned(properties)
    ids = summed(top["Expression"]) if combine == "sum" else maximum(top["Expression"])
    assert set(queries(properties)) == {top["Id"], *ids}
    assert target_group_queries(synth, env, properties, ids, metric, statistic) == target_groups(synth, env, short)


# --- alert topic ----------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_alert_topic_is_named_and_encrypted_with_the_foundations_messaging_key(synth: Synth, env: str) -> None:
    properties = resource(synth, application(env), topic_id(synth, env))["Properties"]
    assert properties["TopicName"] == f"mlops-{env}-alerts"
    key = imported(synth, env, properties["KmsMasterKeyId"])
    assert key["Fn::GetAtt"][1] == "Arn"
    key_id = target(key)
    assert resource(synth, foundation(env), key_id)["Type"] == "AWS::KMS::Key"
    aliases = {
        alias["Properties"]["AliasName"]
        for alias in synth.resources(foundation(env), "AWS::KMS::Alias").values()
        if target(alias["Properties"]["TargetKeyId"]) == key_id
    }
    assert aliases == {f"alias/mlops-{env}/messaging"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_messaging_key_lets_cloudwatch_alarms_of_this_account_publish(synth: Synth, env: str) -> None:
    """Without this grant an alarm cannot publish to the encrypted topic: it would fire but never page."""
    key = imported(synth, env, resource(synth, application(env), topic_id(synth, env))["Properties"]["KmsMasterKeyId"])
    policy = resource(synth, foundation(env), target(key))["Properties"]["KeyPolicy"]
    (statement,) = [s for s in policy["Statement"] if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert statement["Effect"] == "Allow"
    assert {"kms:Decrypt", "kms:GenerateDataKey"} <= set(statement["Action"])
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_alert_topic_accepts_tls_only(synth: Synth, env: str) -> None:
    topic = {"Ref": topic_id(synth, env)}
    policy_id = only(synth, application(env), "AWS::SNS::TopicPolicy")
    properties = resource(synth, application(env), policy_id)["Properties"]
    assert properties["Topics"] == [topic]
    denials = [
        statement
        for statement in properties["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Deny"
        and statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        and statement["Principal"] == "*"
        and statement["Resource"] == topic
    ]
    assert len(denials) == 1
    assert "sns:Publish" in json.dumps(denials[0]["Action"])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_email_subscriptions_are_exactly_the_configured_addresses(synth: Synth, env: str) -> None:
    emails = synth.configs[env].observability.alert_emails
    assert emails == ALERT_EMAILS[env]
    subscriptions = [
        (s["Properties"]["Protocol"], s["Properties"]["Endpoint"], s["Properties"]["TopicArn"])
        for s in synth.resources(application(env), "AWS::SNS::Subscription").values()
    ]
    topic = {"Ref": topic_id(synth, env)}
    assert sorted(subscriptions, key=str) == sorted([("email", address, topic) for address in emails], key=str)
    assert len(subscriptions) == len(ALERT_EMAILS[env])


def test_one_alert_topic_per_environment_and_no_topic_or_subscription_elsewhere(synth: Synth) -> None:
    owners = stack_environment(synth)
    topics = [
        (stack, owners[stack], topic["Properties"]["TopicName"])
        for stack in owners
        for topic in synth.resources(stack, "AWS::SNS::Topic").values()
    ]
    assert sorted(topics) == sorted((application(env), env, f"mlops-{env}-alerts") for env in ENVIRONMENTS)
    elsewhere = [
        stack
        for stack in synth.templates
        if stack not in {application(env) for env in ENVIRONMENTS} and synth.resources(stack, "AWS::SNS::Subscription")
    ]
    assert elsewhere == []


# --- every alarm of the app -----------------------------------------------------------------


def test_every_alarm_in_every_stack_notifies_its_environments_topic_on_alarm_and_ok(synth: Synth) -> None:
    owners = stack_environment(synth)
    seen = 0
    for stack in owners:
        env = owners[stack]
        topic = {"Ref": topic_id(synth, env)} if stack == application(env) else "the topic (in another stack)"
        for logical_id, alarm in synth.resources(stack, "AWS::CloudWatch::Alarm").items():
            properties = alarm["Properties"]
            where = f"{stack}/{logical_id} ({properties.get('AlarmName')})"
            assert properties.get("AlarmActions") == [topic], f"{where} does not page {topic}"
            assert properties.get("OKActions") == [topic], f"{where} does not report OK to {topic}"
            assert properties.get("ActionsEnabled", True) is True, where
            assert "InsufficientDataActions" not in properties, where
            seen += 1
    assert seen == sum(len(expected_alarm_names(synth, env)) for env in ENVIRONMENTS)


def test_alarm_names_are_literal_prefixed_by_their_environment_and_unique_across_the_app(synth: Synth) -> None:
    owners = stack_environment(synth)
    names: list[str] = []
    for stack in owners:
        for logical_id, alarm in synth.resources(stack, "AWS::CloudWatch::Alarm").items():
            name = alarm["Properties"].get("AlarmName")
            assert isinstance(name, str), f"{stack}/{logical_id}: AlarmName must be a literal, not {name!r}"
            assert name.startswith(f"mlops-{owners[stack]}-"), f"{stack}/{logical_id}: {name}"
            assert len(name) <= 255
            names.append(name)
    assert len(names) == len(set(names)), sorted(name for name in names if names.count(name) > 1)


# --- the alarm set per environment ----------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_exactly_the_expected_alarms_and_all_in_the_application_stack(synth: Synth, env: str) -> None:
    assert synth.configs[env].monitored_models == [MODEL]
    assert set(alarms(synth, env)) == expected_alarm_names(synth, env)
    assert len(expected_alarm_names(synth, env)) == 1 + 3 * 8 + 3 + 4
    for stack in synth.environments[env].all:
        if stack.stack_name != application(env):
            assert synth.resources(stack.stack_name, "AWS::CloudWatch::Alarm") == {}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_construct_tree_holds_the_same_alarms(synth: Synth, env: str) -> None:
    """ApplicationStack.alarms.alarms are the platform alarms; each service keeps its own two deployment alarms."""
    stack = synth.environments[env].application
    ids = alarm_ids(synth, env)
    platform = {stack.get_logical_id(a.node.default_child) for a in stack.alarms.alarms}
    deployment = {
        stack.get_logical_id(a.node.default_child) for s in stack.services.values() for a in s.deployment_alarms
    }
    assert platform | deployment == set(ids.values())
    assert not platform & deployment
    assert deployment == {ids[f"mlops-{env}-{short}-{kind}"] for short in SERVICES for kind in DEPLOY_ALARMS}
    assert set(stack.services) == set(SERVICES)
    for short, service in stack.services.items():
        assert service.deployment_alarm_names == [f"mlops-{env}-{short}-{kind}" for kind in DEPLOY_ALARMS]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_shipped_thresholds_are_todays_values(synth: Synth, env: str) -> None:
    thresholds = synth.configs[env].observability.thresholds
    assert thresholds.model_dump() == THRESHOLDS
    assert synth.configs[env].observability.model_missing_data == MODEL_MISSING_DATA[env]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_high_latency_is_the_deployment_guides_alarm(synth: Synth, env: str) -> None:
    t = synth.configs[env].observability.thresholds
    properties = alarm(synth, env, "high-latency")
    check_metric(properties, namespace="MLOps", name="InferenceLatency", statistic="Average", period=300, dimensions={})
    assert properties["Period"] == t.inference_latency_period_seconds
    check_rule(properties, threshold=100, comparison="GreaterThanThreshold", periods=2)
    assert (properties["Threshold"], properties["EvaluationPeriods"]) == (
        t.inference_latency_ms,
        t.inference_latency_evaluation_periods,
    )


@pytest.mark.parametrize(("env", "short"), SERVICE_CASES)
def test_p99_latency_alarm_reads_p99_of_every_target_group_in_seconds(synth: Synth, env: str, short: str) -> None:
    t = synth.configs[env].observability.thresholds
    properties = alarm(synth, env, f"{short}-p99-latency")
    check_combined(synth, env, short, properties, metric="TargetResponseTime", statistic="p99", combine="max")
    assert t.p99_latency_ms / 1000 == 1
    check_rule(properties, threshold=t.p99_latency_ms / 1000, comparison="GreaterThanThreshold", periods=3)


@pytest.mark.parametrize(("env", "short"), SERVICE_CASES)
def test_5xx_rate_alarm_is_target_5xx_as_percent_of_requests(synth: Synth, env: str, short: str) -> None:
    t = synth.configs[env].observability.thresholds
    properties = alarm(synth, env, f"{short}-5xx-rate")
    top = returned(properties)
    assert top["Expression"] == ERROR_RATE
    all_queries = queries(properties)
    groups = target_groups(synth, env, short)
    nested = set()
    for id, metric in (("requests", "RequestCount"), ("errors", "HTTPCode_Target_5XX_Count")):
        query = all_queries[id]
        assert query["ReturnData"] is False
        ids = summed(query["Expression"])
        assert target_group_queries(synth, env, properties, ids, metric, "Sum") == groups
        nested |= set(ids)
    assert set(all_queries) == {top["Id"], "requests", "errors", *nested}
    check_rule(properties, threshold=t.error_rate_percent, comparison="GreaterThanThreshold", periods=3)
    assert properties["Threshold"] == 5


@pytest.mark.parametrize(("env", "short"), SERVICE_CASES)
def test_unhealthy_targets_alarm_adds_every_target_group(synth: Synth, env: str, short: str) -> None:
    t = synth.configs[env].observability.thresholds
    properties = alarm(synth, env, f"{short}-unhealthy-targets")
    check_combined(synth, env, short, properties, metric="UnHealthyHostCount", statistic="Maximum", combine="sum")
    check_rule(properties, threshold=t.unhealthy_targets, comparison="GreaterThanOrEqualToThreshold", periods=3)
    assert properties["Threshold"] == 1


@pytest.mark.parametrize(("env", "short"), SERVICE_CASES)
def test_tasks_below_desired_alarm_reads_container_insights_of_the_service(synth: Synth, env: str, short: str) -> None:
    properties = alarm(synth, env, f"{short}-tasks-below-desired")
    top = returned(properties)
    assert top["Expression"] == "desired - running"
    all_queries = queries(properties)
    assert set(all_queries) == {top["Id"], "desired", "running"}
    cluster = {"Ref": cluster_id(synth, env)}
    for id, metric in (("desired", "DesiredTaskCount"), ("running", "RunningTaskCount")):
        query = all_queries[id]
        assert query["ReturnData"] is False
        stat = query["MetricStat"]
        assert (stat["Stat"], stat["Period"]) == ("Average", 60)
        assert (stat["Metric"]["Namespace"], stat["Metric"]["MetricName"]) == ("ECS/ContainerInsights", metric)
        dimensions = {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]}
        assert dimensions == {"ClusterName": cluster, "ServiceName": SERVICES[short]}
    check_rule(properties, threshold=0, comparison="GreaterThanThreshold", periods=3)


@pytest.mark.parametrize(("env", "short"), SERVICE_CASES)
@pytest.mark.parametrize(
    ("kind", "metric", "key"),
    [("cpu", "CPUUtilization", "cpu_percent"), ("memory", "MemoryUtilization", "memory_percent")],
)
def test_cpu_and_memory_alarms_read_aws_ecs_of_the_service(
    synth: Synth, env: str, short: str, kind: str, metric: str, key: str
) -> None:
    properties = alarm(synth, env, f"{short}-{kind}-high")
    check_metric(
        properties,
        namespace="AWS/ECS",
        name=metric,
        statistic="Average",
        period=300,
        dimensions={
            "ClusterName": {"Ref": cluster_id(synth, env)},
            "ServiceName": {"Fn::GetAtt": [ecs_service(synth, env, short), "Name"]},
        },
    )
    threshold = getattr(synth.configs[env].observability.thresholds, key)
    check_rule(properties, threshold=threshold, comparison="GreaterThanThreshold", periods=3, missing="missing")
    assert properties["Threshold"] == 85


@pytest.mark.parametrize(("env", "short"), SERVICE_CASES)
def test_deployment_alarms_read_every_target_group_with_the_configured_thresholds(
    synth: Synth, env: str, short: str
) -> None:
    services = synth.configs[env].services
    errors = alarm(synth, env, f"{short}-deploy-5xx")
    check_combined(synth, env, short, errors, metric="HTTPCode_Target_5XX_Count", statistic="Sum", combine="sum")
    check_rule(errors, threshold=services.deploy_alarm_5xx_count, comparison="GreaterThanOrEqualToThreshold", periods=2)
    latency = alarm(synth, env, f"{short}-deploy-p99-latency")
    check_combined(synth, env, short, latency, metric="TargetResponseTime", statistic="p99", combine="max")
    check_rule(
        latency, threshold=services.deploy_alarm_p99_latency_ms / 1000, comparison="GreaterThanThreshold", periods=3
    )
    assert (errors["Threshold"], latency["Threshold"]) == (5, 2)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_database_alarms_read_the_foundations_db_instance(synth: Synth, env: str) -> None:
    t = synth.configs[env].observability.thresholds
    database = {"Ref": database_id(synth, env)}
    by_name = {name: alarm(synth, env, name) for name in DATABASE_ALARMS}
    for name, properties in by_name.items():
        (dimension,) = properties["Dimensions"]
        assert dimension["Name"] == "DBInstanceIdentifier"
        assert imported(synth, env, dimension["Value"]) == database, name
    instance = {"DBInstanceIdentifier": by_name["rds-cpu-high"]["Dimensions"][0]["Value"]}

    cpu = by_name["rds-cpu-high"]
    check_metric(cpu, namespace="AWS/RDS", name="CPUUtilization", statistic="Average", period=300, dimensions=instance)
    check_rule(cpu, threshold=t.rds_cpu_percent, comparison="GreaterThanThreshold", periods=3)
    assert cpu["Threshold"] == 80

    storage = by_name["rds-free-storage-low"]
    check_metric(
        storage, namespace="AWS/RDS", name="FreeStorageSpace", statistic="Minimum", period=300, dimensions=instance
    )
    check_rule(
        storage,
        threshold=t.rds_free_storage_gib * GIB,
        comparison="LessThanThreshold",
        periods=3,
        # Dev's database stops every night (database.stop_after_hours): no paging for the metrics it then lacks.
        missing="missing" if env == "dev" else "breaching",
    )
    assert synth.configs[env].database.stop_after_hours == (env == "dev")
    assert storage["Threshold"] == 5 * GIB == 5_368_709_120

    connections = by_name["rds-connections-high"]
    check_metric(
        connections,
        namespace="AWS/RDS",
        name="DatabaseConnections",
        statistic="Maximum",
        period=300,
        dimensions=instance,
    )
    check_rule(connections, threshold=t.rds_connections, comparison="GreaterThanThreshold", periods=3)
    assert connections["Threshold"] == 100


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_model_alarms_per_monitored_model_with_the_configured_missing_data(synth: Synth, env: str) -> None:
    config = synth.configs[env]
    t = config.observability.thresholds
    missing = config.observability.model_missing_data
    assert missing == MODEL_MISSING_DATA[env]
    for model in config.monitored_models:
        accuracy = alarm(synth, env, f"model-{model}-accuracy-low")
        check_metric(
            accuracy,
            namespace="MLOps",
            name="Accuracy",
            statistic="Average",
            period=300,
            dimensions={"ModelName": model},
        )
        check_rule(accuracy, threshold=t.model_accuracy_min, comparison="LessThanThreshold", periods=3, missing=missing)
        assert accuracy["Threshold"] == 0.8
        for drift, metric in DRIFTS.items():
            properties = alarm(synth, env, f"model-{model}-{drift}-drift-high")
            check_metric(
                properties,
                namespace="MLOps",
                name=metric,
                statistic="Average",
                period=300,
                dimensions={"ModelName": model},
            )
            check_rule(
                properties, threshold=t.model_drift_max, comparison="GreaterThanThreshold", periods=3, missing=missing
            )
            assert properties["Threshold"] == 0.3


# --- deployment alarms: the alarm that rolls back also pages ---------------------------------


@pytest.mark.parametrize(("env", "short"), ROLLBACK_CASES)
def test_rollback_alarms_of_the_ecs_service_are_its_deploy_alarms_and_they_page(
    synth: Synth, env: str, short: str
) -> None:
    service = resource(synth, application(env), ecs_service(synth, env, short))
    rollback = service["Properties"]["DeploymentConfiguration"]["Alarms"]
    assert (rollback["Enable"], rollback["Rollback"]) == (True, True)
    names = rollback["AlarmNames"]
    assert names == [f"mlops-{env}-{short}-{kind}" for kind in DEPLOY_ALARMS]
    ids = alarm_ids(synth, env)
    topic = {"Ref": topic_id(synth, env)}
    for name in names:
        properties = resource(synth, application(env), ids[name])["Properties"]
        assert (properties["AlarmActions"], properties["OKActions"]) == ([topic], [topic]), name
        assert ids[name] in service["DependsOn"], f"{name} must exist before the service names it"


@pytest.mark.parametrize("short", SERVICES)
def test_rolling_dev_deploy_alarms_page_but_roll_nothing_back(synth: Synth, short: str) -> None:
    service = resource(synth, application("dev"), ecs_service(synth, "dev", short))
    assert "Alarms" not in service["Properties"]["DeploymentConfiguration"]
    topic = {"Ref": topic_id(synth, "dev")}
    for kind in DEPLOY_ALARMS:
        properties = alarm(synth, "dev", f"{short}-{kind}")
        assert (properties["AlarmActions"], properties["OKActions"]) == ([topic], [topic])


# --- dashboard ------------------------------------------------------------------------------


def placeholder(token: Any) -> str:
    """A token of the dashboard body as text: <Ref:Id>, <GetAtt:Id.Attribute>, <Import:ExportName>."""
    assert isinstance(token, dict), f"unexpected part of the dashboard body: {token!r}"
    assert len(token) == 1, f"unexpected part of the dashboard body: {token!r}"
    ((kind, value),) = token.items()
    if kind == "Ref":
        return f"<Ref:{value}>"
    if kind == "Fn::GetAtt":
        return f"<GetAtt:{value[0]}.{value[1]}>"
    if kind == "Fn::ImportValue":
        return f"<Import:{value}>"
    raise AssertionError(f"unexpected token in the dashboard body: {token!r}")


def dashboard(synth: Synth, env: str) -> dict[str, Any]:
    return dict(resource(synth, application(env), only(synth, application(env), "AWS::CloudWatch::Dashboard")))


def dashboard_text(synth: Synth, env: str) -> str:
    body = dashboard(synth, env)["Properties"]["DashboardBody"]
    if isinstance(body, str):
        return body
    separator, parts = body["Fn::Join"]
    return str(separator).join(part if isinstance(part, str) else placeholder(part) for part in parts)


def widgets(synth: Synth, env: str) -> dict[str, dict[str, Any]]:
    """Title -> properties of every titled widget."""
    body = json.loads(dashboard_text(synth, env))
    found = {w["properties"]["title"]: w["properties"] for w in body["widgets"] if "title" in w["properties"]}
    assert len(found) == len([w for w in body["widgets"] if "title" in w["properties"]]), "duplicate widget titles"
    return found


@dataclass(frozen=True)
class Graphed:
    """One row of a graph widget's `metrics`: a metric (namespace, name, dimensions) or an expression."""

    namespace: str | None
    name: str | None
    dimensions: dict[str, str]
    options: dict[str, Any]

    @property
    def stat(self) -> str:
        return str(self.options.get("stat", "Average"))


def graphed(widget: dict[str, Any]) -> list[Graphed]:
    rows = []
    for row in widget["metrics"]:
        options = row[-1] if row and isinstance(row[-1], dict) else {}
        fields = row[:-1] if options else row
        if not fields:
            assert "expression" in options, row
            rows.append(Graphed(None, None, {}, options))
            continue
        namespace, name, *pairs = fields
        assert len(pairs) % 2 == 0, row
        assert "..." not in fields, row
        rows.append(Graphed(namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True)), options))
    return rows


def metric_rows(widget: dict[str, Any], namespace: str) -> list[Graphed]:
    return [row for row in graphed(widget) if row.namespace == namespace]


def expressions(widget: dict[str, Any]) -> list[str]:
    return [row.options["expression"] for row in graphed(widget) if row.namespace is None]


def group_placeholders(synth: Synth, env: str, *shorts: str) -> set[str]:
    return {f"<GetAtt:{group}.TargetGroupFullName>" for short in shorts for group in target_groups(synth, env, short)}


def check_target_group_rows(synth: Synth, env: str, rows: list[Graphed], groups: set[str]) -> None:
    balancer = f"<GetAtt:{load_balancer_id(synth, env)}.LoadBalancerFullName>"
    assert rows
    assert {row.dimensions["LoadBalancer"] for row in rows} == {balancer}
    assert {row.dimensions["TargetGroup"] for row in rows} == groups


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_dashboard_is_named_after_the_environment_and_has_its_widgets(synth: Synth, env: str) -> None:
    assert dashboard(synth, env)["Properties"]["DashboardName"] == f"mlops-{env}"
    assert list(widgets(synth, env)) == DASHBOARD_TITLES
    body = json.loads(dashboard_text(synth, env))
    sections = [w["properties"]["markdown"] for w in body["widgets"] if w["type"] == "text"]
    assert sections == ["## Inference", "## Models", "## Infrastructure"]
    for widget in body["widgets"]:  # a dashboard row is 24 units wide
        assert widget["x"] + widget["width"] <= 24


def test_one_dashboard_per_environment_and_names_unique(synth: Synth) -> None:
    owners = stack_environment(synth)
    names = [
        (owners[stack], d["Properties"]["DashboardName"])
        for stack in owners
        for d in synth.resources(stack, "AWS::CloudWatch::Dashboard").values()
    ]
    assert sorted(names) == sorted((env, f"mlops-{env}") for env in ENVIRONMENTS)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_dashboard_inference_widgets_read_the_inference_target_groups(synth: Synth, env: str) -> None:
    found = widgets(synth, env)
    groups = group_placeholders(synth, env, "inference")

    latency = found["Inference latency p50 / p99"]
    elb = metric_rows(latency, "AWS/ApplicationELB")
    for stat in ("p50", "p99"):
        rows = [row for row in elb if row.stat == stat]
        assert {row.name for row in rows} == {"TargetResponseTime"}
        check_target_group_rows(synth, env, rows, groups)
    assert len(elb) == 2 * len(groups)
    assert [(row.name, row.stat) for row in metric_rows(latency, "MLOps")] == [
        ("InferenceLatency", "p50"),
        ("InferenceLatency", "p99"),
    ]
    assert all(row.dimensions == {} for row in metric_rows(latency, "MLOps"))
    assert [len(maximum(expression)) for expression in expressions(latency)] == [len(groups)] * 2

    rate = found["Inference 5xx error rate (%)"]
    assert expressions(rate)[0] == ERROR_RATE
    for metric in ("RequestCount", "HTTPCode_Target_5XX_Count"):
        rows = [row for row in metric_rows(rate, "AWS/ApplicationELB") if row.name == metric]
        assert {row.stat for row in rows} == {"Sum"}
        check_target_group_rows(synth, env, rows, groups)

    requests = found["Inference requests per minute"]
    rows = metric_rows(requests, "AWS/ApplicationELB")
    assert {(row.name, row.stat) for row in rows} == {("RequestCount", "Sum")}
    check_target_group_rows(synth, env, rows, groups)
    (expression,) = expressions(requests)
    assert len(summed(expression)) == len(groups)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_dashboard_model_widgets_read_the_mlops_namespace_per_model(synth: Synth, env: str) -> None:
    found = widgets(synth, env)
    models = synth.configs[env].monitored_models
    assert models == [MODEL]
    accuracy = graphed(found["Model accuracy"])
    assert [(r.namespace, r.name, r.dimensions) for r in accuracy] == [
        ("MLOps", "Accuracy", {"ModelName": model}) for model in models
    ]
    drift = graphed(found["Model drift"])
    assert [(r.namespace, r.name, r.dimensions) for r in drift] == [
        ("MLOps", metric, {"ModelName": model}) for model in models for metric in DRIFTS.values()
    ]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_dashboard_ecs_widgets_read_this_cluster_and_its_services(synth: Synth, env: str) -> None:
    found = widgets(synth, env)
    cluster = f"<Ref:{cluster_id(synth, env)}>"  # ClusterName mlops-<env>
    services = {f"<GetAtt:{ecs_service(synth, env, short)}.Name>" for short in SERVICES}
    for title, metric in (("ECS CPU (%)", "CPUUtilization"), ("ECS memory (%)", "MemoryUtilization")):
        rows = graphed(found[title])
        assert {(r.namespace, r.name) for r in rows} == {("AWS/ECS", metric)}
        assert {r.dimensions["ClusterName"] for r in rows} == {cluster}
        assert sorted(r.dimensions["ServiceName"] for r in rows) == sorted(services)
        assert [r.options["label"] for r in rows] == list(SERVICES)

    tasks = graphed(found["Running / desired tasks"])
    assert {(r.namespace, r.name) for r in tasks} == {
        ("ECS/ContainerInsights", "RunningTaskCount"),
        ("ECS/ContainerInsights", "DesiredTaskCount"),
    }
    assert {r.dimensions["ClusterName"] for r in tasks} == {cluster}
    assert sorted(r.dimensions["ServiceName"] for r in tasks) == sorted(2 * list(SERVICES.values()))

    targets = found["Healthy / unhealthy targets"]
    every_group = group_placeholders(synth, env, *SERVICES)
    for metric, stat in (("HealthyHostCount", "Minimum"), ("UnHealthyHostCount", "Maximum")):
        rows = [r for r in metric_rows(targets, "AWS/ApplicationELB") if r.name == metric]
        assert {r.stat for r in rows} == {stat}
        check_target_group_rows(synth, env, rows, every_group)
        assert len(rows) == len(every_group)

    network = graphed(found["Network I/O (bytes/s)"])
    assert {(r.namespace, r.name) for r in network} == {
        ("ECS/ContainerInsights", "NetworkRxBytes"),
        ("ECS/ContainerInsights", "NetworkTxBytes"),
    }
    assert {r.dimensions["ClusterName"] for r in network} == {cluster}
    assert sorted(r.dimensions["ServiceName"] for r in network) == sorted(2 * list(SERVICES.values()))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_dashboard_rds_widgets_read_this_environments_database(synth: Synth, env: str) -> None:
    found = widgets(synth, env)
    for title, metric, stat in (
        ("RDS CPU (%)", "CPUUtilization", "Average"),
        ("RDS connections", "DatabaseConnections", "Maximum"),
        ("RDS free storage (bytes)", "FreeStorageSpace", "Minimum"),
    ):
        (row,) = graphed(found[title])
        assert (row.namespace, row.name, row.stat) == ("AWS/RDS", metric, stat)
        (key,) = row.dimensions
        assert key == "DBInstanceIdentifier"
        export = re.fullmatch(r"<Import:(.+)>", row.dimensions[key])
        assert export, row.dimensions
        assert imported(synth, env, {"Fn::ImportValue": export.group(1)}) == {"Ref": database_id(synth, env)}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_dashboard_alarm_widget_shows_the_platform_alarms(synth: Synth, env: str) -> None:
    ids = alarm_ids(synth, env)
    platform = {id for name, id in ids.items() if not name.endswith(DEPLOY_ALARMS)}
    shown = widgets(synth, env)["Alarms"]["alarms"]
    assert len(shown) == len(set(shown))
    assert {f"<GetAtt:{id}.Arn>" for id in platform} <= set(shown)
    assert set(shown) <= {f"<GetAtt:{id}.Arn>" for id in ids.values()}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_dashboard_alarm_widget_shows_every_alarm_of_the_environment(synth: Synth, env: str) -> None:
    shown = set(widgets(synth, env)["Alarms"]["alarms"])
    assert shown == {f"<GetAtt:{id}.Arn>" for id in alarm_ids(synth, env).values()}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_dashboard_tokens_all_point_into_this_environment(synth: Synth, env: str) -> None:
    text = dashboard_text(synth, env)
    resources = synth.templates[application(env)]["Resources"]
    for kind, value in re.findall(r"<(Ref|GetAtt|Import):([^>]+)>", text):
        if kind == "Ref":
            assert value in resources or value == "AWS::Region", value
        elif kind == "GetAtt":
            assert value.split(".")[0] in resources, value
        else:
            assert value.startswith(f"{foundation(env)}:"), value
            imported(synth, env, {"Fn::ImportValue": value})
    assert f'"ModelName","{MODEL}"' in text
    assert '"MLOps"' in text


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_dashboard_never_names_another_environment(synth: Synth, env: str) -> None:
    text = dashboard_text(synth, env)
    for other in ENVIRONMENTS:
        if other == env:
            continue
        for name in (f"mlops-{other}", f"Mlops{other.capitalize()}", f"mlops-db-{other}", f"/mlops-{other}/"):
            assert name not in text, f"the {env} dashboard mentions {name}"


# --- template size --------------------------------------------------------------------------


def test_every_template_is_within_cloudformation_limits(synth: Synth) -> None:
    assert set(synth.templates) == {p.name.removesuffix(".template.json") for p in synth.outdir.glob("*.template.json")}
    for stack, template in synth.templates.items():
        size = len(json.dumps(template))
        on_disk = (synth.outdir / f"{stack}.template.json").stat().st_size
        resources = len(template["Resources"])
        assert size < MAX_TEMPLATE_BYTES, f"{stack}: {size} bytes"
        assert on_disk < MAX_TEMPLATE_BYTES, f"{stack}: {on_disk} bytes on disk"
        assert resources < MAX_RESOURCES, f"{stack}: {resources} resources"


# --- config: defaults and bad settings (no synth) -------------------------------------------


def test_construct_threshold_defaults_match_the_config_defaults() -> None:
    """`Thresholds` (alerting.py) and `AlarmThresholds` (config/models.py) hold the same knobs and defaults."""
    from mlops_infra.constructs.alerting import Thresholds
    from mlops_infra.stacks.application import MISSING_DATA

    construct = {f.name: f.default for f in dataclasses.fields(Thresholds) if f.name != "model_missing_data"}
    config = {name: field.default for name, field in AlarmThresholds.model_fields.items()}
    assert construct == config == THRESHOLDS
    default = ObservabilitySettings.model_fields["model_missing_data"].default
    assert default == "breaching"
    assert Thresholds().model_missing_data == MISSING_DATA[default]


@dataclass(frozen=True)
class BadSetting:
    """One change to one shipped config file, and the one problem line it must produce (after `<file>: `)."""

    id: str
    file: str
    old: str
    new: str
    problem: str


ALLOWED_THRESHOLD_KEYS = ", ".join(THRESHOLDS)
BAD_SETTINGS = [
    BadSetting(
        "error-rate-zero",
        "staging.toml",
        "\nerror_rate_percent = 5",
        "\nerror_rate_percent = 0",
        "observability.thresholds.error_rate_percent = 0: must be between 1 and 100",
    ),
    BadSetting(
        "error-rate-not-whole",
        "dev.toml",
        "\nerror_rate_percent = 5",
        "\nerror_rate_percent = 5.5",
        "observability.thresholds.error_rate_percent = 5.5: must be a whole number",
    ),
    BadSetting(
        "cpu-percent-101",
        "prod.toml",
        "\ncpu_percent = 85",
        "\ncpu_percent = 101",
        "observability.thresholds.cpu_percent = 101: must be between 1 and 100",
    ),
    BadSetting(
        "memory-percent-zero",
        "dev.toml",
        "\nmemory_percent = 85",
        "\nmemory_percent = 0",
        "observability.thresholds.memory_percent = 0: must be between 1 and 100",
    ),
    BadSetting(
        "accuracy-above-one",
        "prod.toml",
        "\nmodel_accuracy_min = 0.8",
        "\nmodel_accuracy_min = 1.5",
        "observability.thresholds.model_accuracy_min = 1.5: must be <= 1.0",
    ),
    BadSetting(
        "drift-zero",
        "staging.toml",
        "\nmodel_drift_max = 0.3",
        "\nmodel_drift_max = 0.0",
        "observability.thresholds.model_drift_max = 0.0: must be > 0.0",
    ),
    BadSetting(
        "latency-period-120",
        "dev.toml",
        "\ninference_latency_period_seconds = 300",
        "\ninference_latency_period_seconds = 120",
        "observability.thresholds.inference_latency_period_seconds = 120: must be one of 60, 300, 900, 3600",
    ),
    BadSetting(
        "p99-below-10-ms",
        "staging.toml",
        "\np99_latency_ms = 1000",
        "\np99_latency_ms = 5",
        "observability.thresholds.p99_latency_ms = 5: must be between 10 and 600000",
    ),
    BadSetting(
        "free-storage-zero",
        "prod.toml",
        "\nrds_free_storage_gib = 5",
        "\nrds_free_storage_gib = 0",
        "observability.thresholds.rds_free_storage_gib = 0: must be between 1 and 65536",
    ),
    BadSetting(
        "evaluation-periods-zero",
        "dev.toml",
        "\nmodel_drift_max = 0.3",
        "\nmodel_drift_max = 0.3\nevaluation_periods = 0",
        "observability.thresholds.evaluation_periods = 0: must be between 1 and 100",
    ),
    BadSetting(
        "unknown-threshold-key",
        "staging.toml",
        "[observability.thresholds]\n",
        "[observability.thresholds]\nerror_rate = 5\n",
        f"observability.thresholds.error_rate = 5: unknown key; allowed keys here: {ALLOWED_THRESHOLD_KEYS}",
    ),
    BadSetting(
        "invalid-email",
        "staging.toml",
        'alert_emails = ["mlops-oncall@example.com"]',
        'alert_emails = ["mlops-oncall.example.com"]',
        'observability.alert_emails[0] = "mlops-oncall.example.com": '
        "must be an e-mail address such as oncall@example.com",
    ),
    BadSetting(
        "second-email-invalid",
        "prod.toml",
        '"platform-team@example.com"]',
        '"platform team@example.com"]',
        'observability.alert_emails[1] = "platform team@example.com": '
        "must be an e-mail address such as oncall@example.com",
    ),
    BadSetting(
        "repeated-email",
        "dev.toml",
        "alert_emails = []",
        'alert_emails = ["oncall@example.com", "oncall@example.com"]',
        'observability.alert_emails = ["oncall@example.com", "oncall@example.com"]: '
        "must not repeat entries (repeated: oncall@example.com)",
    ),
    BadSetting(
        "missing-data-maybe",
        "prod.toml",
        'model_missing_data = "breaching"',
        'model_missing_data = "maybe"',
        'observability.model_missing_data = "maybe": must be one of "breaching", "notBreaching", "ignore" or "missing"',
    ),
]


def test_bad_setting_ids_are_unique() -> None:
    ids = [case.id for case in BAD_SETTINGS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in BAD_SETTINGS])
def test_bad_observability_setting_is_rejected_with_one_clear_line(
    case: BadSetting, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # file names are shown relative to the working directory, as app.py shows them
    folder = tmp_path / "config"
    folder.mkdir()
    for path in (ROOT / "config").glob("*.toml"):
        shutil.copy(path, folder / path.name)
    path = folder / case.file
    text = path.read_text(encoding="utf-8")
    assert text.count(case.old) == 1, f"{case.old!r} should occur once in config/{case.file}"
    path.write_text(text.replace(case.old, case.new), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_all(folder)
    assert caught.value.problems == [f"{path}: {case.problem}"]
    assert str(caught.value) == f"{path}: {case.problem}"
