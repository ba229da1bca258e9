"""`Mlops<Env>`: the environment's entry point and home of its services.

`npx cdk deploy Mlops<Env>` deploys this stack and, through its dependencies, the
foundation (and DR) stacks first.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ecs as ecs
from constructs import Construct

from mlops_infra import names
from mlops_infra.config import EnvironmentConfig
from mlops_infra.stacks.foundation import FoundationStack


class ApplicationStack(Stack):
    """The ECS cluster `mlops-<env>` with Container Insights, in the foundation's VPC."""

    def __init__(
        self, scope: Construct, id: str, *, config: EnvironmentConfig, foundation: FoundationStack, **kwargs: Any
    ) -> None:
        super().__init__(scope, id, **kwargs)
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            cluster_name=names.cluster_name(config.name),
            vpc=foundation.network.vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )
