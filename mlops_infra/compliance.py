"""cdk-nag wiring and every acknowledgement of a finding, each with its reason, in one place.

An acknowledgement sits on the narrowest construct that carries the finding and is made
only where the finding occurs (single-AZ, say, only in configs that choose it), so a new
resource with the same problem still fails the synth.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from mlops_infra.config import EnvironmentConfig
from mlops_infra.constructs import ArtifactStorage, Database
from mlops_infra.stacks import EnvironmentStacks


def enable_checks(app: App) -> None:
    """Run the AWS Solutions rules on every stack at synth; an unacknowledged finding stops the synth."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))


def acknowledge(stacks: EnvironmentStacks, config: EnvironmentConfig) -> None:
    """Acknowledge the findings this design accepts on purpose, environment by environment."""
    _database(stacks.foundation.database, config)
    _replication(stacks.foundation.storage)


def _ack(scope: IConstruct, rule: str, reason: str) -> None:
    Validations.of(scope).acknowledge(Acknowledgment(id=f"AwsSolutions::AwsSolutions-{rule}", reason=reason))


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


def _replication(storage: ArtifactStorage) -> None:
    role = storage.replication_role
    if role is None:
        return
    policy = role.node.find_child("DefaultPolicy").node.default_child
    assert policy is not None
    for resource in storage.replication_wildcard_resources:
        _ack(
            policy,
            f"IAM5[Resource::{_as_reported(policy, resource)}]",
            "S3 replication copies every object version of the models bucket into the replica bucket, so it needs "
            "all object keys of both (not known in advance), and encrypts with the DR-region key whose ID is not "
            "known in this region: only the key carrying the replica alias (condition kms:ResourceAliases) qualifies.",
        )


def _as_reported(scope: IConstruct, value: str) -> str:
    """A resource string the way cdk-nag prints it: references as <LogicalId> or <LogicalId.Attribute>."""
    resolved = Stack.of(scope).resolve(value)
    parts = resolved["Fn::Join"][1] if isinstance(resolved, dict) else [resolved]
    rendered = []
    for part in parts:
        if isinstance(part, str):
            rendered.append(part)
        elif "Ref" in part:
            rendered.append(f"<{part['Ref']}>")
        else:
            rendered.append(f"<{'.'.join(part['Fn::GetAtt'])}>")
    return "".join(rendered)
