"""The deployable stacks of one environment, composed from `mlops_infra.constructs`."""

from mlops_infra.stacks.application import ApplicationStack
from mlops_infra.stacks.ci import CI_STACK_NAME, CiStack
from mlops_infra.stacks.disaster_recovery import DisasterRecoveryStack
from mlops_infra.stacks.environment import (
    EnvironmentStacks,
    build_ci,
    build_environment,
    build_registries,
    stack_name,
)
from mlops_infra.stacks.foundation import FoundationStack
from mlops_infra.stacks.registry import RegistryStack, registry_stack_name

__all__ = [
    "CI_STACK_NAME",
    "ApplicationStack",
    "CiStack",
    "DisasterRecoveryStack",
    "EnvironmentStacks",
    "FoundationStack",
    "RegistryStack",
    "build_ci",
    "build_environment",
    "build_registries",
    "registry_stack_name",
    "stack_name",
]
