"""Composes the stacks of one environment: `Mlops<Env>` and the stacks it depends on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Stack, Tags
from constructs import Construct

from mlops_infra.config import ConfigError, EnvironmentConfig
from mlops_infra.stacks.application import ApplicationStack
from mlops_infra.stacks.ci import CI_STACK_NAME, CiStack
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
    if config.has_dr_region_stack and config.aws.dr_region:
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
        # The replication rule and the backup copy rule name the DR-region bucket and vault: they must exist first.
        foundation.add_stack_dependency(disaster_recovery, "replication and backup copies go to the DR region")
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


def build_ci(scope: Construct, configs: Sequence[EnvironmentConfig]) -> CiStack:
    """`MlopsCi` for the environments of one account (deploy it once per account)."""
    accounts = {config.aws.account for config in configs}
    if len(accounts) != 1:
        shown = ", ".join(sorted(str(account) for account in accounts))
        raise ConfigError(
            [
                f"aws.account differs between environments ({shown}): MlopsCi serves one account; "
                "synthesize it per account with -c environments=<the environments of that account>"
            ]
        )
    first = configs[0]
    stack = CiStack(
        scope,
        CI_STACK_NAME,
        configs=configs,
        env=aws_environment(first),
        termination_protection=any(config.production for config in configs),
        description="MLOps Studio CI: GitHub OIDC provider, pull-request diff role, deploy role per environment",
    )
    for key, value in {
        "Project": first.tags.project,
        "Owner": first.tags.owner,
        "CostCenter": first.tags.cost_center,
    }.items():
        Tags.of(stack).add(key, value)
    return stack
