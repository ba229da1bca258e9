"""What the foundation stacks carry, per environment where environments differ."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import pytest
from aws_cdk.assertions import Match

from tests.conftest import ENVIRONMENTS, STACKS, Synth
from tests.templates import application, foundation

REGISTRY = "MlopsRegistryUsEast1"

# --- stacks and app -------------------------------------------------------------------------


def test_every_environment_has_its_stacks(synth: Synth) -> None:
    assert set(synth.templates) == set(STACKS)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_entry_stack_depends_on_the_foundation(synth: Synth, env: str) -> None:
    stacks = synth.environments[env]
    assert stacks.foundation in stacks.application.dependencies
    if env == "prod":
        assert stacks.disaster_recovery is not None
        assert stacks.disaster_recovery in stacks.foundation.dependencies
        assert stacks.disaster_recovery.region == "us-west-2"
    else:
        assert stacks.disaster_recovery is None


@pytest.mark.parametrize(("env", "protected"), [("dev", False), ("staging", True), ("prod", True)])
def test_stateful_stacks_are_termination_protected_outside_dev(synth: Synth, env: str, protected: bool) -> None:
    stacks = synth.environments[env]
    stateful = [stacks.foundation] + ([stacks.disaster_recovery] if stacks.disaster_recovery else [])
    assert [stack.termination_protection for stack in stateful] == [protected] * len(stateful)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_taggable_resource_carries_the_configured_tags(synth: Synth, env: str) -> None:
    expected = {"Project": "mlops-studio", "Environment": env, "Owner": "platform-team", "CostCenter": "ml-platform"}
    untagged = []
    for stack_name, template in synth.templates.items():
        if not stack_name.startswith(f"Mlops{env.capitalize()}"):
            continue
        for logical_id, resource in template["Resources"].items():
            tags = resource.get("Properties", {}).get("Tags")
            if tags is None:
                continue
            found = {tag["Key"]: tag["Value"] for tag in tags} if isinstance(tags, list) else tags
            if any(found.get(key) != value for key, value in expected.items()):
                untagged.append(f"{stack_name}/{logical_id}")
    assert not untagged, f"resources missing the configured tags: {untagged}"
    # The walk skips resources without Tags: these taggable types must have them, in both stacks of the environment.
    must_be_tagged = {
        foundation(env): ("AWS::EC2::VPC", "AWS::RDS::DBInstance", "AWS::S3::Bucket", "AWS::KMS::Key"),
        application(env): (
            "AWS::ECS::Cluster",
            "AWS::ECS::Service",
            "AWS::ECS::TaskDefinition",
            "AWS::ElasticLoadBalancingV2::LoadBalancer",
            "AWS::CloudFront::Distribution",
            "AWS::SNS::Topic",
            "AWS::Logs::LogGroup",
            "AWS::StepFunctions::StateMachine",
        ),
    }
    for stack_name, resource_types in must_be_tagged.items():
        for resource_type in resource_types:
            resources = synth.resources(stack_name, resource_type)
            assert resources, (stack_name, resource_type)
            for logical_id, resource in resources.items():
                assert "Tags" in resource["Properties"], f"{stack_name}/{logical_id} has no tags"


def test_the_shared_stacks_carry_the_projects_tags_but_no_environment(synth: Synth) -> None:
    expected = {"Project": "mlops-studio", "Owner": "platform-team", "CostCenter": "ml-platform"}
    for stack_name, resource_type in ((REGISTRY, "AWS::ECR::Repository"), ("MlopsCi", "AWS::IAM::Role")):
        resources = synth.resources(stack_name, resource_type)
        assert resources, (stack_name, resource_type)
        for logical_id, resource in resources.items():
            tags = {tag["Key"]: tag["Value"] for tag in resource["Properties"]["Tags"]}
            assert tags == expected, f"{stack_name}/{logical_id}: {tags}"


# --- network --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "zones", "nat", "traffic", "retention"),
    [("dev", 2, 0, "REJECT", 14), ("staging", 2, 1, "ALL", 30), ("prod", 3, 3, "ALL", 90)],
)
def test_network_per_environment(synth: Synth, env: str, zones: int, nat: int, traffic: str, retention: int) -> None:
    template = synth.template(foundation(env))
    template.resource_count_is("AWS::EC2::Subnet", zones * 3)
    template.resource_count_is("AWS::EC2::NatGateway", nat)
    template.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": traffic, "ResourceType": "VPC"})
    template.has_resource_properties(
        "AWS::Logs::LogGroup",
        {
            "LogGroupName": f"/vpc/mlops-{env}/flow-logs",
            "RetentionInDays": retention,
            "KmsKeyId": {"Fn::GetAtt": [Match.string_like_regexp("^KeysLogs"), "Arn"]},
        },
    )
    subnets = synth.resources(foundation(env), "AWS::EC2::Subnet").values()
    assert {subnet["Properties"]["AvailabilityZone"] for subnet in subnets} == set(
        synth.configs[env].aws.availability_zones
    )
    tiers = [
        next(tag["Value"] for tag in subnet["Properties"]["Tags"] if tag["Key"] == "aws-cdk:subnet-name")
        for subnet in subnets
    ]
    assert sorted(set(tiers)) == ["isolated", "private", "public"]
    assert all(tiers.count(tier) == zones for tier in set(tiers))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_default_security_group_is_emptied_and_s3_has_a_gateway_endpoint(synth: Synth, env: str) -> None:
    template = synth.template(foundation(env))
    template.resource_count_is("Custom::VpcRestrictDefaultSG", 1)
    (gateway,) = [
        endpoint["Properties"]
        for endpoint in synth.resources(foundation(env), "AWS::EC2::VPCEndpoint").values()
        if endpoint["Properties"].get("VpcEndpointType") == "Gateway"
    ]
    service_name = gateway["ServiceName"]["Fn::Join"][1]
    assert service_name[0] == "com.amazonaws."
    assert service_name[-1] == ".s3", service_name


@pytest.mark.parametrize(("env", "interface_endpoints"), [("dev", 0), ("staging", 0), ("prod", 4)])
def test_interface_endpoints_only_where_configured(synth: Synth, env: str, interface_endpoints: int) -> None:
    endpoints = synth.resources(foundation(env), "AWS::EC2::VPCEndpoint").values()
    interface = [e for e in endpoints if e["Properties"].get("VpcEndpointType") == "Interface"]
    assert len(interface) == interface_endpoints
    if interface_endpoints:
        services = sorted(str(e["Properties"]["ServiceName"]) for e in interface)
        for service in ("ecr.api", "ecr.dkr", "logs", "secretsmanager"):
            assert any(service in name for name in services), f"no {service} endpoint in {services}"
        synth.template(foundation(env)).has_resource_properties(
            "AWS::EC2::SecurityGroup",
            {
                "GroupDescription": Match.string_like_regexp("Interface VPC endpoints"),
                "SecurityGroupIngress": [
                    {
                        "CidrIp": synth.configs[env].network.cidr,
                        "IpProtocol": "tcp",
                        "FromPort": 443,
                        "ToPort": 443,
                        "Description": Match.any_value(),
                    }
                ],
            },
        )


# --- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_customer_managed_keys_rotate_and_are_named(synth: Synth, env: str) -> None:
    keys = synth.resources(foundation(env), "AWS::KMS::Key")
    assert len(keys) == 5
    assert all(key["Properties"]["EnableKeyRotation"] is True for key in keys.values())
    aliases = sorted(a["Properties"]["AliasName"] for a in synth.resources(foundation(env), "AWS::KMS::Alias").values())
    assert aliases == [
        f"alias/mlops-{env}/{purpose}" for purpose in ("backup", "database", "logs", "messaging", "storage")
    ]


@pytest.mark.parametrize(("env", "policy"), [("dev", "Retain"), ("staging", "Retain"), ("prod", "Retain")])
def test_keys_follow_the_stateful_removal_policy(synth: Synth, env: str, policy: str) -> None:
    synth.template(foundation(env)).all_resources("AWS::KMS::Key", {"DeletionPolicy": policy})


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_log_key_admits_only_this_environments_log_groups(synth: Synth, env: str) -> None:
    """CloudWatch Logs may use the key for the environment's own log groups only (environments may share an
    account), and every encrypted log group of the environment is one of them."""
    (key,) = [
        key
        for key in synth.resources(foundation(env), "AWS::KMS::Key").values()
        if "CloudWatch log groups" in key["Properties"]["Description"]
    ]
    (statement,) = [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s.get("Principal") == {"Service": "logs.us-east-1.amazonaws.com"}
    ]
    arns = statement["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    patterns = [arn["Fn::Join"][1][-1].removeprefix(":log-group:") for arn in arns]
    assert patterns == [
        f"/ecs/mlops-{env}/*",
        f"/vpc/mlops-{env}/*",
        f"/aws/rds/instance/mlops-db-{env}/*",
        f"/aws/vendedlogs/states/mlops-{env}-*",
    ]
    names = [
        group["Properties"]["LogGroupName"]
        for stack in (foundation(env), application(env))
        for group in synth.resources(stack, "AWS::Logs::LogGroup").values()
        if "KmsKeyId" in group["Properties"]
    ]
    assert len(names) >= 7, names  # flow logs, two database logs, three services, the restart state machine
    for name in names:
        assert any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns), name


# --- database -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "instance_class", "multi_az", "retention", "protection", "deletion_policy"),
    [
        ("dev", "db.t4g.micro", False, 7, False, "Snapshot"),
        ("staging", "db.t3.small", False, 14, True, "Snapshot"),
        ("prod", "db.m6g.large", True, 30, True, "Retain"),
    ],
)
def test_database_per_environment(
    synth: Synth, env: str, instance_class: str, multi_az: bool, retention: int, protection: bool, deletion_policy: str
) -> None:
    synth.template(foundation(env)).has_resource(
        "AWS::RDS::DBInstance",
        {
            "DeletionPolicy": deletion_policy,
            "UpdateReplacePolicy": deletion_policy,
            "Properties": Match.object_like(
                {
                    "DBInstanceIdentifier": f"mlops-db-{env}",
                    "DBInstanceClass": instance_class,
                    "MultiAZ": multi_az,
                    "BackupRetentionPeriod": retention,
                    "DeletionProtection": protection,
                }
            ),
        },
    )


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_database_is_encrypted_private_and_ssl_only(synth: Synth, env: str) -> None:
    template = synth.template(foundation(env))
    database_key = {"Fn::GetAtt": [Match.string_like_regexp("^KeysDatabase"), "Arn"]}
    template.has_resource_properties(
        "AWS::RDS::DBInstance",
        {
            "Engine": "postgres",
            "EngineVersion": "17.6",
            "StorageEncrypted": True,
            "KmsKeyId": database_key,
            "PubliclyAccessible": False,
            "CopyTagsToSnapshot": True,
            "EnableCloudwatchLogsExports": ["postgresql", "upgrade"],
            "EnablePerformanceInsights": True,
            "PerformanceInsightsKMSKeyId": database_key,
            "ManageMasterUserPassword": True,
            "MasterUserSecret": {"KmsKeyId": database_key},
            "MasterUserPassword": Match.absent(),
            "Port": "5432",
        },
    )
    template.has_resource_properties(
        "AWS::RDS::DBParameterGroup", {"Family": "postgres17", "Parameters": {"rds.force_ssl": "1"}}
    )
    # subnet group over the isolated subnets only
    subnet_group = next(iter(synth.resources(foundation(env), "AWS::RDS::DBSubnetGroup").values()))
    isolated = {
        logical_id
        for logical_id, subnet in synth.resources(foundation(env), "AWS::EC2::Subnet").items()
        if {"Key": "aws-cdk:subnet-type", "Value": "Isolated"} in subnet["Properties"]["Tags"]
    }
    assert {ref["Ref"] for ref in subnet_group["Properties"]["SubnetIds"]} == isolated


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_database_logs_go_to_encrypted_groups_made_before_the_instance(synth: Synth, env: str) -> None:
    groups = {
        resource["Properties"]["LogGroupName"]: logical_id
        for logical_id, resource in synth.resources(foundation(env), "AWS::Logs::LogGroup").items()
        if str(resource["Properties"].get("LogGroupName", "")).startswith("/aws/rds/")
    }
    assert set(groups) == {f"/aws/rds/instance/mlops-db-{env}/postgresql", f"/aws/rds/instance/mlops-db-{env}/upgrade"}
    instance = next(iter(synth.resources(foundation(env), "AWS::RDS::DBInstance").values()))
    assert set(groups.values()) <= set(instance["DependsOn"])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_database_security_group_has_no_ingress_until_granted(synth: Synth, env: str) -> None:
    groups = [
        group
        for group in synth.resources(foundation(env), "AWS::EC2::SecurityGroup").values()
        if "PostgreSQL" in group["Properties"]["GroupDescription"]
    ]
    assert len(groups) == 1
    assert "SecurityGroupIngress" not in groups[0]["Properties"]
    synth.template(foundation(env)).resource_count_is("AWS::EC2::SecurityGroupIngress", 0)


def test_allow_from_opens_5432_to_that_peer_only() -> None:
    from aws_cdk import App, Duration, RemovalPolicy, Stack
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_logs as logs
    from aws_cdk.assertions import Template

    from mlops_infra.constructs import Database

    stack = Stack(App(builtin_cloud_formation_validation=False), "AllowFrom", env={"region": "eu-west-1"})
    vpc = ec2.Vpc(
        stack,
        "Vpc",
        availability_zones=["eu-west-1a", "eu-west-1b"],
        subnet_configuration=[
            ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC),
            ec2.SubnetConfiguration(name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
        ],
    )
    key = kms.Key(stack, "Key")
    database = Database(
        stack,
        "Db",
        vpc=vpc,
        instance_identifier="db",
        engine_version="17.6",
        instance_type=ec2.InstanceType("t3.micro"),
        allocated_storage_gib=20,
        max_allocated_storage_gib=None,
        multi_az=False,
        backup_retention=Duration.days(1),
        deletion_protection=False,
        removal_policy=RemovalPolicy.DESTROY,
        encryption_key=key,
        log_encryption_key=key,
        log_retention=logs.RetentionDays.ONE_DAY,
        performance_insights=False,
    )
    peer = ec2.SecurityGroup(stack, "Peer", vpc=vpc)
    database.allow_from(peer, "backend")
    template = Template.from_stack(stack)
    ingress = template.find_resources("AWS::EC2::SecurityGroupIngress")
    assert len(ingress) == 1
    rule: dict[str, Any] = next(iter(ingress.values()))["Properties"]
    assert (rule["FromPort"], rule["ToPort"], rule["IpProtocol"]) == (5432, 5432, "tcp")
    assert rule["SourceSecurityGroupId"]["Fn::GetAtt"][0].startswith("Peer")
    assert rule["GroupId"]["Fn::GetAtt"][0].startswith("DbSecurityGroup")
    assert "CidrIp" not in rule


# --- container registry ---------------------------------------------------------------------


def test_repositories_are_shared_by_the_environments(synth: Synth) -> None:
    """ECR names are unique per account and region: one registry stack, none in an environment's foundation."""
    for env in ENVIRONMENTS:
        assert not synth.resources(foundation(env), "AWS::ECR::Repository"), env
        assert REGISTRY in {stack.stack_name for stack in synth.environments[env].application.dependencies}
    template = synth.template(REGISTRY)
    repositories = synth.resources(REGISTRY, "AWS::ECR::Repository")
    assert sorted(r["Properties"]["RepositoryName"] for r in repositories.values()) == [
        "mlops-backend",
        "mlops-frontend",
        "mlops-inference",
        "mlops-mlflow",
    ]
    # The logical IDs they had in the foundation stacks (tests/stateful_resources.json): `cdk import` can adopt them.
    assert sorted(repositories) == [
        "RegistryMlopsBackendF442E463",
        "RegistryMlopsFrontendDE482192",
        "RegistryMlopsInference10BAB304",
        "RegistryMlopsMlflowDC4888EF",
    ]
    template.all_resources(
        "AWS::ECR::Repository",
        {
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": Match.object_like(
                {
                    "ImageTagMutability": "IMMUTABLE",
                    "ImageScanningConfiguration": {"ScanOnPush": True},
                    "LifecyclePolicy": {"LifecyclePolicyText": Match.any_value()},
                }
            ),
        },
    )
    for repository in repositories.values():
        rules = json.loads(repository["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
        selections = [(rule["rulePriority"], rule["selection"]) for rule in rules]
        # The images the promotions tag (prod-, staging-) come first: no later rule can expire them.
        keep_ten = {"countType": "imageCountMoreThan", "countNumber": 10}
        assert selections == [
            (1, {"tagStatus": "tagged", "tagPrefixList": ["prod-"], **keep_ten}),
            (2, {"tagStatus": "tagged", "tagPrefixList": ["staging-"], **keep_ten}),
            (3, {"tagStatus": "untagged", "countType": "sinceImagePushed", "countNumber": 7, "countUnit": "days"}),
            (4, {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 100}),
        ]
    assert {synth.configs[env].registry.max_image_count for env in ENVIRONMENTS} == {100}
    # Protected as soon as one environment sharing it is (staging, prod).
    (registry,) = {stack for env in ENVIRONMENTS for stack in synth.environments[env].application.dependencies
                   if stack.stack_name == REGISTRY}  # fmt: skip
    assert registry.termination_protection is True


def test_the_registry_does_not_depend_on_the_selected_environments(synth: Synth) -> None:
    """`cdk deploy MlopsDev -c environments=dev` must not change the repositories prod pulls from."""
    from aws_cdk import App
    from aws_cdk.assertions import Template

    from mlops_infra.cdk_app import project_context
    from mlops_infra.config import load_all
    from mlops_infra.stacks import build_registries

    every = load_all()

    def registry(selected: list[Any]) -> tuple[Any, ...]:
        (stack,) = build_registries(App(context=project_context()), selected, every=every).values()
        template = Template.from_stack(stack).to_json()  # alone: without the exports the app's stacks add
        return template["Description"], template["Resources"], stack.termination_protection, stack.stack_name

    dev_only = registry([config for config in every if config.name == "dev"])
    session = synth.templates[REGISTRY]
    assert dev_only == registry(every) == (session["Description"], session["Resources"], True, REGISTRY)


# --- artifact storage -----------------------------------------------------------------------


@pytest.mark.parametrize(("env", "expiry"), [("dev", 90), ("staging", 180), ("prod", 365)])
def test_models_bucket(synth: Synth, env: str, expiry: int) -> None:
    template = synth.template(foundation(env))
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": f"example-mlops-models-{env}",
            "VersioningConfiguration": {"Status": "Enabled"},
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {
                        "BucketKeyEnabled": True,
                        "ServerSideEncryptionByDefault": {
                            "SSEAlgorithm": "aws:kms",
                            "KMSMasterKeyID": {"Fn::GetAtt": [Match.string_like_regexp("^KeysStorage"), "Arn"]},
                        },
                    }
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LoggingConfiguration": {
                "DestinationBucketName": {"Ref": Match.string_like_regexp("^ModelStorageAccessLogs")},
                "LogFilePrefix": f"example-mlops-models-{env}/",
            },
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "NoncurrentVersionTransitions": [
                                    {"StorageClass": "STANDARD_IA", "TransitionInDays": 30}
                                ],
                                "NoncurrentVersionExpiration": {"NoncurrentDays": expiry},
                            }
                        ),
                        Match.object_like({"AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}),
                    ]
                )
            },
        },
    )


