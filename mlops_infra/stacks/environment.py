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
from mlops_infra.stacks.registry import RegistryStack, registry_stack_name


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


def build_environment(scope: Construct, config: EnvironmentConfig, *, registry: RegistryStack) -> EnvironmentStacks:
    """Create every stack of one environment, tagged, with its dependencies declared; its images come from
    `registry` (shared by the environments of its account and region)."""
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
        description=f"MLOps Studio {config.name}: network, keys, database and buckets",
    )
    if disaster_recovery is not None:
        # The replication rule and the backup copy rule name the DR-region bucket and vault: they must exist first.
        foundation.add_stack_dependency(disaster_recovery, "replication and backup copies go to the DR region")
    application = ApplicationStack(
        scope,
        stack_name(config),
        config=config,
        foundation=foundation,
        registry=registry.registry,
        env=aws_environment(config),
        description=f"MLOps Studio {config.name}: services (deploy this stack; it pulls in its dependencies)",
    )
    application.add_stack_dependency(foundation, "services run in the foundation's network and data")
    application.add_stack_dependency(registry, "services pull their images from the registry's repositories")
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


def _one_account(configs: Sequence[EnvironmentConfig], stack: str) -> None:
    accounts = {config.aws.account for config in configs}
    if len(accounts) != 1:
        shown = ", ".join(sorted(account or "unset" for account in accounts))
        raise ConfigError(
            [
                f"aws.account differs between environments ({shown}): {stack} serves one account; "
                "synthesize it per account with -c environments=<the environments of that account>"
            ]
        )


def _tag_shared(stack: Stack, first: EnvironmentConfig) -> None:
    """A stack shared by environments: the project's tags, no `Environment`."""
    for key, value in {
        "Project": first.tags.project,
        "Owner": first.tags.owner,
        "CostCenter": first.tags.cost_center,
    }.items():
        Tags.of(stack).add(key, value)


def build_registries(
    scope: Construct, configs: Sequence[EnvironmentConfig], *, every: Sequence[EnvironmentConfig]
) -> dict[str, RegistryStack]:
    """Region -> the registry stack (`MlopsRegistry<Region>`) the selected `configs` pull from.

    Each is built from `every` environment of its account and region, selected or not, so that a synth of one
    environment (`-c environments=dev`) makes the same registry template as a synth of all."""
    _one_account(configs, "MlopsRegistry")
    wanted = {(config.aws.account, config.aws.region) for config in configs}
    registries = {}
    for account, region in sorted(wanted, key=lambda key: key[1]):
        sharing = [config for config in every if (config.aws.account, config.aws.region) == (account, region)]
        stack = RegistryStack(
            scope,
            registry_stack_name(region),
            configs=sharing,
            env=aws_environment(sharing[0]),
            termination_protection=True,  # every environment of the account and region pulls from it
            description=f"MLOps Studio container registry in {region}: the repositories its environments pull from",
        )
        _tag_shared(stack, sharing[0])
        registries[region] = stack
    return registries


def build_ci(scope: Construct, configs: Sequence[EnvironmentConfig]) -> CiStack:
    """`MlopsCi` for the environments of one account (deploy it once per account)."""
    _one_account(configs, CI_STACK_NAME)
    first = configs[0]
    stack = CiStack(
        scope,
        CI_STACK_NAME,
        configs=configs,
        env=aws_environment(first),
        termination_protection=any(config.production for config in configs),
        description="MLOps Studio CI: GitHub OIDC provider, pull-request diff role, deploy role per environment",
    )
    _tag_shared(stack, first)
    return stack
