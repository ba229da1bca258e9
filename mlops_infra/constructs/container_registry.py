"""ECR repositories for the platform's images: immutable tags, scanned on push, retained.

Lifecycle: images with a tag of a protected prefix (e.g. `prod-`, which the promotion workflows add to the
image they deploy) are kept, the newest `count` of each prefix, whatever the other rules say: in ECR an image
that matches a rule's tags cannot be expired by a rule of lower priority. Then untagged images expire after some
days, and of the rest the newest `max_image_count` are kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
        protected_tag_prefixes: Mapping[str, int] | None = None,
    ) -> None:
        """`protected_tag_prefixes`: tag prefix -> how many of the newest images with such a tag are kept."""
        super().__init__(scope, id)
        protected = sorted((protected_tag_prefixes or {}).items())
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
            for priority, (prefix, count) in enumerate(protected, start=1):
                repository.add_lifecycle_rule(
                    description=f"Keep the newest {count} images tagged {prefix}* (never expired by later rules)",
                    rule_priority=priority,
                    tag_status=ecr.TagStatus.TAGGED,
                    tag_prefix_list=[prefix],
                    max_image_count=count,
                )
            repository.add_lifecycle_rule(
                description="Expire untagged images (failed or superseded pushes)",
                rule_priority=len(protected) + 1,
                tag_status=ecr.TagStatus.UNTAGGED,
                max_image_age=Duration.days(untagged_expiry_days),
            )
            # A TagStatus.ANY rule must carry the highest priority number of the repository.
            repository.add_lifecycle_rule(
                description=f"Keep the newest {max_image_count} images",
                rule_priority=len(protected) + 2,
                tag_status=ecr.TagStatus.ANY,
                max_image_count=max_image_count,
            )
            self.repositories[name] = repository


def _construct_id(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))