@pytest.mark.parametrize(
    "stack", ["MlopsDevFoundation", "MlopsStagingFoundation", "MlopsProdFoundation", "MlopsProdDr"]
)
def test_every_bucket_denies_plain_http(synth: Synth, stack: str) -> None:
    buckets = synth.resources(stack, "AWS::S3::Bucket")
    policies = synth.resources(stack, "AWS::S3::BucketPolicy").values()
    tls_only = {
        policy["Properties"]["Bucket"]["Ref"]
        for policy in policies
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    }
    assert tls_only == set(buckets)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_replication_only_in_prod(synth: Synth, env: str) -> None:
    buckets = synth.resources(foundation(env), "AWS::S3::Bucket").values()
    replicated = [b for b in buckets if "ReplicationConfiguration" in b["Properties"]]
    assert len(replicated) == (1 if env == "prod" else 0)


def test_prod_models_replicate_encrypted_to_the_dr_region(synth: Synth) -> None:
    synth.template("MlopsProdFoundation").has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": "example-mlops-models-prod",
            "ReplicationConfiguration": {
                "Role": {"Fn::GetAtt": [Match.string_like_regexp("ReplicationRole"), "Arn"]},
                "Rules": [
                    Match.object_like(
                        {
                            "Status": "Enabled",
                            "DeleteMarkerReplication": {"Status": "Enabled"},
                            "SourceSelectionCriteria": {"SseKmsEncryptedObjects": {"Status": "Enabled"}},
                            "Destination": {
                                "Bucket": "arn:aws:s3:::example-mlops-models-prod-replica",
                                "EncryptionConfiguration": {
                                    "ReplicaKmsKeyID": {
                                        "Fn::Join": [
                                            "",
                                            [
                                                "arn:aws:kms:us-west-2:",
                                                {"Ref": "AWS::AccountId"},
                                                ":alias/mlops-prod/storage",
                                            ],
                                        ]
                                    }
                                },
                            },
                        }
                    )
                ],
            },
        },
    )
    dr = synth.template("MlopsProdDr")
    dr.has_resource_properties(
        "AWS::S3::Bucket",
        {"BucketName": "example-mlops-models-prod-replica", "VersioningConfiguration": {"Status": "Enabled"}},
    )
    dr.has_resource_properties("AWS::KMS::Alias", {"AliasName": "alias/mlops-prod/storage"})
    dr.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_replication_role_may_use_only_the_aliased_replica_key(synth: Synth) -> None:
    synth.template("MlopsProdFoundation").has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        {
                            "Action": ["kms:Encrypt", "kms:GenerateDataKey"],
                            "Effect": "Allow",
                            "Resource": Match.any_value(),
                            "Condition": {
                                "ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/mlops-prod/storage"}
                            },
                        }
                    ]
                )
            }
        },
    )


