"""`mlops-ops diff` end to end on a throwaway git repository holding a tiny CDK app.

History (oldest first): a broken app, then `Tiny` with a bucket `Models`, a KMS key and an SSM parameter;
then the bucket renamed to `ModelStore` (a new logical ID: replacement) and the parameter changed; then
only the parameter changed again. The working tree is the last commit. Every run checks out the base in a
worktree, runs each tree's app (cdk.json's `app`) with CDK_OUTDIR and CDK_CONTEXT_JSON, compares the
assemblies and calls the pinned CDK CLI (`cdk diff`) on them.

What is under test is that orchestration and the report, not aws-cdk-lib: to `mlops-ops diff` an app is a
command that writes a cloud assembly into CDK_OUTDIR. So each commit's app.py copies an assembly that the
`repo` fixture synthesized from that commit's `tiny_app` with aws-cdk-lib (in this process, with the context
the tool passes), after checking that CDK_CONTEXT_JSON is that context. The templates and manifest are real
CDK output (their schema version the one the pinned CLI must accept), and a run no longer starts two processes
that import aws-cdk-lib and synthesize (about 1 s of CPU each, 6 in the module) besides its `cdk diff`: in the
whole suite, this module's CPU went from about 11 s to 5 s.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mlops_infra.ops import changes, diff
from mlops_infra.ops.cli import main

ROOT = Path(__file__).resolve().parent.parent
CDK = ROOT / "node_modules" / ".bin" / "cdk"

# (bucket's construct ID, the parameter's value) of the tiny app, per commit after the broken one
VERSIONS = (("Models", "v1"), ("ModelStore", "v2"), ("ModelStore", "v3"))
APP = """\
import json
import os
import shutil
import sys
from pathlib import Path

here = Path(__file__).parent
if json.loads(os.environ["CDK_CONTEXT_JSON"]) != json.loads((here / "context.json").read_text()):
    sys.exit("tiny app: CDK_CONTEXT_JSON is not the context its assembly was synthesized with")
shutil.copytree(here / "assembly", os.environ["CDK_OUTDIR"], dirs_exist_ok=True)
"""
BROKEN_APP = 'import sys\nsys.exit("tiny app: config/tiny.toml: bad value for region")\n'


def tiny_app(outdir: Path, context: dict[str, object], bucket: str, value: str) -> None:
    """Synthesize `Tiny` (a KMS key, a bucket encrypted with it, an SSM parameter) into `outdir`."""
    import aws_cdk as cdk
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_s3 as s3
    from aws_cdk import aws_ssm as ssm

    # No built-in CloudFormation validation, as `mlops-ops diff` runs apps (CDK_VALIDATION=false): seconds, no change.
    app = cdk.App(outdir=str(outdir), context=context, builtin_cloud_formation_validation=False)
    stack = cdk.Stack(app, "Tiny")
    key = kms.Key(stack, "Key")
    s3.Bucket(stack, bucket, encryption_key=key)
    ssm.StringParameter(stack, "Setting", string_value=value)
    app.synth()


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
    # The context `mlops-ops diff` passes the app (cdk.json's, and the CLI's own settings, as `cdk synth` passes).
    synth_context = diff._context(repo)
    assert synth_context.items() >= context.items()
    (repo / "context.json").write_text(json.dumps(synth_context))
    messages = ("one", "rename the bucket, change the setting", "change the setting")
    for (bucket, value), message in zip(VERSIONS, messages, strict=True):
        shutil.rmtree(repo / "assembly", ignore_errors=True)
        tiny_app(repo / "assembly", synth_context, bucket, value)
        _commit(repo, APP, message)
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
    # The key is untouched: no row of the report names it (its logical ID is `Key` and a hash, e.g. Key961B73FD).
    rows = [line.split("`")[1] for line in text.splitlines() if line.startswith("| ") and line.count("`") >= 2]
    assert not [row for row in rows if any(part.startswith("Key") for part in row.split(" -> "))], rows
    assert len(rows) == 2, rows  # the bucket and the setting
    assert "AWS::KMS::Key" not in text
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
    assert changes.parse_cdk_diff(output) == {
        "OldBucket1234ABCD": changes.CdkMarker("orphan", type="AWS::S3::Bucket"),
        "DatabaseInstanceAA8A5FDE": changes.CdkMarker("replace", ("DBInstanceIdentifier",), "AWS::RDS::DBInstance"),
        "KeyABCD1234": changes.CdkMarker("may be replaced", ("KeySpec",), "AWS::KMS::Key"),
        "Setting1234ABCD": changes.CdkMarker("", type="AWS::SSM::Parameter"),
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
    resource_changes, sections = changes.compare_templates(base, new)
    stack = changes.StackDiff("S", "changed", resource_changes, sections)
    changes.apply_markers(stack, {"Db": changes.CdkMarker("replace", ("DBInstanceIdentifier",))})
    [change] = stack.changes
    assert change.action == "replaced"
    assert change.destructive
    assert change.what.startswith(
        "properties: DBInstanceIdentifier; UpdateReplacePolicy; DBInstanceIdentifier requires"
    )
    assert "UpdateReplacePolicy Snapshot: a final snapshot is taken" in change.what


# `cdk diff` (the pinned CLI) of a subnet group whose name changed: the database that references it is unchanged in
# the template, yet CloudFormation replaces it too, and `cdk diff` says so.
REPLACED_THROUGH_A_REFERENCE = """\
Stack MlopsDevFoundation
Resources
[~] AWS::RDS::DBSubnetGroup Database/Subnets DatabaseSubnets56F17B9A replace
 └─ [~] DBSubnetGroupName (requires replacement)
     ├─ [-] mlops-dev-a
     └─ [+] mlops-dev-b
