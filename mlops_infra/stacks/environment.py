"""Composes the stacks of one environment: `Mlops<Env>` and the stacks it depends on."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Stack, Tags
from constructs import Construct

from mlops_infra.config import EnvironmentConfig
from mlops_infra.stacks.application import ApplicationStack
from mlops_infra.stacks.common import aws_environment
from mlops_infra.stacks.disaster_recovery import DisasterRecoveryStack
from mlops_infra.stacks.foundation import FoundationStack


@dataclass(frozen=True)
class EnvironmentStacks:
    """The stacks of one environment; `application` is the one users deploy by name."""

    application: ApplicationStack
    foundation: FoundationStack
    disaster_recovery: DisasterRecoveryStack | None

    @property
    def all(self) -> list[Stack]:
        stacks: list[Stack] = [self.application, self.foundation]
        if self.disaster_recovery is not None:
            stacks.append(self.disaster_recovery)
        return stacks


def stack_name(config: EnvironmentConfig, suffix: str = "") -> str:
    return f"Mlops{config.title}{suffix}"


def build_environment(scope: Construct, config: EnvironmentConfig) -> EnvironmentStacks:
    """Create every stack of one environment, tagged, with its dependencies declared."""
    protected = config.termination_protection
    disaster_recovery = None
    if config.storage.replication and config.aws.dr_region:
        disaster_recovery = DisasterRecoveryStack(
            scope,
            stack_name(config, "Dr"),
            config=config,
            env=aws_environment(config, config.aws.dr_region),
            termination_protection=protected,
            description=f"MLOps Studio {config.name}: disaster-recovery copies in {config.aws.dr_region}",
        )
    foundation = FoundationStack(
        scope,
        stack_name(config, "Foundation"),
        config=config,
        env=aws_environment(config),
        termination_protection=protected,
        description=f"MLOps Studio {config.name}: network, keys, database, registries and buckets",
    )
    if disaster_recovery is not None:
        # The replication rule names the replica bucket, so it must exist first.
        foundation.add_stack_dependency(disaster_recovery, "models bucket replicates into the DR-region bucket")
    application = ApplicationStack(
        scope,
        stack_name(config),
        config=config,
        foundation=foundation,
        env=aws_environment(config),
        description=f"MLOps Studio {config.name}: services (deploy this stack; it pulls in its dependencies)",
    )
    application.add_stack_dependency(foundation, "services run in the foundation's network and data")
    stacks = EnvironmentStacks(application=application, foundation=foundation, disaster_recovery=disaster_recovery)
    for stack in stacks.all:
        _tag(stack, config)
    return stacks


def _tag(stack: Stack, config: EnvironmentConfig) -> None:
    tags = {
        "Project": config.tags.project,
        "Environment": config.name,
        "Owner": config.tags.owner,
        "CostCenter": config.tags.cost_center,
        **config.tags.extra,
    }
    for key, value in tags.items():
        Tags.of(stack).add(key, value)
