"""Keyless CI: GitHub Actions' OIDC provider and the roles its workflows assume.

No long-lived keys: a workflow exchanges its OIDC token for a role, and only tokens of one
repository (and, where given, one branch or GitHub environment) are trusted. A deploy role
can do nothing but assume the CDK bootstrap roles of its account and region, which do the
actual deployment; the diff role can only assume the read-only lookup role.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

GITHUB_ISSUER = "token.actions.githubusercontent.com"
AUDIENCE = "sts.amazonaws.com"
CDK_QUALIFIER = "hnb659fds"  # the CDK bootstrap's default qualifier


@dataclass(frozen=True)
class DeployTarget:
    """One environment a workflow deploys: its role name, regions and which tokens it trusts."""

    role_name: str
    region: str  # the environment's region (and its ECR repositories')
    github_subject: str  # e.g. "environment:production" or "ref:refs/heads/main"
    ecr_repositories: Sequence[str] = ()  # repositories the workflow may push images to
    # Repositories whose existing images the workflow may tag (put-image of a manifest; no layer upload, so no new
    # image content): the promotions mark what they deploy.
    ecr_tag_repositories: Sequence[str] = ()
    other_regions: Sequence[str] = ()  # further regions its stacks deploy to (a DR-region stack), bootstrapped too

    @property
    def regions(self) -> list[str]:
        return sorted({self.region, *self.other_regions})


class GithubOidcRoles(Construct):
    """The OIDC provider, a read-only diff role for pull requests and one deploy role per target."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        repository: str,
        diff_role_name: str,
        targets: Sequence[DeployTarget],
        max_session_hours: int = 1,
    ) -> None:
        super().__init__(scope, id)
        max_session = Duration.hours(max_session_hours)
        self.repository = repository
        self.provider = iam.OidcProviderNative(self, "GitHub", url=f"https://{GITHUB_ISSUER}", client_ids=[AUDIENCE])
        stack = Stack.of(self)
        regions = sorted({region for target in targets for region in target.regions} or {stack.region})
        self.diff_role = self._role(
            "DiffRole",
            name=diff_role_name,
            subject="pull_request",
            description=f"{repository} pull requests: read-only `cdk diff` against deployed stacks",
            max_session=max_session,
        )
        self._may_assume(self.diff_role, ["lookup"], regions)
        self.deploy_roles: dict[str, iam.Role] = {}
        for target in targets:
            role = self._role(
                f"Deploy{target.role_name.title().replace('-', '')}",
                name=target.role_name,
                subject=target.github_subject,
                description=f"{repository} ({target.github_subject}): deploys through the CDK bootstrap roles",
                max_session=max_session,
            )
            self._may_assume(role, ["deploy", "file-publishing", "image-publishing", "lookup"], target.regions)
            if target.ecr_repositories:
                self._may_push(role, target.region, target.ecr_repositories)
            if target.ecr_tag_repositories:
                self._may_tag(role, target.region, target.ecr_tag_repositories)
            self._may_watch_deployments(role)
            self.deploy_roles[target.role_name] = role

    def _role(self, id: str, *, name: str, subject: str, description: str, max_session: Duration) -> iam.Role:
        """A role only this repository's tokens for `subject` can assume (aud and sub pinned)."""
        return iam.Role(
            self,
            id,
            role_name=name,
            description=description,
            max_session_duration=max_session,
            assumed_by=iam.WebIdentityPrincipal(
                self.provider.oidc_provider_arn,
                conditions={
                    "StringEquals": {
                        f"{GITHUB_ISSUER}:aud": AUDIENCE,
                        f"{GITHUB_ISSUER}:sub": f"repo:{self.repository}:{subject}",
                    }
                },
            ),
        )

    @staticmethod
    def _may_assume(role: iam.Role, kinds: Sequence[str], regions: Sequence[str]) -> None:
        stack = Stack.of(role)
        role.add_to_policy(
            iam.PolicyStatement(
                sid="AssumeCdkBootstrapRoles",
                actions=["sts:AssumeRole", "sts:TagSession"],
                resources=[
                    f"arn:{stack.partition}:iam::{stack.account}:role/cdk-{CDK_QUALIFIER}-{kind}-role-{stack.account}-{region}"
                    for kind in kinds
                    for region in regions
                ],
            )
        )

    @staticmethod
    def _may_push(role: iam.Role, region: str, repositories: Sequence[str]) -> None:
        stack = Stack.of(role)
        role.add_to_policy(iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        role.add_to_policy(
            iam.PolicyStatement(
                sid="PushApplicationImages",
                actions=[
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:CompleteLayerUpload",
                    "ecr:DescribeImages",
                    "ecr:InitiateLayerUpload",
                    "ecr:PutImage",
                    "ecr:UploadLayerPart",
                ],
                resources=[
                    f"arn:{stack.partition}:ecr:{region}:{stack.account}:repository/{name}" for name in repositories
                ],
            )
        )

    @staticmethod
    def _may_tag(role: iam.Role, region: str, repositories: Sequence[str]) -> None:
        stack = Stack.of(role)
        role.add_to_policy(
            iam.PolicyStatement(
                sid="TagPromotedImages",
                actions=["ecr:BatchGetImage", "ecr:DescribeImages", "ecr:PutImage"],
                resources=[
                    f"arn:{stack.partition}:ecr:{region}:{stack.account}:repository/{name}" for name in repositories
                ],
            )
        )

    @staticmethod
    def _may_watch_deployments(role: iam.Role) -> None:
        """Read-only calls the workflows make to wait for ECS deployments and watch the deployment alarms."""
        role.add_to_policy(
            iam.PolicyStatement(
                sid="WatchDeployments",
                actions=["ecs:DescribeServices", "cloudwatch:DescribeAlarms", "cloudformation:DescribeStacks"],
                resources=["*"],
            )
        )
