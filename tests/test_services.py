"""What the application stacks (`Mlops<Env>`) carry: services, deployments, scaling, network rules, edge.

Every assertion reads the session's templates. References between resources are followed by logical
ID (`Ref`, `Fn::GetAtt`) and, across stacks, through `Fn::ImportValue` to the foundation's export, so
a test names the resource a value points at, not just its shape.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.conftest import ENVIRONMENTS, Synth
from tests.templates import application, foundation, imported, target

SERVICES = {"backend": "mlops-backend-service", "mlflow": "mlops-mlflow", "inference": "mlops-inference"}
PORTS = {"backend": 5000, "mlflow": 5000, "inference": 8080}
STRATEGIES = {"dev": "ROLLING", "staging": "CANARY", "prod": "BLUE_GREEN"}
RETENTION_DAYS = {"dev": 14, "staging": 30, "prod": 90}
LB_DNS = "<lb-dns>"  # how `render` writes the load balancer's DNSName
CLOUDFRONT_PREFIX_LIST = "pl-3b927c52"
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_METHODS = {"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"}
SERVICE_CASES = [(env, short) for env in ENVIRONMENTS for short in SERVICES]


# --- helpers --------------------------------------------------------------------------------


def one(synth: Synth, env: str, resource_type: str) -> tuple[str, dict[str, Any]]:
    (item,) = synth.resources(application(env), resource_type).items()
    return item


def load_balancer_id(synth: Synth, env: str) -> str:
    return one(synth, env, "AWS::ElasticLoadBalancingV2::LoadBalancer")[0]


def render(value: Any, load_balancer: str) -> str:
    """A string, or an `Fn::Join` of strings and the load balancer's DNSName, as text (DNSName -> <lb-dns>)."""
    if isinstance(value, str):
        return value
    if value == {"Fn::GetAtt": [load_balancer, "DNSName"]}:
        return LB_DNS
    separator, parts = value["Fn::Join"]
    return str(separator).join(render(part, load_balancer) for part in parts)


def service(synth: Synth, env: str, short: str) -> tuple[str, dict[str, Any]]:
    """(logical ID, resource) of one ECS service."""
    (item,) = [
        (logical_id, resource)
        for logical_id, resource in synth.resources(application(env), "AWS::ECS::Service").items()
        if resource["Properties"]["ServiceName"] == SERVICES[short]
    ]
    return item


def task_definition(synth: Synth, env: str, short: str) -> dict[str, Any]:
    properties = service(synth, env, short)[1]["Properties"]
    return dict(synth.templates[application(env)]["Resources"][target(properties["TaskDefinition"])]["Properties"])


def container(synth: Synth, env: str, short: str) -> dict[str, Any]:
    (definition,) = task_definition(synth, env, short)["ContainerDefinitions"]
    return dict(definition)


def environment(definition: dict[str, Any]) -> dict[str, Any]:
    return {item["Name"]: item["Value"] for item in definition.get("Environment", [])}


def secrets(definition: dict[str, Any]) -> dict[str, Any]:
    return {item["Name"]: item["ValueFrom"] for item in definition.get("Secrets", [])}


