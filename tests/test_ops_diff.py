"""`mlops-ops diff` end to end on a throwaway git repository holding a tiny CDK app.

History (oldest first): a broken app, then `Tiny` with a bucket `Models`, a KMS key and an SSM parameter;
then the bucket renamed to `ModelStore` (a new logical ID: replacement) and the parameter changed; then
only the parameter changed again. The working tree is the last commit. Every run synthesizes both sides
for real (about 2 s each, in parallel) and calls the pinned CDK CLI.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from mlops_infra.ops import diff
from mlops_infra.ops.cli import main

ROOT = Path(__file__).resolve().parent.parent
CDK = ROOT / "node_modules" / ".bin" / "cdk"

APP = """\
import aws_cdk as cdk
from aws_cdk import aws_kms as kms, aws_s3 as s3, aws_ssm as ssm

app = cdk.App()
stack = cdk.Stack(app, "Tiny")
key = kms.Key(stack, "Key")
s3.Bucket(stack, "{bucket}", encryption_key=key)
ssm.StringParameter(stack, "Setting", string_value="{value}")
app.synth()
"""
BROKEN_APP = 'import sys\nsys.exit("tiny app: config/tiny.toml: bad value for region")\n'


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def _commit(repo: Path, app: str, message: str) -> None:
    (repo / "app.py").write_text(app)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "--no-gpg-sign", "-m", message)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("tiny-cdk-app")
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "test@example.com")
    _git(repo, "config", "user.name", "Test")
    context = json.loads((ROOT / "cdk.json").read_text())["context"]  # the same feature flags as the project
    (repo / "cdk.json").write_text(json.dumps({"app": "python3 app.py", "versionReporting": False, "context": context}))
    _commit(repo, BROKEN_APP, "broken")
    _commit(repo, APP.format(bucket="Models", value="v1"), "one")
    _commit(repo, APP.format(bucket="ModelStore", value="v2"), "rename the bucket, change the setting")
    _commit(repo, APP.format(bucket="ModelStore", value="v3"), "change the setting")
    return repo


def _diff(repo: Path, report: Path, base: str, *extra: str) -> int:
    return main(["diff", "--base", base, "--repo", str(repo), "--output", str(report), "--cdk", str(CDK), *extra])


def _worktrees(repo: Path) -> str:
    return subprocess.run(["git", "-C", str(repo), "worktree", "list"], capture_output=True, text=True).stdout


def test_renamed_bucket_is_a_destructive_replacement(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "diff.md"
    assert _diff(repo, report, "HEAD~2") == 8
    error = capsys.readouterr().err
    assert "1 stateful resource(s) would be replaced or deleted" in error
    assert "Tiny/Models" in error
    assert "(AWS::S3::Bucket, replaced by ModelStore" in error
    assert "--allow-destroy" in error

    text = report.read_text()
    # Summary: the setting changed, the bucket replaced (its logical ID changed), the key untouched.
    assert "| Tiny | 0 | 1 | 0 | 1 | 1 |  |" in text
    assert "**1 stateful resource(s) would be replaced or deleted** (`mlops-ops diff` exits 8)" in text
    bucket_row = next(line for line in text.splitlines() if line.startswith("| **REPLACED** (stateful) | `Models"))
    assert "-> ModelStore" in bucket_row
    assert "AWS::S3::Bucket" in bucket_row
    assert "DeletionPolicy Retain" in bucket_row
    setting_row = next(line for line in text.splitlines() if line.startswith("| changed | `Setting"))
    assert "AWS::SSM::Parameter" in setting_row
    assert "Value" in setting_row
    assert "Key" not in {line.split("`")[1] for line in text.splitlines() if line.startswith("| added")}
    # The raw `cdk diff` output, collapsed.
    assert "<details><summary>cdk diff Tiny</summary>" in text
    assert "[-] AWS::S3::Bucket Models Models" in text
    assert "[+] AWS::S3::Bucket ModelStore ModelStore" in text
    assert "[~] AWS::SSM::Parameter Setting Setting" in text
    assert len(_worktrees(repo).splitlines()) == 1  # the temporary worktree is gone


def test_allow_destroy_still_flags_but_succeeds(repo: Path, tmp_path: Path) -> None:
    report = tmp_path / "diff.md"
    assert _diff(repo, report, "HEAD~2", "--allow-destroy") == 0
    text = report.read_text()
    assert "(allowed by --allow-destroy)" in text
    assert "| **REPLACED** (stateful) | `Models" in text


def test_stateless_change_passes(repo: Path, tmp_path: Path) -> None:
    report = tmp_path / "diff.md"
    assert _diff(repo, report, "HEAD~1") == 0
    text = report.read_text()
    assert "No stateful resource would be replaced or deleted." in text
    assert "| Tiny | 0 | 1 | 0 | 0 | 0 |  |" in text
    assert "| changed | `Setting" in text
    assert "Value" in text
    assert "├─ [-] v2" in text
    assert "└─ [+] v3" in text


def test_unknown_ref_is_a_sentence(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _diff(repo, tmp_path / "diff.md", "no-such-branch") == 1
    error = capsys.readouterr().err
    assert "unknown git ref 'no-such-branch'" in error
    assert "Traceback" not in error
    assert not (tmp_path / "diff.md").exists()


def test_synth_failure_shows_the_apps_error(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _diff(repo, tmp_path / "diff.md", "HEAD~3") == 1
    error = capsys.readouterr().err
    assert "synthesizing HEAD~3" in error
    assert "failed (exit 1)" in error
    assert "config/tiny.toml: bad value for region" in error
    assert len(_worktrees(repo).splitlines()) == 1


def test_cdk_diff_markers_are_parsed() -> None:
    output = "\n".join(
        [
            "Stack Tiny",
            "Resources",
            "[-] AWS::S3::Bucket Old OldBucket1234ABCD orphan",
            "[~] AWS::RDS::DBInstance Database/Instance DatabaseInstanceAA8A5FDE replace",
            " ├─ [~] AllocatedStorage",
            " │   ├─ [-] 10",
            " │   └─ [+] 20",
            " └─ [~] DBInstanceIdentifier (requires replacement)",
            "     ├─ [-] old",
            "     └─ [+] new",
            "[~] AWS::KMS::Key My Key Path KeyABCD1234 may be replaced",
            " └─ [~] KeySpec (may cause replacement)",
            "[+] AWS::SSM::Parameter Setting Setting1234ABCD",
            "[+] Parameter BootstrapVersion BootstrapVersion: {}",
        ]
    )
    assert diff.parse_cdk_diff(output) == {
        "OldBucket1234ABCD": diff.CdkMarker("orphan"),
        "DatabaseInstanceAA8A5FDE": diff.CdkMarker("replace", ("DBInstanceIdentifier",)),
        "KeyABCD1234": diff.CdkMarker("may be replaced", ("KeySpec",)),
        "Setting1234ABCD": diff.CdkMarker(""),
    }


def test_in_place_replacement_of_a_stateful_resource_is_destructive() -> None:
    base = {"Resources": {"Db": {"Type": "AWS::RDS::DBInstance", "Properties": {"DBInstanceIdentifier": "a"}}}}
    new = {
        "Resources": {
            "Db": {
                "Type": "AWS::RDS::DBInstance",
                "Properties": {"DBInstanceIdentifier": "b"},
                "UpdateReplacePolicy": "Snapshot",
            }
        }
    }
    changes, sections = diff.compare_templates(base, new)
    stack = diff.StackDiff("S", "changed", changes, sections)
    diff._apply_markers(stack, {"Db": diff.CdkMarker("replace", ("DBInstanceIdentifier",))})
    [change] = stack.changes
    assert change.action == "replaced"
    assert change.destructive
    assert change.what.startswith(
        "properties: DBInstanceIdentifier; UpdateReplacePolicy; DBInstanceIdentifier requires"
    )
    assert "UpdateReplacePolicy Snapshot: a final snapshot is taken" in change.what