# --- application stack ----------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_cluster_with_container_insights(synth: Synth, env: str) -> None:
    synth.template(f"Mlops{env.capitalize()}").has_resource_properties(
        "AWS::ECS::Cluster",
        {"ClusterName": f"mlops-{env}", "ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}]},
    )


# --- after hours: the database and NAT instances stop with the services (dev) ---------------------------------

# name -> (API at 18:00, API at 07:00, input key, what the role may do); New York time, Monday to Friday.
AFTER_HOURS = {
    "mlops-db-dev": ("rds:stopDBInstance", "rds:startDBInstance", "DbInstanceIdentifier", "rds:%sDBInstance"),
    "mlops-dev-nat-1": ("ec2:stopInstances", "ec2:startInstances", "InstanceIds", "ec2:%sInstances"),
}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_after_hours_schedules(synth: Synth, env: str) -> None:
    schedules = synth.resources(foundation(env), "AWS::Scheduler::Schedule")
    if env != "dev":
        assert schedules == {}
        return
    by_name = {resource["Properties"]["Name"]: resource["Properties"] for resource in schedules.values()}
    assert set(by_name) == {f"{name}-{verb}" for name in AFTER_HOURS for verb in ("stop", "start")}
    roles = synth.resources(foundation(env), "AWS::IAM::Role")
    policies = synth.resources(foundation(env), "AWS::IAM::Policy")
    resources: dict[str, Any] = {}  # name -> the one resource its role may stop and start
    for name, (stop, start, key, permission) in AFTER_HOURS.items():
        for verb, api, hour in (("stop", stop, 18), ("start", start, 7)):
            schedule = by_name[f"{name}-{verb}"]
            assert schedule["ScheduleExpression"] == f"cron(0 {hour} ? * MON-FRI *)"
            assert schedule["ScheduleExpressionTimezone"] == "America/New_York"
            assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
            assert schedule["Target"]["Arn"] == f"arn:aws:scheduler:::aws-sdk:{api}"
            assert f'"{key}":' in str(schedule["Target"]["Input"])
            role_id = schedule["Target"]["RoleArn"]["Fn::GetAtt"][0]
            trust = roles[role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
            assert [statement["Principal"] for statement in trust] == [{"Service": "scheduler.amazonaws.com"}]
            assert trust[0]["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
            (policy,) = [p for p in policies.values() if p["Properties"]["Roles"] == [{"Ref": role_id}]]
            (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
            assert sorted(statement["Action"]) == [permission % "Start", permission % "Stop"]
            assert "*" not in str(statement["Resource"]), "only the one instance"
            resources[name] = statement["Resource"]["Fn::Join"][1]
    (database,) = synth.resources(foundation(env), "AWS::RDS::DBInstance")
    assert by_name["mlops-db-dev-stop"]["Target"]["Input"] == '{"DbInstanceIdentifier":"mlops-db-dev"}'
    assert {"Ref": database} in resources["mlops-db-dev"]
    (nat,) = [
        lid
        for lid, resource in synth.resources(foundation(env), "AWS::EC2::Instance").items()
        if resource["Properties"].get("SourceDestCheck") is False
    ]
    assert {"Ref": nat} in by_name["mlops-dev-nat-1-stop"]["Target"]["Input"]["Fn::Join"][1]
    assert {"Ref": nat} in resources["mlops-dev-nat-1"]
