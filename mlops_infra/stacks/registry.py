"""`MlopsRegistry`: the ECR repositories every environment of an account and region pulls its images from.

ECR repository names are unique per account and region, and the deployment guide builds an image once and
promotes the same tag from dev to staging and production: so the repositories belong to no single environment.
One such stack serves the environments of an account (like `MlopsCi`) in one region: `MlopsRegistry<Region>`, named
after its region so that adding an environment in another region never renames it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Stack
from constructs import Construct

from mlops_infra import names
from mlops_infra.config import ConfigError, EnvironmentConfig
from mlops_infra.constructs import ContainerRegistry


def registry_stack_name(region: str) -> str:
    """`MlopsRegistryUsEast1` for us-east-1."""
    return "MlopsRegistry" + "".join(part.capitalize() for part in region.split("-"))


class RegistryStack(Stack):
    """The platform's repositories (`mlops-backend`, `mlops-frontend`, `mlops-inference`, `mlops-mlflow`)."""

    def __init__(self, scope: Construct, id: str, *, configs: Sequence[EnvironmentConfig], **kwargs: Any) -> None:
        super().__init__(scope, id, **kwargs)
        settings = {config.registry for config in configs}
        if len(settings) != 1:
            shown = "; ".join(
                f"{config.name}: max_image_count = {config.registry.max_image_count}, "
                f"untagged_expiry_days = {config.registry.untagged_expiry_days}"
                for config in configs
            )
            raise ConfigError(
                [
                    f"[registry] differs between environments that share the repositories ({shown}): one "
                    "lifecycle serves them all, so set the same values (keep enough images for the oldest tag "
                    "any environment runs)"
                ]
            )
        registry = settings.pop()
        # The construct ID "Registry" keeps the repositories' logical IDs of their former home, the foundation stacks.
        self.registry = ContainerRegistry(
            self,
            "Registry",
            repository_names=names.REPOSITORY_NAMES,
            max_image_count=registry.max_image_count,
            untagged_expiry_days=registry.untagged_expiry_days,
            # Dev pushes three images per merge: without this, the count rule would expire the image staging or
            # production runs after enough merges, and their next task (scale-out, restart) could not start.
            protected_tag_prefixes=dict.fromkeys(names.PROMOTED_TAG_PREFIXES.values(), names.PROMOTED_IMAGES_KEPT),
        )
