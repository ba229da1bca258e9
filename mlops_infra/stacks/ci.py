"""`MlopsCi`: the GitHub OIDC provider and the roles of the delivery workflows (.github/workflows/)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Stack
from constructs import Construct

from mlops_infra import names
from mlops_infra.config import ConfigError, EnvironmentConfig
from mlops_infra.constructs import DeployTarget, GithubOidcRoles

CI_STACK_NAME = "MlopsCi"


class CiStack(Stack):
    """One per account: a diff role for pull requests and a deploy role per environment."""

    def __init__(self, scope: Construct, id: str, *, configs: Sequence[EnvironmentConfig], **kwargs: Any) -> None:
        super().__init__(scope, id, **kwargs)
        repositories = {config.ci.github_repository for config in configs}
        if len(repositories) != 1:
            raise ConfigError(
                [f"ci.github_repository differs between environments ({', '.join(sorted(repositories))}): "
                 "the CI roles trust one repository"]
            )  # fmt: skip
        self.roles = GithubOidcRoles(
            self,
            "GitHub",
            repository=repositories.pop(),
            diff_role_name=names.ci_diff_role(),
            targets=[
                DeployTarget(
                    role_name=names.ci_deploy_role(config.name),
                    region=config.aws.region,
                    github_subject=(
                        f"environment:{config.ci.github_environment}"
                        if config.ci.github_environment
                        else "ref:refs/heads/main"
                    ),
                    ecr_repositories=names.REPOSITORY_NAMES if not config.ci.github_environment else (),
                    ecr_tag_repositories=names.REPOSITORY_NAMES if config.ci.github_environment else (),
                    other_regions=[config.aws.dr_region] if config.has_dr_region_stack and config.aws.dr_region else [],
                )
                for config in configs
            ],
        )