[~] AWS::RDS::DBInstance Database/Instance DatabaseInstanceAA8A5FDE replace
 └─ [~] DBSubnetGroupName (requires replacement)
     └─ [~] .Ref:
         ├─ [-] DatabaseSubnets56F17B9A
         └─ [+] DatabaseSubnets56F17B9A (replaced)
"""


def test_a_stateful_resource_replaced_through_a_reference_is_destructive() -> None:
    def template(group_name: str) -> dict[str, object]:
        group = {"Type": "AWS::RDS::DBSubnetGroup", "Properties": {"DBSubnetGroupName": group_name}}
        database = {
            "Type": "AWS::RDS::DBInstance",
            "Properties": {"DBSubnetGroupName": {"Ref": "DatabaseSubnets56F17B9A"}},
        }
        return {"Resources": {"DatabaseSubnets56F17B9A": group, "DatabaseInstanceAA8A5FDE": database}}

    resource_changes, sections = changes.compare_templates(template("mlops-dev-a"), template("mlops-dev-b"))
    assert [change.logical_id for change in resource_changes] == ["DatabaseSubnets56F17B9A"]  # the database: same text
    stack = changes.StackDiff("MlopsDevFoundation", "changed", resource_changes, sections)
    changes.apply_markers(stack, changes.parse_cdk_diff(REPLACED_THROUGH_A_REFERENCE))

    [database] = stack.destructive
    assert (database.logical_id, database.type, database.action) == (
        "DatabaseInstanceAA8A5FDE",
        "AWS::RDS::DBInstance",
        "replaced",
    )
    assert database.what == (
        "unchanged in the template, but a resource it references is replaced: DBSubnetGroupName requires "
        "replacement (`cdk diff`: replace)"
    )
    assert [(change.logical_id, change.action) for change in stack.changes] == [
        ("DatabaseInstanceAA8A5FDE", "replaced"),
        ("DatabaseSubnets56F17B9A", "replaced"),
    ]
    assert stack.count("replaced") == 2


# --- unreadable JSON ------------------------------------------------------------------------------------------


def test_malformed_cdk_context_json_is_a_sentence(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    context = repo / "cdk.context.json"  # untracked: the working tree's only
    context.write_text('{"availability-zones:account=1:region=us-east-1": [', encoding="utf-8")
    try:
        assert _diff(repo, tmp_path / "diff.md", "HEAD~1") == 1
    finally:
        context.unlink()
    error = capsys.readouterr().err
    assert error.startswith(f"mlops-ops: {context.resolve()}: not valid JSON (Expecting value: line 1")
    assert "Traceback" not in error
    assert len(_worktrees(repo).splitlines()) == 1


@pytest.mark.parametrize(("text", "problem"), [("{", "not valid JSON"), ("[]", "not a JSON object")])
def test_malformed_manifest_is_a_sentence(tmp_path: Path, text: str, problem: str) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(text, encoding="utf-8")
    with pytest.raises(diff.DiffFailed, match=f"^{re.escape(str(manifest))}: {problem}"):
        diff._stacks(tmp_path)
    synth = diff._Synth("working tree", tmp_path, tmp_path, None, manifest, manifest)  # type: ignore[arg-type]
    with pytest.raises(diff.DiffFailed, match=f"^{re.escape(str(manifest))}: {problem}"):
        diff._check_assembly(synth)
    template = tmp_path / "Tiny.template.json"
    template.write_text(text, encoding="utf-8")
    with pytest.raises(diff.DiffFailed, match=f"^{re.escape(str(template))}: {problem}"):
        diff._compare("Tiny", diff._Stack("Tiny", template), None)
