"""cdk-nag (AwsSolutions) runs on every stack; every acknowledged finding has a specific reason."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_s3 as s3

from mlops_infra import compliance
from tests.conftest import Synth

GENERIC_REASONS = ("not needed", "not required", "n/a", "ignore", "false positive", "todo")
# Every application stack: CloudFront without geo restriction, WAF or custom certificate (CFR1, CFR2, CFR4),
# settings as task-definition environment variables (ECS2), IAM5 (ECR token, MLflow prefix, metrics, state machine).
APPLICATION = {"AwsSolutions-CFR1", "AwsSolutions-CFR2", "AwsSolutions-CFR4", "AwsSolutions-ECS2", "AwsSolutions-IAM5"}


def report(synth: Synth) -> dict[str, Any]:
    plugin_reports = json.loads((synth.outdir / "validation-report.json").read_text())["pluginReports"]
    (aws_solutions,) = [r for r in plugin_reports if r["pluginName"] == "AwsSolutions"]
    return dict(aws_solutions)


def acknowledged(synth: Synth) -> dict[str, set[str]]:
    """Stack name -> the acknowledged rule IDs found on its constructs."""
    found: dict[str, set[str]] = defaultdict(set)
    for violation in report(synth)["suppressedViolations"]:
        for construct in violation["violatingConstructs"]:
            found[construct["constructPath"].split("/")[0]].add(violation["ruleName"].split("[")[0])
    return found


def test_aws_solutions_checks_passed_on_every_stack(synth: Synth) -> None:
    result = report(synth)
    assert result["conclusion"] == "success"
    assert result["violations"] == []


def test_every_acknowledgement_has_a_specific_reason(synth: Synth) -> None:
    for violation in report(synth)["suppressedViolations"]:
        reason = violation["reason"]
        assert len(reason) >= 60, f"{violation['acknowledgedId']}: reason too short: {reason!r}"
        assert reason.strip().lower() not in GENERIC_REASONS


@pytest.mark.parametrize(
    ("stack", "expected"),
    [
        (
            "MlopsDevFoundation",
            {
                "AwsSolutions-RDS3",
                "AwsSolutions-RDS10",
                "AwsSolutions-RDS11",
                "AwsSolutions-IAM4",
                "AwsSolutions-EC28",
                "AwsSolutions-EC29",
            },
        ),
        ("MlopsStagingFoundation", {"AwsSolutions-RDS3", "AwsSolutions-RDS11", "AwsSolutions-IAM4"}),
        ("MlopsProdFoundation", {"AwsSolutions-RDS11", "AwsSolutions-IAM5", "AwsSolutions-IAM4"}),
        ("MlopsCi", {"AwsSolutions-IAM5"}),
        ("MlopsDev", APPLICATION),
        # + canary's / blue-green's traffic-shifting role (IAM4) and the MLflow admin secret of basic auth (SMG4)
        ("MlopsStaging", APPLICATION | {"AwsSolutions-IAM4", "AwsSolutions-SMG4"}),
        # + the feature cache without Redis AUTH (AEC6)
        ("MlopsProd", APPLICATION | {"AwsSolutions-IAM4", "AwsSolutions-SMG4", "AwsSolutions-AEC6"}),
        ("MlopsProdDr", set()),
        ("MlopsRegistryUsEast1", set()),
    ],
)
def test_acknowledgements_per_environment(synth: Synth, stack: str, expected: set[str]) -> None:
    """Prod acknowledges neither single-AZ nor missing deletion protection: it has neither."""
    assert acknowledged(synth)[stack] == expected


def test_an_unacknowledged_finding_stops_the_synth(tmp_path: Any) -> None:
    app = App(outdir=str(tmp_path), builtin_cloud_formation_validation=False)
    compliance.enable_checks(app)
    s3.Bucket(Stack(app, "Insecure"), "Plain")
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    violations = json.loads((tmp_path / "validation-report.json").read_text())["pluginReports"][0]["violations"]
    assert {"AwsSolutions-S1", "AwsSolutions-S10"} <= {v["ruleName"] for v in violations}
