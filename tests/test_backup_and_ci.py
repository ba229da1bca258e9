"""AWS Backup of the database (and its DR-region copy in prod), and the keyless CI identity stack."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match

from tests.conftest import ENVIRONMENTS, Synth
from tests.templates import foundation

CI = "MlopsCi"
REPOSITORY = "example-org/mlops-infra"
ISSUER = "token.actions.githubusercontent.com"


# --- backup ---------------------------------------------------------------------------------


# When: 05:00 UTC, AWS Backup's 8-hour start window; dev's database stops after hours, so it is backed up at 09:00
# New York time (an hour after the services start), within the hour.
WHEN = {"ScheduleExpression": "cron(0 5 * * ? *)", "ScheduleExpressionTimezone": Match.absent()}
WHEN |= {"StartWindowMinutes": Match.absent()}
MORNING = {"ScheduleExpression": "cron(0 9 * * ? *)", "ScheduleExpressionTimezone": "America/New_York"}
MORNING |= {"StartWindowMinutes": 60}


@pytest.mark.parametrize(
    ("env", "days", "copied", "when"),
    [("dev", 7, False, MORNING), ("staging", 14, False, WHEN), ("prod", 30, True, WHEN)],
)
def test_database_backup_plan(synth: Synth, env: str, days: int, copied: bool, when: dict[str, object]) -> None:
    template = synth.template(foundation(env))
    rule = Match.object_like(
        {
            "RuleName": "daily",
            **when,
            "Lifecycle": {"DeleteAfterDays": days},
            "TargetBackupVault": {"Fn::GetAtt": [Match.string_like_regexp("^BackupVault"), "BackupVaultName"]},
            "CopyActions": [
                {
                    "DestinationBackupVaultArn": {
                        "Fn::Join": [
                            "",
                            ["arn:aws:backup:us-west-2:", {"Ref": "AWS::AccountId"}, ":backup-vault:mlops-prod-dr"],
                        ]
                    },
                    "Lifecycle": {"DeleteAfterDays": days},
                }
            ]
            if copied
            else Match.absent(),
        }
    )
    template.has_resource_properties(
        "AWS::Backup::BackupPlan", {"BackupPlan": {"BackupPlanName": f"mlops-{env}", "BackupPlanRule": [rule]}}
    )
    selections = synth.resources(foundation(env), "AWS::Backup::BackupSelection")
    (selection,) = selections.values()
    resources = selection["Properties"]["BackupSelection"]["Resources"]
    assert len(resources) == 1
    assert "DatabaseInstance" in str(resources[0]), "the backup selection is the environment's database"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_backup_vault_is_encrypted_with_its_key_and_deletion_protected(synth: Synth, env: str) -> None:
    vaults = synth.resources(foundation(env), "AWS::Backup::BackupVault")
    (vault,) = vaults.values()
    properties = vault["Properties"]
    assert properties["BackupVaultName"] == f"mlops-{env}"
    assert properties["EncryptionKeyArn"] == {"Fn::GetAtt": [_alias_target(synth, foundation(env), "backup"), "Arn"]}
    assert vault["DeletionPolicy"] == "Retain"
    _assert_recovery_points_cannot_be_deleted(properties)


def test_prod_copies_backups_to_a_protected_vault_in_the_dr_region(synth: Synth) -> None:
    (vault,) = synth.resources("MlopsProdDr", "AWS::Backup::BackupVault").values()
    properties = vault["Properties"]
    assert properties["BackupVaultName"] == "mlops-prod-dr"
    assert properties["EncryptionKeyArn"] == {"Fn::GetAtt": [_alias_target(synth, "MlopsProdDr", "backup"), "Arn"]}
    _assert_recovery_points_cannot_be_deleted(properties)
    assert synth.environments["prod"].disaster_recovery is not None
    assert synth.environments["prod"].disaster_recovery.region == "us-west-2"


def test_prod_cannot_be_configured_without_dr_copies(synth: Synth) -> None:
    assert synth.configs["prod"].backup.copy_to_dr_region is True
    assert all(not synth.configs[env].backup.copy_to_dr_region for env in ("dev", "staging"))


def _alias_target(synth: Synth, stack: str, purpose: str) -> str:
    aliases = synth.resources(stack, "AWS::KMS::Alias").values()
    (alias,) = [a for a in aliases if a["Properties"]["AliasName"].endswith(f"/{purpose}")]
    target: str = alias["Properties"]["TargetKeyId"]["Fn::GetAtt"][0]
    return target


def _assert_recovery_points_cannot_be_deleted(properties: dict[str, Any]) -> None:
    statements = properties["AccessPolicy"]["Statement"]
    denied = [s for s in statements if s["Effect"] == "Deny" and s["Principal"] == {"AWS": "*"}]
    assert denied, "recovery points must be protected by a Deny in the vault's access policy"
    assert "backup:DeleteRecoveryPoint" in denied[0]["Action"]


# --- CI identity ----------------------------------------------------------------------------


def _roles(synth: Synth) -> dict[str, dict[str, Any]]:
    return {r["Properties"]["RoleName"]: r for r in synth.resources(CI, "AWS::IAM::Role").values()}


def test_github_oidc_provider(synth: Synth) -> None:
    (provider,) = synth.resources(CI, "AWS::IAM::OIDCProvider").values()
    assert provider["Properties"]["Url"] == f"https://{ISSUER}"
    assert provider["Properties"]["ClientIdList"] == ["sts.amazonaws.com"]


@pytest.mark.parametrize(
    ("role", "subject"),
    [
        ("mlops-ci-diff", "pull_request"),
        ("mlops-ci-deploy-dev", "ref:refs/heads/main"),
        ("mlops-ci-deploy-staging", "environment:staging"),
        ("mlops-ci-deploy-prod", "environment:production"),
    ],
)
def test_roles_trust_only_this_repository_and_its_branch_or_environment(synth: Synth, role: str, subject: str) -> None:
    (statement,) = _roles(synth)[role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    provider = next(iter(synth.resources(CI, "AWS::IAM::OIDCProvider")))
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"] == {"Federated": {"Ref": provider}}
    assert statement["Condition"] == {
        "StringEquals": {f"{ISSUER}:aud": "sts.amazonaws.com", f"{ISSUER}:sub": f"repo:{REPOSITORY}:{subject}"}
    }


def test_exactly_these_roles_and_no_wildcard_principal(synth: Synth) -> None:
    assert set(_roles(synth)) == {
        "mlops-ci-diff",
        "mlops-ci-deploy-dev",
        "mlops-ci-deploy-staging",
        "mlops-ci-deploy-prod",
    }
    assert '"AWS": "*"' not in str(synth.templates[CI]).replace("'", '"')
    assert "'*'" not in str([r["Properties"]["AssumeRolePolicyDocument"] for r in _roles(synth).values()])


def _statements(synth: Synth, role: str) -> dict[str, dict[str, Any]]:
    logical = next(k for k, r in synth.resources(CI, "AWS::IAM::Role").items() if r["Properties"]["RoleName"] == role)
    (policy,) = [
        p for p in synth.resources(CI, "AWS::IAM::Policy").values() if p["Properties"]["Roles"] == [{"Ref": logical}]
    ]
    return {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def _bootstrap_role(kind: str, region: str = "us-east-1") -> dict[str, Any]:
    return {
        "Fn::Join": [
            "",
            [
                "arn:aws:iam::",
                {"Ref": "AWS::AccountId"},
                f":role/cdk-hnb659fds-{kind}-role-",
                {"Ref": "AWS::AccountId"},
                f"-{region}",
            ],
        ]
    }


# The regions each environment's stacks deploy to: prod's MlopsProdDr lives in the DR region (bootstrapped too).
DEPLOY_REGIONS = {"dev": ["us-east-1"], "staging": ["us-east-1"], "prod": ["us-east-1", "us-west-2"]}
KINDS = ("deploy", "file-publishing", "image-publishing", "lookup")


def test_diff_role_may_only_assume_the_read_only_lookup_roles(synth: Synth) -> None:
    statements = _statements(synth, "mlops-ci-diff")
    assert set(statements) == {"AssumeCdkBootstrapRoles"}
    # Every region a stack lives in, so a pull request can diff MlopsProdDr too.
    assert statements["AssumeCdkBootstrapRoles"]["Resource"] == [
        _bootstrap_role("lookup", region) for region in ("us-east-1", "us-west-2")
    ]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_deploy_roles_only_assume_the_bootstrap_roles_and_read_deployment_state(synth: Synth, env: str) -> None:
    statements = _statements(synth, f"mlops-ci-deploy-{env}")
    assume = statements["AssumeCdkBootstrapRoles"]
    assert assume["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    assert assume["Resource"] == [_bootstrap_role(kind, region) for kind in KINDS for region in DEPLOY_REGIONS[env]]
    watch = statements["WatchDeployments"]
    assert watch["Resource"] == "*"
    assert sorted(watch["Action"]) == [
        "cloudformation:DescribeStacks",
        "cloudwatch:DescribeAlarms",
        "ecs:DescribeServices",
    ]
    expected = {"AssumeCdkBootstrapRoles", "WatchDeployments"} | (
        {"EcrLogin", "PushApplicationImages"} if env == "dev" else {"TagPromotedImages"}
    )
    assert set(statements) == expected
    for statement in statements.values():
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all(not action.endswith("*") for action in actions), "no wildcard actions"


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_promotion_roles_may_only_tag_existing_images(synth: Synth, env: str) -> None:
    """The promotions tag what they deploy (kept by the registry's lifecycle): read and put a manifest, never upload
    a layer, so no new image content can come in through them."""
    tag = _statements(synth, f"mlops-ci-deploy-{env}")["TagPromotedImages"]
    assert tag["Action"] == ["ecr:BatchGetImage", "ecr:DescribeImages", "ecr:PutImage"]
    repositories = sorted(part[-1].split("/")[-1] for part in (r["Fn::Join"][1] for r in tag["Resource"]))
    assert repositories == ["mlops-backend", "mlops-frontend", "mlops-inference", "mlops-mlflow"]


def test_only_the_dev_deploy_role_pushes_images_to_its_repositories(synth: Synth) -> None:
    push = _statements(synth, "mlops-ci-deploy-dev")["PushApplicationImages"]
    repositories = sorted(part[-1].split("/")[-1] for part in (r["Fn::Join"][1] for r in push["Resource"]))
    assert repositories == ["mlops-backend", "mlops-frontend", "mlops-inference", "mlops-mlflow"]
    assert "ecr:PutImage" in push["Action"]