def security_group(synth: Synth, env: str, short: str) -> str:
    properties = service(synth, env, short)[1]["Properties"]
    (group,) = properties["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
    return target(group)


def load_balancer_config(synth: Synth, env: str, short: str) -> dict[str, Any]:
    (config,) = service(synth, env, short)[1]["Properties"]["LoadBalancers"]
    return dict(config)


def scalable_target(synth: Synth, env: str, short: str) -> tuple[str, dict[str, Any]]:
    service_id = service(synth, env, short)[0]
    (item,) = [
        (logical_id, resource)
        for logical_id, resource in synth.resources(
            application(env), "AWS::ApplicationAutoScaling::ScalableTarget"
        ).items()
        if {"Fn::GetAtt": [service_id, "Name"]} in resource["Properties"]["ResourceId"]["Fn::Join"][1]
    ]
    return item


def scaling_policies(synth: Synth, env: str, short: str) -> dict[str, dict[str, Any]]:
    """Policy name -> properties of the scaling policies on one service's scalable target."""
    scalable = scalable_target(synth, env, short)[0]
    return {
        policy["Properties"]["PolicyName"]: policy["Properties"]
        for policy in synth.resources(application(env), "AWS::ApplicationAutoScaling::ScalingPolicy").values()
        if policy["Properties"]["ScalingTargetId"] == {"Ref": scalable}
    }


def listener_port(synth: Synth, env: str, listener: Any) -> int:
    return int(synth.templates[application(env)]["Resources"][target(listener)]["Properties"]["Port"])


def ingress_rules(synth: Synth, stack: str) -> list[dict[str, Any]]:
    """Every ingress rule of a stack: inline on security groups and standalone, with `GroupId` filled in."""
    rules = [
        {**rule, "GroupId": {"Fn::GetAtt": [logical_id, "GroupId"]}}
        for logical_id, group in synth.resources(stack, "AWS::EC2::SecurityGroup").items()
        for rule in group["Properties"].get("SecurityGroupIngress", [])
    ]
    return rules + [rule["Properties"] for rule in synth.resources(stack, "AWS::EC2::SecurityGroupIngress").values()]


def service_groups(synth: Synth, env: str) -> dict[str, str]:
    """Security-group logical ID -> service short name."""
    return {security_group(synth, env, short): short for short in SERVICES}


def source(rule: dict[str, Any]) -> str:
    """Where an ingress rule admits traffic from: a security group's logical ID, a prefix list or a CIDR."""
    if "SourceSecurityGroupId" in rule:
        return target(rule["SourceSecurityGroupId"])
    return str(rule.get("SourcePrefixListId") or rule.get("CidrIp") or rule.get("CidrIpv6"))


# --- cluster, services, logs ----------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_cluster_is_named_and_has_container_insights(synth: Synth, env: str) -> None:
    _, cluster = one(synth, env, "AWS::ECS::Cluster")
    assert cluster["Properties"]["ClusterName"] == f"mlops-{env}"
    assert cluster["Properties"]["ClusterSettings"] == [{"Name": "containerInsights", "Value": "enabled"}]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_three_services_run_on_the_cluster_and_no_frontend_service_with_s3_hosting(synth: Synth, env: str) -> None:
    assert synth.configs[env].frontend.hosting == "s3"
    services = synth.resources(application(env), "AWS::ECS::Service").values()
    assert sorted(s["Properties"]["ServiceName"] for s in services) == sorted(SERVICES.values())
    assert "mlops-frontend-service" not in json.dumps(synth.templates[application(env)])
    cluster_id = one(synth, env, "AWS::ECS::Cluster")[0]
    for resource in services:
        properties = resource["Properties"]
        assert properties["Cluster"] == {"Ref": cluster_id}
        assert properties["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
        assert properties["EnableExecuteCommand"] is False


# Dev runs on Fargate Spot (services.capacity = "spot"); staging and prod on on-demand Fargate.
@pytest.mark.parametrize(("env", "spot"), [("dev", True), ("staging", False), ("prod", False)])
def test_capacity_per_environment(synth: Synth, env: str, spot: bool) -> None:
    assert (synth.configs[env].services.capacity == "spot") is spot
    associations = synth.resources(application(env), "AWS::ECS::ClusterCapacityProviderAssociations")
    services = synth.resources(application(env), "AWS::ECS::Service")
    cluster_id = one(synth, env, "AWS::ECS::Cluster")[0]
    if not spot:
        assert associations == {}
        for resource in services.values():
            assert resource["Properties"]["LaunchType"] == "FARGATE"
            assert "CapacityProviderStrategy" not in resource["Properties"]
        return
    ((association_id, association),) = associations.items()
    assert association["Properties"]["Cluster"] == {"Ref": cluster_id}
    assert sorted(association["Properties"]["CapacityProviders"]) == ["FARGATE", "FARGATE_SPOT"]
    for resource in services.values():
        assert "LaunchType" not in resource["Properties"]
        assert resource["Properties"]["CapacityProviderStrategy"] == [{"CapacityProvider": "FARGATE_SPOT", "Weight": 1}]
        # Created after the association: a strategy naming a provider the cluster lacks fails the deploy.
        assert association_id in resource["DependsOn"]


@pytest.mark.parametrize(("env", "short"), SERVICE_CASES)
def test_task_definition_family_and_size(synth: Synth, env: str, short: str) -> None:
    task = task_definition(synth, env, short)
    size = getattr(synth.configs[env].services, short)
    assert task["Family"] == f"mlops-{env}-{short}"  # per environment: families are per account
    assert (task["Cpu"], task["Memory"]) == (str(size.cpu), str(size.memory_mib))
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert service(synth, env, short)[1]["Properties"]["DesiredCount"] == size.desired_count


@pytest.mark.parametrize(("env", "short"), SERVICE_CASES)
def test_service_logs_to_its_encrypted_log_group_with_the_configured_retention(
    synth: Synth, env: str, short: str
) -> None:
    options = container(synth, env, short)["LogConfiguration"]
    assert options["LogDriver"] == "awslogs"
    group_id = target(options["Options"]["awslogs-group"])
    group = synth.templates[application(env)]["Resources"][group_id]
    assert group["Type"] == "AWS::Logs::LogGroup"
    properties = group["Properties"]
    assert properties["LogGroupName"] == f"/ecs/mlops-{env}/{short}"
    assert properties["RetentionInDays"] == RETENTION_DAYS[env] == synth.configs[env].services.log_retention_days
    # the key is the foundation's `logs` key, by import
    key = imported(synth, env, properties["KmsKeyId"])
    assert key["Fn::GetAtt"][1] == "Arn"
    aliases = {
        alias["Properties"]["AliasName"]
        for alias in synth.resources(foundation(env), "AWS::KMS::Alias").values()
        if alias["Properties"]["TargetKeyId"] == key
    }
    assert aliases == {f"alias/mlops-{env}/logs"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_only_the_service_and_restart_log_groups_live_in_the_application_stack(synth: Synth, env: str) -> None:
    groups = synth.resources(application(env), "AWS::Logs::LogGroup").values()
    assert sorted(g["Properties"]["LogGroupName"] for g in groups) == sorted(
        [
            *(f"/ecs/mlops-{env}/{short}" for short in SERVICES),
            f"/aws/vendedlogs/states/mlops-{env}-restart-on-rotation",
        ]
    )


# --- deployments ----------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "short"), SERVICE_CASES)
def test_deployment_strategy_circuit_breaker_and_bake_time(synth: Synth, env: str, short: str) -> None:
    deployment = service(synth, env, short)[1]["Properties"]["DeploymentConfiguration"]
    assert deployment["Strategy"] == STRATEGIES[env]
    assert synth.configs[env].services.deployment == STRATEGIES[env].lower()
    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert (deployment["MinimumHealthyPercent"], deployment["MaximumPercent"]) == (100, 200)
    if env == "dev":
        assert "BakeTimeInMinutes" not in deployment
    else:
        assert deployment["BakeTimeInMinutes"] == 5
    if env == "staging":
        assert deployment["CanaryConfiguration"] == {"CanaryPercent": 10, "CanaryBakeTimeInMinutes": 5}
    else:
        assert "CanaryConfiguration" not in deployment


@pytest.mark.parametrize(("env", "short"), SERVICE_CASES)
def test_deployment_alarms_roll_back_canary_and_blue_green_only(synth: Synth, env: str, short: str) -> None:
    deployment = service(synth, env, short)[1]["Properties"]["DeploymentConfiguration"]
    if env == "dev":
        assert "Alarms" not in deployment
    else:
        assert deployment["Alarms"] == {
            "Enable": True,
            "Rollback": True,
            "AlarmNames": [f"mlops-{env}-{short}-deploy-5xx", f"mlops-{env}-{short}-deploy-p99-latency"],
        }


@pytest.mark.parametrize(("env", "short"), [case for case in SERVICE_CASES if case[0] != "dev"])
def test_named_deployment_alarms_exist_watch_both_target_groups_and_come_first(
    synth: Synth, env: str, short: str
) -> None:
    service_id, resource = service(synth, env, short)
    names = resource["Properties"]["DeploymentConfiguration"]["Alarms"]["AlarmNames"]
    alarms = {
        alarm["Properties"]["AlarmName"]: logical_id
        for logical_id, alarm in synth.resources(application(env), "AWS::CloudWatch::Alarm").items()
    }
    assert set(names) <= set(alarms)
    assert {alarms[name] for name in names} <= set(resource["DependsOn"])
    lb_config = load_balancer_config(synth, env, short)
    groups = {
        target(lb_config["TargetGroupArn"]),
        target(lb_config["AdvancedConfiguration"]["AlternateTargetGroupArn"]),
    }
    template = synth.templates[application(env)]["Resources"]
    for name, metric in zip(names, ("HTTPCode_Target_5XX_Count", "TargetResponseTime"), strict=True):
        queries = [q for q in template[alarms[name]]["Properties"]["Metrics"] if "MetricStat" in q]
        assert {q["MetricStat"]["Metric"]["MetricName"] for q in queries} == {metric}
        watched = {
            target(dimension["Value"])
            for q in queries
            for dimension in q["MetricStat"]["Metric"]["Dimensions"]
            if dimension["Name"] == "TargetGroup"
        }
        assert watched == groups, f"{name} watches {watched}, not both target groups {groups} ({service_id})"


@pytest.mark.parametrize(("env", "short"), SERVICE_CASES)
def test_canary_and_blue_green_have_an_alternate_target_group_and_production_rule(
    synth: Synth, env: str, short: str
) -> None:
    """ECS synthesizes BLUE_GREEN without an alternate target silently: the template must carry one."""
    lb_config = load_balancer_config(synth, env, short)
    resources = synth.templates[application(env)]["Resources"]
    primary = target(lb_config["TargetGroupArn"])
    assert (lb_config["ContainerName"], lb_config["ContainerPort"]) == ("app", PORTS[short])
    if env == "dev":
        assert "AdvancedConfiguration" not in lb_config
        return
    advanced = lb_config["AdvancedConfiguration"]
    alternate = target(advanced["AlternateTargetGroupArn"])
    assert alternate != primary
    assert resources[alternate]["Type"] == "AWS::ElasticLoadBalancingV2::TargetGroup"
    for key in ("Port", "Protocol", "TargetType", "HealthCheckPath"):
        assert resources[alternate]["Properties"][key] == resources[primary]["Properties"][key]
    rule = resources[target(advanced["ProductionListenerRule"])]
    assert rule["Type"] == "AWS::ElasticLoadBalancingV2::ListenerRule"
    assert rule["Properties"]["Actions"] == [{"TargetGroupArn": {"Ref": primary}, "Type": "forward"}]
    role = resources[target(advanced["RoleArn"])]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "ecs.amazonaws.com"}


@pytest.mark.parametrize(("env", "groups"), [("dev", 3), ("staging", 6), ("prod", 6)])
def test_a_second_target_group_per_service_only_outside_rolling(synth: Synth, env: str, groups: int) -> None:
    synth.template(application(env)).resource_count_is("AWS::ElasticLoadBalancingV2::TargetGroup", groups)


# --- scaling --------------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "short"), SERVICE_CASES)
def test_scalable_target_bounds_come_from_config(synth: Synth, env: str, short: str) -> None:
    size = getattr(synth.configs[env].services, short)
    properties = scalable_target(synth, env, short)[1]["Properties"]
    assert (properties["MinCapacity"], properties["MaxCapacity"]) == (size.min_tasks, size.max_tasks)
    assert properties["ScalableDimension"] == "ecs:service:DesiredCount"


@pytest.mark.parametrize(
    ("env", "short", "minimum", "maximum"),
    [
        ("dev", "backend", 1, 2),
        ("dev", "mlflow", 1, 1),
        ("dev", "inference", 1, 2),
        ("staging", "backend", 2, 4),
        ("staging", "mlflow", 1, 2),
        ("staging", "inference", 2, 4),
        ("prod", "backend", 3, 10),
        ("prod", "mlflow", 2, 4),
        ("prod", "inference", 3, 12),
    ],
)
def test_scalable_target_bounds_as_configured_today(
    synth: Synth, env: str, short: str, minimum: int, maximum: int
) -> None:
    properties = scalable_target(synth, env, short)[1]["Properties"]
    assert (properties["MinCapacity"], properties["MaxCapacity"]) == (minimum, maximum)


@pytest.mark.parametrize(("env", "short"), SERVICE_CASES)
def test_every_service_tracks_cpu(synth: Synth, env: str, short: str) -> None:
    policy = scaling_policies(synth, env, short)["cpu-scaling"]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"] == {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}
    assert tracking["TargetValue"] == getattr(synth.configs[env].services, short).cpu_target_percent == 70


@pytest.mark.parametrize(
    ("env", "short", "requests"),
    [
        ("dev", "backend", None),
        ("dev", "mlflow", None),
        ("dev", "inference", None),
        ("staging", "backend", None),
        ("staging", "mlflow", None),
        ("staging", "inference", 500),
        ("prod", "backend", 1000),
        ("prod", "mlflow", None),
        ("prod", "inference", 500),
    ],
)
def test_request_count_tracking_only_where_configured(synth: Synth, env: str, short: str, requests: int | None) -> None:
    assert getattr(synth.configs[env].services, short).requests_per_target == requests
    policies = scaling_policies(synth, env, short)
    if requests is None:
        assert set(policies) == {"cpu-scaling"}
        return
    assert set(policies) == {"cpu-scaling", "request-scaling"}
    tracking = policies["request-scaling"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == requests
    # Canary and blue/green move the live target group with every deployment: the metric adds the primary and the
    # alternate group's requests and divides by the running tasks (metric math), never one group alone.
    assert "PredefinedMetricSpecification" not in tracking
    queries = {query["Id"]: query for query in tracking["CustomizedMetricSpecification"]["Metrics"]}
    assert queries["perTask"] == {
        "Id": "perTask",
        "Expression": "IF(tasks > 0, (FILL(r0, 0) + FILL(r1, 0)) / tasks, 0)",
        "Label": f"{SERVICES[short]} requests per task",
        "ReturnData": True,
    }
    groups = {
        target(next(d["Value"] for d in queries[q]["MetricStat"]["Metric"]["Dimensions"] if d["Name"] == "TargetGroup"))
        for q in ("r0", "r1")
    }
    config = load_balancer_config(synth, env, short)
    assert groups == {
        target(config["TargetGroupArn"]),
        target(config["AdvancedConfiguration"]["AlternateTargetGroupArn"]),
    }
    for q in ("r0", "r1"):
        stat = queries[q]["MetricStat"]
        assert (stat["Metric"]["MetricName"], stat["Metric"]["Namespace"], stat["Stat"]) == (
            "RequestCount",
            "AWS/ApplicationELB",
            "Sum",
        )
        assert queries[q]["ReturnData"] is False
    tasks = queries["tasks"]["MetricStat"]
    assert (tasks["Metric"]["MetricName"], tasks["Metric"]["Namespace"], tasks["Stat"]) == (
        "RunningTaskCount",
        "ECS/ContainerInsights",
        "Average",
    )
    dimensions = {d["Name"]: d["Value"] for d in tasks["Metric"]["Dimensions"]}
    assert dimensions["ServiceName"] == SERVICES[short]


@pytest.mark.parametrize("short", SERVICES)
def test_dev_services_stop_after_hours_and_start_in_the_morning(synth: Synth, short: str) -> None:
    size = getattr(synth.configs["dev"].services, short)
    actions = scalable_target(synth, "dev", short)[1]["Properties"]["ScheduledActions"]
    assert actions == [
        {
            "ScheduledActionName": "StopAfterHours",
            "Schedule": "cron(0 18 ? * MON-FRI *)",
            "ScalableTargetAction": {"MinCapacity": 0, "MaxCapacity": 0},
            "Timezone": "America/New_York",
        },
        {
            "ScheduledActionName": "StartWorkingHours",
            "Schedule": "cron(0 8 ? * MON-FRI *)",
            "ScalableTargetAction": {"MinCapacity": size.min_tasks, "MaxCapacity": size.max_tasks},
            "Timezone": "America/New_York",
        },
    ]


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_no_schedule_outside_dev(synth: Synth, env: str) -> None:
    assert synth.configs[env].services.schedule is None
    targets = synth.resources(application(env), "AWS::ApplicationAutoScaling::ScalableTarget").values()
    assert len(targets) == 3
    assert all("ScheduledActions" not in t["Properties"] for t in targets)


# --- MLflow ---------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_mlflow_command_serves_artifacts_from_its_prefix_and_allows_the_load_balancer_host(
    synth: Synth, env: str
) -> None:
    command = container(synth, env, "mlflow")["Command"]
    lb = load_balancer_id(synth, env)
    assert "--serve-artifacts" in command
    assert command[command.index("--artifacts-destination") + 1] == f"s3://example-mlops-models-{env}/mlflow"
    assert synth.configs[env].models_bucket_name == f"example-mlops-models-{env}"
    allowed = command[command.index("--allowed-hosts") + 1]
    assert {"Fn::GetAtt": [lb, "DNSName"]} in allowed["Fn::Join"][1]
    vpc_prefix = {"dev": "10.10.*", "staging": "10.20.*", "prod": "10.30.*"}[env]
    assert render(allowed, lb).split(",") == [LB_DNS, f"{LB_DNS}:5000", vpc_prefix, "localhost", "localhost:5000"]
    assert command[command.index("--port") + 1] == "5000"


@pytest.mark.parametrize(("env", "auth"), [("dev", False), ("staging", True), ("prod", True)])
def test_mlflow_environment(synth: Synth, env: str, auth: bool) -> None:
    assert synth.configs[env].mlflow.auth is auth
    values = environment(container(synth, env, "mlflow"))
    assert values["MLFLOW_BACKEND_STORE_DRIVER"] == "postgresql+psycopg2"
    assert values["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert values["DB_NAME"] == "mlflow"
    assert values["MLFLOW_AUTH"] == ("true" if auth else "false")
    if auth:
        assert values["MLFLOW_AUTH_DB_NAME"] == "mlflow_auth"
        assert values["MLFLOW_ADMIN_USERNAME"] == "admin"
    else:
        assert "MLFLOW_AUTH_DB_NAME" not in values
        assert "MLFLOW_ADMIN_USERNAME" not in values
    # the database's coordinates come from the foundation's instance
    assert imported(synth, env, values["DB_HOST"])["Fn::GetAtt"][1] == "Endpoint.Address"
    assert imported(synth, env, values["DB_PORT"])["Fn::GetAtt"][1] == "Endpoint.Port"


def assert_database_credentials(synth: Synth, env: str, found: dict[str, Any]) -> None:
    """DB_USER and DB_PASSWORD are JSON keys of the RDS-managed master secret, by import."""
    for name, key in (("DB_USER", "username"), ("DB_PASSWORD", "password")):
        secret_arn, suffix = found[name]["Fn::Join"][1]
        assert suffix == f":{key}::"
        (instance, attribute) = imported(synth, env, secret_arn)["Fn::GetAtt"]
        assert attribute == "MasterUserSecret.SecretArn"
        assert synth.templates[foundation(env)]["Resources"][instance]["Type"] == "AWS::RDS::DBInstance"


@pytest.mark.parametrize(("env", "auth"), [("dev", False), ("staging", True), ("prod", True)])
def test_mlflow_secrets(synth: Synth, env: str, auth: bool) -> None:
    found = secrets(container(synth, env, "mlflow"))
    expected = {"DB_USER", "DB_PASSWORD"} | ({"MLFLOW_ADMIN_PASSWORD"} if auth else set())
    assert set(found) == expected
    assert_database_credentials(synth, env, found)
    admin_secrets = synth.resources(application(env), "AWS::SecretsManager::Secret")
    assert len(admin_secrets) == (1 if auth else 0)
    if auth:
        ((logical_id, secret),) = admin_secrets.items()
        assert found["MLFLOW_ADMIN_PASSWORD"] == {"Ref": logical_id}
        # Basic auth sets the admin's password from it on the first start only: a new secret would lock clients out.
        assert (secret["DeletionPolicy"], secret["UpdateReplacePolicy"]) == ("Retain", "Retain")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_environment_variable_holds_a_secret(synth: Synth, env: str) -> None:
    suspicious_name = re.compile(r"PASSWORD|SECRET|TOKEN|API_?KEY|CREDENTIAL|PRIVATE", re.IGNORECASE)
    suspicious_value = re.compile(r"password|secret|BEGIN [A-Z ]*PRIVATE KEY|AKIA[0-9A-Z]{16}|[A-Za-z0-9+/=_-]{32,}")
    checked = 0
    for task in synth.resources(application(env), "AWS::ECS::TaskDefinition").values():
        for definition in task["Properties"]["ContainerDefinitions"]:
            for item in definition.get("Environment", []):
                checked += 1
                assert not suspicious_name.search(item["Name"]), item
                literal = item["Value"] if isinstance(item["Value"], str) else ""
                assert not suspicious_value.search(literal), item
                # a token's value: no reference to Secrets Manager or to a secret attribute
                assert "secret" not in json.dumps(item["Value"]).lower(), item
                assert "password" not in json.dumps(item["Value"]).lower(), item
    assert checked >= 15


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_mlflow_health_checks(synth: Synth, env: str) -> None:
    resources = synth.templates[application(env)]["Resources"]
    lb_config = load_balancer_config(synth, env, "mlflow")
    groups = [lb_config["TargetGroupArn"]] + (
        [lb_config["AdvancedConfiguration"]["AlternateTargetGroupArn"]] if env != "dev" else []
    )
    for group in groups:
        properties = resources[target(group)]["Properties"]
        assert (properties["HealthCheckPath"], properties["Port"]) == ("/health", 5000)
        assert properties["Matcher"] == {"HttpCode": "200"}
    check = container(synth, env, "mlflow")["HealthCheck"]
    assert check["Command"][0] == "CMD-SHELL"
    assert "http://localhost:5000/health" in check["Command"][1]


def task_role_policies(synth: Synth, env: str, short: str) -> list[dict[str, Any]]:
    role = target(task_definition(synth, env, short)["TaskRoleArn"])
    return [
        policy["Properties"]["PolicyDocument"]
        for policy in synth.resources(application(env), "AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
    ]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_mlflow_task_role_reaches_its_artifact_prefix_only(synth: Synth, env: str) -> None:
    (document,) = task_role_policies(synth, env, "mlflow")
    bucket = f"arn:aws:s3:::example-mlops-models-{env}"
    statements = document["Statement"]
    s3_statements = [s for s in statements if any(a.startswith("s3:") for a in _actions(s))]
    assert s3_statements == [
        {
            "Action": ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
            "Effect": "Allow",
            "Resource": f"{bucket}/mlflow/*",
        },
        {
            "Action": "s3:ListBucket",
            "Condition": {"StringLike": {"s3:prefix": ["mlflow/*", "mlflow"]}},
            "Effect": "Allow",
            "Resource": bucket,
        },
    ]
    (kms,) = [s for s in statements if s not in s3_statements]
    assert sorted(_actions(kms)) == ["kms:Decrypt", "kms:GenerateDataKey"]
    key = imported(synth, env, kms["Resource"])
    aliases = {
        alias["Properties"]["AliasName"]
        for alias in synth.resources(foundation(env), "AWS::KMS::Alias").values()
        if alias["Properties"]["TargetKeyId"] == key
    }
    assert aliases == {f"alias/mlops-{env}/storage"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_backend_task_role_has_no_grants(synth: Synth, env: str) -> None:
    assert task_role_policies(synth, env, "backend") == []


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_inference_task_role_may_only_publish_mlops_metrics(synth: Synth, env: str) -> None:
    """InferenceLatency, which the high-latency alarm watches, comes from the inference task: only that namespace."""
    (document,) = task_role_policies(synth, env, "inference")
    assert document["Statement"] == [
        {
            "Action": "cloudwatch:PutMetricData",
            "Condition": {"StringEquals": {"cloudwatch:namespace": "MLOps"}},
            "Effect": "Allow",
            "Resource": "*",
        }
    ]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_task_and_execution_roles_have_no_wildcard_actions_and_no_managed_policies(synth: Synth, env: str) -> None:
    stack = application(env)
    task_roles = {
        logical_id
        for logical_id, role in synth.resources(stack, "AWS::IAM::Role").items()
        if role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
        == {"Service": "ecs-tasks.amazonaws.com"}
    }
    assert len(task_roles) == 6  # a task role and an execution role per service
    for logical_id in task_roles:
        assert "ManagedPolicyArns" not in synth.templates[stack]["Resources"][logical_id]["Properties"], logical_id
    for policy in synth.resources(stack, "AWS::IAM::Policy").values():
        if not {target(role) for role in policy["Properties"]["Roles"]} & task_roles:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert all(action != "*" and not action.endswith(":*") for action in _actions(statement)), statement


# --- backend and inference ------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_backend_reaches_mlflow_and_inference_through_the_load_balancer(synth: Synth, env: str) -> None:
    definition = container(synth, env, "backend")
    values = environment(definition)
    lb = load_balancer_id(synth, env)
    assert render(values["MLFLOW_TRACKING_URI"], lb) == f"http://{LB_DNS}:5000"
    assert render(values["INFERENCE_URL"], lb) == f"http://{LB_DNS}:8080"
    found = secrets(definition)
    auth = synth.configs[env].mlflow.auth
    assert set(found) == {"DB_USER", "DB_PASSWORD"} | ({"MLFLOW_TRACKING_PASSWORD"} if auth else set())
    assert_database_credentials(synth, env, found)
    assert_mlflow_client_credentials(synth, env, definition)


@pytest.mark.parametrize(
    ("env", "short", "port", "health", "listener", "paths"),
    [
        (env, short, port, health, listener, paths)
        for env in ENVIRONMENTS
        for short, port, health, listener, paths in (
            ("backend", 5000, "/api/health", 80, ["/api/*"]),
            ("mlflow", 5000, "/health", 5000, ["/*"]),
            ("inference", 8080, "/ping", 8080, ["/*"]),
        )
    ],
)
def test_routing_and_health_checks(
    synth: Synth, env: str, short: str, port: int, health: str, listener: int, paths: list[str]
) -> None:
    resources = synth.templates[application(env)]["Resources"]
    primary = target(load_balancer_config(synth, env, short)["TargetGroupArn"])
    group = resources[primary]["Properties"]
    assert (group["Port"], group["HealthCheckPath"], group["TargetType"]) == (port, health, "ip")
    (rule,) = [
        r["Properties"]
        for r in synth.resources(application(env), "AWS::ElasticLoadBalancingV2::ListenerRule").values()
        if r["Properties"]["Actions"] == [{"TargetGroupArn": {"Ref": primary}, "Type": "forward"}]
    ]
    assert listener_port(synth, env, rule["ListenerArn"]) == listener
    assert rule["Conditions"] == [{"Field": "path-pattern", "PathPatternConfig": {"Values": paths}}]
    definition = container(synth, env, short)
    assert definition["PortMappings"] == [{"ContainerPort": port, "Name": "http", "Protocol": "tcp"}]
    assert f"http://localhost:{port}{health}" in definition["HealthCheck"]["Command"][1]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_inference_serves_the_champion_model(synth: Synth, env: str) -> None:
    definition = container(synth, env, "inference")
    values = environment(definition)
    assert values["MODEL_URI"] == "models:/sales-forecaster@champion"
    assert values["PORT"] == "8080"
    assert render(values["MLFLOW_TRACKING_URI"], load_balancer_id(synth, env)) == f"http://{LB_DNS}:5000"
    assert set(secrets(definition)) == ({"MLFLOW_TRACKING_PASSWORD"} if synth.configs[env].mlflow.auth else set())
    assert_mlflow_client_credentials(synth, env, definition)


def assert_mlflow_client_credentials(synth: Synth, env: str, definition: dict[str, Any]) -> None:
    """Where MLflow's basic auth is on, its clients sign in with MLflow's standard variables; else they send none."""
    values, found = environment(definition), secrets(definition)
    if not synth.configs[env].mlflow.auth:
        assert "MLFLOW_TRACKING_USERNAME" not in values
        assert "MLFLOW_TRACKING_PASSWORD" not in found
        return
    (admin_secret,) = synth.resources(application(env), "AWS::SecretsManager::Secret")
    assert values["MLFLOW_TRACKING_USERNAME"] == "admin"
    assert found["MLFLOW_TRACKING_PASSWORD"] == {"Ref": admin_secret}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_listener_answers_404_by_default(synth: Synth, env: str) -> None:
    listeners = synth.resources(application(env), "AWS::ElasticLoadBalancingV2::Listener").values()
    assert sorted(listener["Properties"]["Port"] for listener in listeners) == [80, 5000, 8080]
    for listener in listeners:
        assert listener["Properties"]["Protocol"] == "HTTP"
        (action,) = listener["Properties"]["DefaultActions"]
        assert action["Type"] == "fixed-response"
        assert action["FixedResponseConfig"]["StatusCode"] == "404"


# --- network rules --------------------------------------------------------------------------


def test_no_ingress_from_the_internet_in_any_stack(synth: Synth) -> None:
    checked = 0
    for stack in synth.templates:
        for rule in ingress_rules(synth, stack):
            checked += 1
            assert rule.get("CidrIp") != "0.0.0.0/0", (stack, rule)
            assert rule.get("CidrIpv6") != "::/0", (stack, rule)
    assert checked > 20


def egress_of(synth: Synth, env: str, group: str) -> set[tuple[str, int]]:
    """(destination, port) of every egress rule of a security group: a CIDR, or the destination group's role."""

    def role(destination: Any) -> str:
        if "Fn::ImportValue" in destination:
            assert "DatabaseSecurityGroup" in destination["Fn::ImportValue"], destination
            return "database"
        name = target(destination)
        for prefix, found in (("LoadBalancerSecurityGroup", "load balancer"), ("FeatureCacheSecurityGroup", "cache")):
            if name.startswith(prefix):
                return found
        raise AssertionError(f"unexpected egress destination {destination}")

    stack = application(env)
    inline = synth.templates[stack]["Resources"][group]["Properties"].get("SecurityGroupEgress", [])
    assert all(rule["IpProtocol"] == "tcp" for rule in inline), inline  # no "-1": all traffic
    assert all(rule["FromPort"] == rule["ToPort"] for rule in inline), inline  # one port each, no range
    rules = {(rule["CidrIp"], rule["FromPort"]) for rule in inline}
    for rule in synth.resources(stack, "AWS::EC2::SecurityGroupEgress").values():
        properties = rule["Properties"]
        if properties["GroupId"] == {"Fn::GetAtt": [group, "GroupId"]}:
            assert properties["FromPort"] == properties["ToPort"], properties
            rules.add((role(properties["DestinationSecurityGroupId"]), properties["FromPort"]))
    return rules


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_tasks_reach_https_and_their_named_peers_only(synth: Synth, env: str) -> None:
    """Egress per service: HTTPS anywhere (AWS APIs through NAT or endpoints, image pulls, logs, secrets), then
    exactly the peers it calls; never all traffic."""
    cache = {("cache", 6379)} if synth.configs[env].cache.enabled else set()
    https = {("0.0.0.0/0", 443)}
    expected = {
        "backend": https | {("load balancer", 5000), ("load balancer", 8080), ("database", 5432)} | cache,
        "mlflow": https | {("database", 5432)},
        "inference": https | {("load balancer", 5000)} | cache,
    }
    assert {short: egress_of(synth, env, security_group(synth, env, short)) for short in SERVICES} == expected
    assert cache == (set() if env != "prod" else {("cache", 6379)})


@pytest.mark.parametrize(
    ("env", "idle_timeout", "deletion_protection"), [("dev", 60, False), ("staging", 60, False), ("prod", 120, True)]
)
def test_load_balancer_is_internal_and_hardened(
    synth: Synth, env: str, idle_timeout: int, deletion_protection: bool
) -> None:
    _, lb = one(synth, env, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    properties = lb["Properties"]
    assert properties["Scheme"] == "internal"
    assert properties["Type"] == "application"
    attributes = {a["Key"]: a["Value"] for a in properties["LoadBalancerAttributes"]}
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert attributes["idle_timeout.timeout_seconds"] == str(idle_timeout)
    assert attributes["deletion_protection.enabled"] == str(deletion_protection).lower()
    assert attributes["access_logs.s3.enabled"] == "true"
    assert attributes["access_logs.s3.prefix"] == "alb"
    edge_logs = target(attributes["access_logs.s3.bucket"])
    assert synth.templates[application(env)]["Resources"][edge_logs]["Type"] == "AWS::S3::Bucket"
    # in the private subnets of the foundation's VPC
    for subnet in properties["Subnets"]:
        assert "privateSubnet" in imported(synth, env, subnet)["Ref"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_load_balancer_listeners_admit_only_their_callers(synth: Synth, env: str) -> None:
    (lb_group,) = one(synth, env, "AWS::ElasticLoadBalancingV2::LoadBalancer")[1]["Properties"]["SecurityGroups"]
    groups = service_groups(synth, env)
    admitted = {
        (rule["FromPort"], rule["ToPort"], rule["IpProtocol"], groups.get(source(rule), source(rule)))
        for rule in ingress_rules(synth, application(env))
        if rule["GroupId"] == lb_group
    }
    assert admitted == {
        (80, 80, "tcp", CLOUDFRONT_PREFIX_LIST),
        (5000, 5000, "tcp", "backend"),
        (5000, 5000, "tcp", "inference"),
        (8080, 8080, "tcp", "backend"),
    }


@pytest.mark.parametrize(("env", "short"), SERVICE_CASES)
def test_service_tasks_admit_only_the_load_balancer(synth: Synth, env: str, short: str) -> None:
    group = security_group(synth, env, short)
    (lb_group,) = one(synth, env, "AWS::ElasticLoadBalancingV2::LoadBalancer")[1]["Properties"]["SecurityGroups"]
    admitted = [
        (rule["FromPort"], rule["ToPort"], source(rule))
        for rule in ingress_rules(synth, application(env))
        if rule["GroupId"] == {"Fn::GetAtt": [group, "GroupId"]}
    ]
    assert admitted == [(PORTS[short], PORTS[short], target(lb_group))]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_database_admits_postgres_from_backend_and_mlflow_only(synth: Synth, env: str) -> None:
    database_groups = [
        logical_id
        for logical_id, group in synth.resources(foundation(env), "AWS::EC2::SecurityGroup").items()
        if "PostgreSQL" in group["Properties"]["GroupDescription"]
    ]
    assert len(database_groups) == 1
    database_group = {"Fn::GetAtt": [database_groups[0], "GroupId"]}
    # nothing in the foundation opens it
    assert all(rule["GroupId"] != database_group for rule in ingress_rules(synth, foundation(env)))
    groups = service_groups(synth, env)
    admitted = sorted(
        (rule["FromPort"], rule["ToPort"], rule["IpProtocol"], groups.get(source(rule), source(rule)))
        for rule in ingress_rules(synth, application(env))
        if "Fn::ImportValue" in rule["GroupId"] and imported(synth, env, rule["GroupId"]) == database_group
    )
    assert admitted == [(5432, 5432, "tcp", "backend"), (5432, 5432, "tcp", "mlflow")]
    # no other rule of the application stack opens 5432
    assert len([rule for rule in ingress_rules(synth, application(env)) if rule.get("FromPort") == 5432]) == 2


@pytest.mark.parametrize("env", ["dev", "staging"])
def test_no_feature_cache_where_disabled(synth: Synth, env: str) -> None:
    assert synth.configs[env].cache.enabled is False
    template = synth.template(application(env))
    template.resource_count_is("AWS::ElastiCache::ReplicationGroup", 0)
    template.resource_count_is("AWS::ElastiCache::SubnetGroup", 0)
    assert all(rule.get("FromPort") != 6379 for rule in ingress_rules(synth, application(env)))


def test_prod_feature_cache_is_encrypted_and_admits_backend_and_inference_only(synth: Synth) -> None:
    assert synth.configs["prod"].cache.enabled is True
    _, cache = one(synth, "prod", "AWS::ElastiCache::ReplicationGroup")
    properties = cache["Properties"]
    assert properties["AtRestEncryptionEnabled"] is True
    assert properties["TransitEncryptionEnabled"] is True
    assert properties["TransitEncryptionMode"] == "required"
    assert properties["Engine"] == "valkey"
    assert (properties["NumCacheClusters"], properties["MultiAZEnabled"]) == (2, True)
    key = imported(synth, "prod", properties["KmsKeyId"])
    assert key["Fn::GetAtt"][0].startswith("KeysDatabase")
    (cache_group,) = properties["SecurityGroupIds"]
    groups = service_groups(synth, "prod")
    admitted = sorted(
        (rule["FromPort"], rule["ToPort"], rule["IpProtocol"], groups.get(source(rule), source(rule)))
        for rule in ingress_rules(synth, "MlopsProd")
        if rule["GroupId"] == cache_group
    )
    assert admitted == [(6379, 6379, "tcp", "backend"), (6379, 6379, "tcp", "inference")]


# --- CloudFront -----------------------------------------------------------------------------


def distribution(synth: Synth, env: str) -> dict[str, Any]:
    return dict(one(synth, env, "AWS::CloudFront::Distribution")[1]["Properties"]["DistributionConfig"])


def origin(config: dict[str, Any], origin_id: str) -> dict[str, Any]:
    (found,) = [o for o in config["Origins"] if o["Id"] == origin_id]
    return dict(found)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_default_behaviour_serves_the_site_bucket_through_origin_access_control(synth: Synth, env: str) -> None:
    config = distribution(synth, env)
    resources = synth.templates[application(env)]["Resources"]
    default = config["DefaultCacheBehavior"]
    assert default["ViewerProtocolPolicy"] == "redirect-to-https"
    site = origin(config, default["TargetOriginId"])
    assert site["S3OriginConfig"] == {"OriginAccessIdentity": ""}
    assert resources[target(site["DomainName"])]["Type"] == "AWS::S3::Bucket"
    oac = resources[target(site["OriginAccessControlId"])]
    assert oac["Type"] == "AWS::CloudFront::OriginAccessControl"
    assert oac["Properties"]["OriginAccessControlConfig"] | {"Name": None} == {
        "Name": None,
        "OriginAccessControlOriginType": "s3",
        "SigningBehavior": "always",
        "SigningProtocol": "sigv4",
    }
    (association,) = default["FunctionAssociations"]
    assert association["EventType"] == "viewer-request"
    function = resources[target(association["FunctionARN"])]
    assert function["Type"] == "AWS::CloudFront::Function"
    assert function["Properties"]["FunctionConfig"]["Runtime"] == "cloudfront-js-2.0"
    assert "request.uri = '/index.html'" in function["Properties"]["FunctionCode"]
    assert config["DefaultRootObject"] == "index.html"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_api_behaviour_goes_uncached_to_the_load_balancer_through_a_vpc_origin(synth: Synth, env: str) -> None:
    config = distribution(synth, env)
    resources = synth.templates[application(env)]["Resources"]
    (api,) = config["CacheBehaviors"]
    assert api["PathPattern"] == "/api/*"
    assert api["ViewerProtocolPolicy"] == "redirect-to-https"
    assert api["CachePolicyId"] == CACHING_DISABLED
    assert set(api["AllowedMethods"]) == ALL_METHODS
    lb = load_balancer_id(synth, env)
    api_origin = origin(config, api["TargetOriginId"])
    assert api_origin["DomainName"] == {"Fn::GetAtt": [lb, "DNSName"]}
    vpc_origin = resources[target(api_origin["VpcOriginConfig"]["VpcOriginId"])]
    assert vpc_origin["Type"] == "AWS::CloudFront::VpcOrigin"
    endpoint = vpc_origin["Properties"]["VpcOriginEndpointConfig"]
    assert endpoint["Arn"] == {"Ref": lb}
    assert (endpoint["HTTPPort"], endpoint["OriginProtocolPolicy"]) == (80, "http-only")
    assert endpoint["Name"] == f"mlops-{env}-web"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_security_headers_on_both_behaviours(synth: Synth, env: str) -> None:
    config = distribution(synth, env)
    policy_id, policy = one(synth, env, "AWS::CloudFront::ResponseHeadersPolicy")
    for behaviour in [config["DefaultCacheBehavior"], *config["CacheBehaviors"]]:
        assert behaviour["ResponseHeadersPolicyId"] == {"Ref": policy_id}
    headers = policy["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    assert headers == {
        "StrictTransportSecurity": {
            "AccessControlMaxAgeSec": 31536000,
            "IncludeSubdomains": True,
            "Preload": True,
            "Override": True,
        },
        "ContentTypeOptions": {"Override": True},
        "FrameOptions": {"FrameOption": "DENY", "Override": True},
        "ReferrerPolicy": {"ReferrerPolicy": "strict-origin-when-cross-origin", "Override": True},
        "XSSProtection": {"Protection": True, "ModeBlock": True, "Override": True},
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_distribution_logs_to_the_edge_logs_bucket(synth: Synth, env: str) -> None:
    logging = distribution(synth, env)["Logging"]
    attributes = {
        a["Key"]: a["Value"]
        for a in one(synth, env, "AWS::ElasticLoadBalancingV2::LoadBalancer")[1]["Properties"]["LoadBalancerAttributes"]
    }
    edge_logs = target(attributes["access_logs.s3.bucket"])
    assert logging == {"Bucket": {"Fn::GetAtt": [edge_logs, "RegionalDomainName"]}, "Prefix": "cloudfront/"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_site_bucket_is_private_tls_only_and_readable_by_this_distribution_only(synth: Synth, env: str) -> None:
    config = distribution(synth, env)
    site_id = target(origin(config, config["DefaultCacheBehavior"]["TargetOriginId"])["DomainName"])
    bucket = synth.templates[application(env)]["Resources"][site_id]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in synth.resources(application(env), "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": site_id}
    ]
    denies = [s for s in policy if s["Effect"] == "Deny"]
    assert [s["Condition"] for s in denies] == [{"Bool": {"aws:SecureTransport": "false"}}]
    distribution_id = one(synth, env, "AWS::CloudFront::Distribution")[0]
    (allow,) = [s for s in policy if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert allow["Action"] == "s3:GetObject"
    assert allow["Resource"] == {"Fn::Join": ["", [{"Fn::GetAtt": [site_id, "Arn"]}, "/*"]]}
    (source_arn,) = allow["Condition"]["StringEquals"].values()
    assert list(allow["Condition"]["StringEquals"]) == ["AWS:SourceArn"]
    assert {"Ref": distribution_id} in source_arn["Fn::Join"][1]


# --- outputs and images ---------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_outputs(synth: Synth, env: str) -> None:
    outputs = {name: output["Value"] for name, output in synth.templates[application(env)]["Outputs"].items()}
    assert set(outputs) == {
        "ClusterName",
        "FrontendUrl",
        "DistributionId",
        "LoadBalancerDns",
        "MlflowTrackingUri",
        "InferenceUrl",
        "ImageTag",
        "SiteBucket",
    }
    lb = load_balancer_id(synth, env)
    distribution_id = one(synth, env, "AWS::CloudFront::Distribution")[0]
    config = distribution(synth, env)
    site_id = target(origin(config, config["DefaultCacheBehavior"]["TargetOriginId"])["DomainName"])
    assert outputs["ClusterName"] == {"Ref": one(synth, env, "AWS::ECS::Cluster")[0]}
    assert outputs["FrontendUrl"] == {"Fn::Join": ["", ["https://", {"Fn::GetAtt": [distribution_id, "DomainName"]}]]}
    assert outputs["DistributionId"] == {"Ref": distribution_id}
    assert outputs["LoadBalancerDns"] == {"Fn::GetAtt": [lb, "DNSName"]}
    assert render(outputs["MlflowTrackingUri"], lb) == f"http://{LB_DNS}:5000"
    assert render(outputs["InferenceUrl"], lb) == f"http://{LB_DNS}:8080"
    assert outputs["ImageTag"] == "initial" == synth.configs[env].services.default_image_tag
    assert outputs["SiteBucket"] == {"Ref": site_id}


@pytest.mark.parametrize(
    ("env", "short", "repository"),
    [(env, short, f"mlops-{short}") for env in ENVIRONMENTS for short in ("backend", "inference")],
)
def test_backend_and_inference_images_come_from_the_shared_registry(
    synth: Synth, env: str, short: str, repository: str
) -> None:
    parts = container(synth, env, short)["Image"]["Fn::Join"][1]
    assert parts[-1] == ":initial"
    (name_import,) = [part for part in parts if isinstance(part, dict) and "Fn::ImportValue" in part]
    repository_id = imported(synth, env, name_import, exporter="MlopsRegistryUsEast1")["Ref"]
    resource = synth.templates["MlopsRegistryUsEast1"]["Resources"][repository_id]
    assert resource["Type"] == "AWS::ECR::Repository"
    assert resource["Properties"]["RepositoryName"] == repository


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_mlflow_image_is_the_cdk_asset(synth: Synth, env: str) -> None:
    assert synth.configs[env].mlflow.image == "asset"
    image = container(synth, env, "mlflow")["Image"]["Fn::Sub"]
    match = re.fullmatch(
        r"\$\{AWS::AccountId\}\.dkr\.ecr\.us-east-1\.\$\{AWS::URLSuffix\}"
        r"/cdk-hnb659fds-container-assets-\$\{AWS::AccountId\}-us-east-1:([0-9a-f]{64})",
        image,
    )
    assert match, image
    assets = json.loads((synth.outdir / f"{application(env)}.assets.json").read_text())["dockerImages"]
    assert assets[match.group(1)]["displayName"] == "Mlflow/Service/Task/app/AssetImage"


# --- restart on database password rotation --------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_rotation_of_the_database_secret_restarts_its_readers(synth: Synth, env: str) -> None:
    """ECS injects DB_PASSWORD at task start; when RDS rotates it, the backend and MLflow get new tasks."""
    _, rule = one(synth, env, "AWS::Events::Rule")
    pattern = dict(rule["Properties"]["EventPattern"])  # a copy: the session's templates are shared
    (secret,) = pattern.pop("resources")
    assert pattern == {
        "source": ["aws.secretsmanager"],
        "detail-type": ["Secret Label Updated"],
        "detail": {"labelUpdated": ["AWSCURRENT"]},
    }
    database = synth.templates[foundation(env)]["Resources"][imported(synth, env, secret)["Fn::GetAtt"][0]]
    assert database["Type"] == "AWS::RDS::DBInstance"
    assert imported(synth, env, secret)["Fn::GetAtt"][1] == "MasterUserSecret.SecretArn"

    machine_id, machine = one(synth, env, "AWS::StepFunctions::StateMachine")
    ((rule_target,),) = [rule["Properties"]["Targets"]]
    assert rule_target["Arn"] == {"Ref": machine_id}
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    text = "".join(part if isinstance(part, str) else json.dumps(part) for part in parts)
    readers = {service(synth, env, short)[0] for short in ("backend", "mlflow")}
    refs = {part["Ref"] for part in parts if isinstance(part, dict) and "Ref" in part}
    assert refs - {"AWS::Partition"} == readers
    assert text.count(':states:::aws-sdk:ecs:updateService"') == 2
    assert text.count('"ForceNewDeployment":true') == 2

    statements = [
        statement
        for policy in synth.resources(application(env), "AWS::IAM::Policy").values()
        if {"Ref": target(machine["Properties"]["RoleArn"])} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    (update,) = [s for s in statements if s["Action"] == "ecs:updateService"]
    assert {target(resource) for resource in update["Resource"]} == readers
    assert machine["Properties"]["TracingConfiguration"] == {"Enabled": True}
    (destination,) = machine["Properties"]["LoggingConfiguration"]["Destinations"]
    log_group = synth.templates[application(env)]["Resources"][
        target(destination["CloudWatchLogsLogGroup"]["LogGroupArn"])
    ]["Properties"]
    assert machine["Properties"]["LoggingConfiguration"]["Level"] == "ALL"
    assert log_group["LogGroupName"] == f"/aws/vendedlogs/states/mlops-{env}-restart-on-rotation"
    assert "KmsKeyId" in log_group
