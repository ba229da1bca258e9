"""cdk-nag wiring and every acknowledgement of a finding, each with its reason, in one place.

An acknowledgement sits on the narrowest construct that carries the finding and is made
only where the finding occurs (single-AZ, say, only in configs that choose it), so a new
resource with the same problem still fails the synth.
"""

from __future__ import annotations

import json

from aws_cdk import Acknowledgment, App, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from mlops_infra.config import EnvironmentConfig
from mlops_infra.constructs import (
    ArtifactStorage,
    Database,
    FrontendDistribution,
    HttpService,
    MlflowServer,
    Network,
)
from mlops_infra.stacks import CiStack, EnvironmentStacks


def enable_checks(app: App) -> None:
    """Run the AWS Solutions rules on every stack at synth; an unacknowledged finding stops the synth."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))


def acknowledge(stacks: EnvironmentStacks, config: EnvironmentConfig) -> None:
    """Acknowledge the findings this design accepts on purpose, environment by environment."""
    _database(stacks.foundation.database, config)
    _nat_instances(stacks.foundation.network, config)
    _replication(stacks.foundation.storage)
    _ack(
        stacks.foundation.backup.selection.node.find_child("Role"),
        "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup]",
        "AWS Backup assumes this role to snapshot the database; AWS maintains this service-role policy for exactly "
        "that, following new resource types and API changes.",
    )
    application = stacks.application
    for service in application.services.values():
        _service(service)
    _mlflow(application.mlflow, config)
    _ack(
        _default_policy(application.restart_on_rotation.state_machine.role),
        "IAM5[Resource::*]",
        "Step Functions' log delivery (logs:*LogDelivery, DescribeLogGroups, resource policies) and X-Ray tracing "
        "APIs have no resource-level permissions; the state machine's only other right is ecs:UpdateService on the "
        "two services that read the database secret.",
    )
    _ack(
        _default_policy(application.inference.task_role),
        "IAM5[Resource::*]",
        "cloudwatch:PutMetricData has no resource-level permissions; the condition cloudwatch:namespace = MLOps "
        "limits the inference task to the platform's own metrics (InferenceLatency).",
    )
    _frontend(application.frontend, config)
    if application.cache is not None:
        _ack(
            application.cache.replication_group,
            "AEC6",
            "Clients reach the cache only from the backend and inference security groups, over TLS (transit "
            "encryption required); the cache holds derived features, no credentials or personal data.",
        )
        if config.cache.replicas == 0:
            _ack(
                application.cache.replication_group,
                "AEC4",
                f"{config.name} runs the feature cache as a single node (cache.replicas = 0): it holds derived "
                "features the services recompute on a miss; production configs must set replicas >= 1 (multi-AZ).",
            )
    if application.frontend.bucket is None:
        _ack(
            application.edge_logs,
            "S1",
            "This bucket receives the load balancer's and CloudFront's access logs; logging its own access would need "
            "yet another log bucket. (With frontend.hosting = s3 it is the site bucket's log target and exempt.)",
        )


def acknowledge_ci(ci: CiStack) -> None:
    """The CI roles' only wildcards: calls that have no resource-level permissions, or are read-only."""
    for role in ci.roles.deploy_roles.values():
        policy = _default_policy(role)
        _ack(
            policy,
            "IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource-level permissions; ecs:DescribeServices, "
            "cloudwatch:DescribeAlarms and cloudformation:DescribeStacks are read-only calls the workflows make to "
            "wait for a deployment and watch its alarms. Everything that changes resources goes through the CDK "
            "bootstrap roles.",
        )


def _ack(scope: IConstruct, rule: str, reason: str) -> None:
    Validations.of(scope).acknowledge(Acknowledgment(id=f"AwsSolutions::AwsSolutions-{rule}", reason=reason))


def _default_policy(role: IConstruct) -> IConstruct:
    policy = role.node.find_child("DefaultPolicy").node.default_child
    assert policy is not None
    return policy


def _service(service: HttpService) -> None:
    _ack(
        service.task_definition,
        "ECS2",
        "The plain environment variables are non-secret settings (hosts, ports, URIs, feature switches); every "
        "credential is injected as an ECS secret from Secrets Manager.",
    )
    _ack(
        _default_policy(service.task_definition.obtain_execution_role()),
        "IAM5[Resource::*]",
        "ecr:GetAuthorizationToken has no resource-level permissions (AWS requires Resource *); image pulls "
        "themselves are limited to the service's repository.",
    )
    alternate_role = service.service.node.try_find_child("AlternateRole")
    if alternate_role is not None:
        _ack(
            alternate_role,
            "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonECSInfrastructureRolePolicyForLoadBalancers]",
            "ECS itself assumes this role to shift traffic between the blue and green target groups during canary "
            "and blue/green deployments; the AWS-maintained policy covers exactly those load-balancer calls.",
        )


