"""ECR repositories for the platform's images: immutable tags, scanned on push, retained."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ecr as ecr
from constructs import Construct


class ContainerRegistry(Construct):
    """One repository per name; `.repositories[name]` gives each to the services that pull from it."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        repository_names: Sequence[str],
        max_image_count: int,
        untagged_expiry_days: int,
    ) -> None:
        super().__init__(scope, id)
        self.repositories: dict[str, ecr.Repository] = {}
        for name in repository_names:
            repository = ecr.Repository(
                self,
                _construct_id(name),
                repository_name=name,
                image_tag_mutability=ecr.TagMutability.IMMUTABLE,
                image_scan_on_push=True,
                encryption=ecr.RepositoryEncryption.AES_256,
                removal_policy=RemovalPolicy.RETAIN,
            )
            repository.add_lifecycle_rule(
                description="Expire untagged images (failed or superseded pushes)",
                rule_priority=1,
                tag_status=ecr.TagStatus.UNTAGGED,
                max_image_age=Duration.days(untagged_expiry_days),
            )
            # A TagStatus.ANY rule must carry the highest priority number of the repository.
            repository.add_lifecycle_rule(
                description=f"Keep the newest {max_image_count} images",
                rule_priority=2,
                tag_status=ecr.TagStatus.ANY,
                max_image_count=max_image_count,
            )
            self.repositories[name] = repository


def _construct_id(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))