def _mlflow(mlflow: MlflowServer, config: EnvironmentConfig) -> None:
    policy = _default_policy(mlflow.service.task_role)
    _ack(
        policy,
        f"IAM5[Resource::{_as_reported(policy, mlflow.artifacts_objects_arn)}]",
        "MLflow stores run artifacts and model files under its own prefix of the models bucket; object names are "
        "generated at run time, so the grant covers that prefix and no other.",
    )
    if mlflow.admin_secret is not None:
        _ack(
            mlflow.admin_secret,
            "SMG4",
            f"{config.name}: the MLflow basic-auth admin password lives in MLflow's auth database too; rotating it "
            "means calling MLflow's user API, which a Secrets Manager rotation Lambda cannot do without credentials "
            "to MLflow; rotate it with MLflow's API and update the secret.",
        )


def _frontend(frontend: FrontendDistribution, config: EnvironmentConfig) -> None:
    distribution = frontend.distribution
    _ack(
        distribution,
        "CFR1",
        "MLOps Studio serves its users wherever they are; no country is excluded by policy.",
    )
    if config.frontend.certificate_arn is None:
        _ack(
            distribution,
            "CFR4",
            f"{config.name} has no custom domain (frontend.domain_name): the default *.cloudfront.net certificate "
            "cannot be limited to TLS 1.2; with a domain and certificate in config, TLSv1.2_2021 applies.",
        )
    if config.frontend.web_acl_arn is None:
        _ack(
            distribution,
            "CFR2",
            f"{config.name} has no WAF web ACL configured (frontend.web_acl_arn); the API origin is an internal "
            "load balancer reachable only through CloudFront. Set a web ACL in config to attach one.",
        )


def _database(database: Database, config: EnvironmentConfig) -> None:
    instance = database.instance
    _ack(
        instance,
        "RDS11",
        "PostgreSQL keeps its default port 5432: clients (MLflow, the backend) expect it, and the instance sits in "
        "isolated subnets behind a security group that only named service security groups may enter.",
    )
    if not config.database.multi_az:
        _ack(
            instance,
            "RDS3",
            f"{config.name} is not production (production = false): a single-AZ instance halves its cost; "
            "config rules force multi_az = true wherever production = true.",
        )
    if not config.database.deletion_protection:
        _ack(
            instance,
            "RDS10",
            f"{config.name} is a disposable environment: deletion protection is off so it can be torn down; "
            "removal_policy still takes a final snapshot, and production configs must enable protection.",
        )


def _nat_instances(network: Network, config: EnvironmentConfig) -> None:
    """Only where network.nat = "instance" (never in production configs): each NAT instance itself."""
    for instance in network.nat_instances:
        resource = instance.node.default_child
        assert resource is not None
        _ack(
            resource,
            "EC28",
            f"{config.name} routes its private subnets through a NAT instance (network.nat = instance) to save the "
            "NAT gateway's cost; the 5-minute basic metrics (CPUUtilization, NetworkIn/Out, StatusCheckFailed) "
            "suffice to watch it, and 1-minute detailed monitoring would add to the cost being saved.",
        )
        _ack(
            resource,
            "EC29",
            f"{config.name} is a disposable environment: its NAT instance holds no state (iptables set up from "
            "user data at boot) and must go away with the stack, so termination protection stays off; a terminated "
            "instance is recreated by redeploying. Production configs must use NAT gateways (network.nat = gateway).",
        )


def _replication(storage: ArtifactStorage) -> None:
    role = storage.replication_role
    if role is None:
        return
    policy = _default_policy(role)
    for resource in storage.replication_wildcard_resources:
        _ack(
            policy,
            f"IAM5[Resource::{_as_reported(policy, resource)}]",
            "S3 replication copies every object version of the models bucket into the replica bucket, so it needs "
            "all object keys of both (not known in advance), and encrypts with the DR-region key whose ID is not "
            "known in this region: only the key carrying the replica alias (condition kms:ResourceAliases) qualifies.",
        )


def _as_reported(scope: IConstruct, value: str) -> str:
    """A resource string the way cdk-nag prints it: references as <LogicalId> or <LogicalId.Attribute>, imports
    from another stack as the export's name, other intrinsics as compact JSON."""
    resolved = Stack.of(scope).resolve(value)
    parts = resolved["Fn::Join"][1] if isinstance(resolved, dict) and "Fn::Join" in resolved else [resolved]
    rendered = []
    for part in parts:
        if isinstance(part, str):
            rendered.append(part)
        elif "Ref" in part:
            rendered.append(f"<{part['Ref']}>")
        elif "Fn::GetAtt" in part:
            rendered.append(f"<{'.'.join(part['Fn::GetAtt'])}>")
        elif "Fn::ImportValue" in part:
            rendered.append(str(part["Fn::ImportValue"]))
        else:
            rendered.append(json.dumps(part, separators=(",", ":")))
    return "".join(rendered)
