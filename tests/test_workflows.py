"""The delivery workflows (.github/workflows/): schema, zizmor, and the rules README.md (Delivery) promises.

check-jsonschema (GitHub's workflow schema, vendored) and zizmor (offline) run once per session. The
structural tests read the YAML; a few run the workflows' own shell steps against stubs (no network, no AWS).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
# Where zizmor looks for its configuration (rules.<rule>.ignore: [file:line...], rules.<rule>.disable: true).
ZIZMOR_CONFIGS = (ROOT / ".github" / "zizmor.yml", ROOT / "zizmor.yml")
DOCS = ROOT / "README.md"
BIN = Path(sys.executable).parent

EXPECTED = {"validate", "deploy-dev", "promote-staging", "promote-prod"}
DEPLOY_WORKFLOWS = ("deploy-dev", "promote-staging", "promote-prod")
# workflow -> (the role its AWS job assumes, the GitHub environment of that job: its OIDC subject in MlopsCi)
ROLES = {
    "validate": ("mlops-ci-diff", None),
    "deploy-dev": ("mlops-ci-deploy-dev", None),  # subject ref:refs/heads/main
    "promote-staging": ("mlops-ci-deploy-staging", "staging"),
    "promote-prod": ("mlops-ci-deploy-prod", "production"),
}
SHA_PIN = re.compile(r"^(?P<action>[\w.-]+/[\w./-]+)@(?P<sha>[0-9a-f]{40})$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<comment>.*)$")
MARKER = "<!-- mlops-infra-diff -->"
# What the workflows validate image_tag against (the app's IMAGE_TAG_PATTERN, mlops_infra/config/models.py).
TAG_REGEX = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"

Workflow = dict[str, Any]


# ------------------------------------------------------------------------------------------------ fixtures


def _load(path: Path) -> Workflow:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True.
    if True in data:
        data["on"] = data.pop(True)
    return dict(data)


@pytest.fixture(scope="module")
def workflows() -> dict[str, Workflow]:
    return {path.stem: _load(path) for path in sorted(WORKFLOWS.glob("*.yml"))}


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    return {path.stem: path.read_text(encoding="utf-8") for path in sorted(WORKFLOWS.glob("*.yml"))}


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make install` (requirements-dev.txt pins {name})")
    return str(path)


@pytest.fixture(scope="module")
def schema_check() -> subprocess.CompletedProcess[str]:
    files = [str(path) for path in sorted(WORKFLOWS.glob("*.yml"))]
    return subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def zizmor() -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("GH_TOKEN", None)
    env.pop("GITHUB_TOKEN", None)
    return subprocess.run(
        [_tool("zizmor"), "--offline", "--format", "json", "--no-progress", str(WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        env=env,
    )


def _jobs(workflow: Workflow) -> dict[str, dict[str, Any]]:
    return dict(workflow["jobs"])


def _steps(workflow: Workflow) -> Iterator[tuple[str, dict[str, Any]]]:
    for job_id, job in _jobs(workflow).items():
        for step in job.get("steps", []):
            yield job_id, step


def _step(workflow: Workflow, job_id: str, key: str) -> dict[str, Any]:
    """A step of a job by id, else by name."""
    for step in _jobs(workflow)[job_id]["steps"]:
        if key in (step.get("id"), step.get("name")):
            return dict(step)
    raise AssertionError(f"job {job_id} has no step {key!r}")


def _bash(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a `run:` block the way GitHub does (bash -eo pipefail) in tmp_path, with GitHub's output files there."""
    files = {"GITHUB_OUTPUT": tmp_path / "output", "GITHUB_STEP_SUMMARY": tmp_path / "summary"}
    for file in files.values():
        file.write_text("", encoding="utf-8")
    environment = {**os.environ, "RUNNER_TEMP": str(tmp_path), **{k: str(v) for k, v in files.items()}, **env}
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env=environment,
    )


def _outputs(tmp_path: Path) -> dict[str, str]:
    lines = (tmp_path / "output").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and "<<" not in line)


# ------------------------------------------------------------------------------------------------ the tools


def test_the_four_workflows_exist(workflows: dict[str, Workflow]) -> None:
    assert set(workflows) == EXPECTED


def test_workflows_match_githubs_schema(schema_check: subprocess.CompletedProcess[str]) -> None:
    assert schema_check.returncode == 0, schema_check.stdout + schema_check.stderr


def _where(location: dict[str, Any]) -> str:
    try:
        path = location["symbolic"]["key"]["Local"]["verbatim_path"]
        return f"{path}:{location['concrete']['location']['start_point']['row'] + 1}"
    except (KeyError, TypeError):
        return json.dumps(location)[:200]


def test_zizmor_finds_nothing(zizmor: subprocess.CompletedProcess[str]) -> None:
    findings = [finding for finding in json.loads(zizmor.stdout or "[]") if not finding.get("ignored")]
    described = [
        f"{finding['ident']} ({finding['determinations']['severity']}): {finding['desc']} at "
        + ", ".join(_where(loc) for loc in finding["locations"] if loc["symbolic"]["kind"] == "Primary")
        for finding in findings
    ]
    assert not described, "zizmor findings (fix each, or ignore it in .github/zizmor.yml with a reason):\n" + (
        "\n".join(described)
    )
    assert zizmor.returncode == 0, zizmor.stderr


# An inline ignore: `# zizmor: ignore[rule, ...]`, zizmor skips what follows the closing bracket.
INLINE_IGNORE = re.compile(r"#\s*zizmor:\s*ignore\[(?P<rules>[^\]]*)\](?P<after>.*)$")
# A reason: a word of two letters or more, not only punctuation or a rule name repeated in brackets.
REASON = re.compile(r"[A-Za-z]{2,}")
# The zizmor ignores of the workflows and of zizmor's configuration, every one with a reason: none so far. Adding
# one changes this count, so the reviewer sees it.
ZIZMOR_IGNORES = 0


def _explained(lines: list[str], index: int, after: str) -> bool:
    """A reason after the ignore on its own line, or a comment line of its own just above it."""
    if REASON.search(after):
        return True
    above = lines[index - 1].strip() if index > 0 else ""
    return above.startswith("#") and "zizmor:" not in above and bool(REASON.search(above))


def _inline_zizmor_ignores(text: str, source: str) -> list[tuple[str, bool]]:
    """(where, explained) of each `# zizmor: ignore[...]` of a workflow."""
    lines = text.splitlines()
    found = []
    for index, line in enumerate(lines):
        if not (match := INLINE_IGNORE.search(line)):
            continue
        assert match["rules"].strip(), f"{source}:{index + 1}: an ignore names its rules"
        found.append((f"{source}:{index + 1}: {line.strip()}", _explained(lines, index, match["after"])))
    return found


def _config_zizmor_ignores(text: str, source: str) -> list[tuple[str, bool]]:
    """(where, explained) of each ignored location and disabled rule of a zizmor configuration; the reason is a
    comment on the entry's line or the line above."""
    rules = (yaml.safe_load(text) or {}).get("rules") or {}
    expected = sum(len(rule.get("ignore") or []) + (rule.get("disable") is True) for rule in rules.values())
    lines = text.splitlines()
    found = []
    for index, line in enumerate(lines):
        code, _, comment = line.partition("#")
        if re.match(r"^\s*-\s*\S", code) or re.match(r"^\s*disable:\s*true\s*$", code):
            found.append((f"{source}:{index + 1}: {line.strip()}", _explained(lines, index, comment)))
    # Entries in flow style (`ignore: [a.yml:1]`) escape the line scan: write one entry per line.
    assert len(found) == expected, f"{source}: write each ignore on a line of its own, with its reason"
    return found


def _zizmor_ignores() -> list[tuple[str, bool]]:
    found = []
    for path in sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")]):
        found += _inline_zizmor_ignores(path.read_text(encoding="utf-8"), path.name)
    for path in ZIZMOR_CONFIGS:
        if path.exists():
            found += _config_zizmor_ignores(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    return found


def test_every_zizmor_ignore_has_a_reason() -> None:
    ignores = _zizmor_ignores()
    unexplained = [where for where, explained in ignores if not explained]
    assert not unexplained, "zizmor ignores without a reason (after the rule list, or a comment line above):\n" + (
        "\n".join(unexplained)
    )
    assert len(ignores) == ZIZMOR_IGNORES, f"update ZIZMOR_IGNORES once the new ignores are reviewed: {ignores}"


@pytest.mark.parametrize(
    ("text", "explained"),
    [
        ("    uses: a/b@x # zizmor: ignore[unpinned-uses]", [False]),
        ("    uses: a/b@x # zizmor: ignore[unpinned-uses] --", [False]),
        ("    uses: a/b@x # zizmor: ignore[unpinned-uses] our own action, pinned by tag on purpose", [True]),
        ("    # our own action, pinned by tag on purpose\n    uses: a/b@x # zizmor: ignore[unpinned-uses]", [True]),
        ("    run: echo # x\n    uses: a/b@x # zizmor: ignore[unpinned-uses]", [False]),
        ("    # zizmor: ignore[artipacked] no token\n    uses: a/b@x # zizmor: ignore[unpinned-uses]", [True, False]),
    ],
)
def test_the_zizmor_ignore_scan_tells_a_reason(text: str, explained: list[bool]) -> None:
    assert [reason for _, reason in _inline_zizmor_ignores(text, "w.yml")] == explained


def test_the_zizmor_config_scan_tells_a_reason() -> None:
    config = (
        "rules:\n"
        "  unpinned-uses:\n"
        "    ignore:\n"
        "      - deploy-dev.yml:12 # our own action\n"
        "      # the runner image is ours\n"
        "      - deploy-dev.yml:30\n"
        "      - validate.yml:40\n"
        "  excessive-permissions:\n"
        "    disable: true\n"
    )
    assert [reason for _, reason in _config_zizmor_ignores(config, "zizmor.yml")] == [True, True, False, False]
    with pytest.raises(AssertionError, match="a line of its own"):
        _config_zizmor_ignores("rules:\n  artipacked:\n    ignore: [validate.yml:1] # why\n", "zizmor.yml")


# ------------------------------------------------------------------------------------------------ hardening


def test_permissions_are_empty_at_the_top_and_explicit_per_job(workflows: dict[str, Workflow]) -> None:
    for name, workflow in workflows.items():
        assert workflow.get("permissions") == {}, f"{name}: top-level `permissions: {{}}`"
        for job_id, job in _jobs(workflow).items():
            assert "permissions" in job, f"{name}/{job_id}: declare the job's permissions"


def test_write_permissions_only_where_needed(workflows: dict[str, Workflow]) -> None:
    allowed = {
        ("validate", "deployed-diff"): {"id-token"},
        ("validate", "comment"): {"pull-requests"},
        ("deploy-dev", "deploy"): {"id-token"},
        ("promote-staging", "promote"): {"id-token"},
        ("promote-prod", "promote"): {"id-token", "deployments"},
    }
    for name, workflow in workflows.items():
        for job_id, job in _jobs(workflow).items():
            writes = {scope for scope, level in (job["permissions"] or {}).items() if level == "write"}
            assert writes == allowed.get((name, job_id), set()), f"{name}/{job_id} writes {sorted(writes)}"


def test_concurrency_one_run_per_pull_request_or_environment(workflows: dict[str, Workflow]) -> None:
    groups = {}
    for name, workflow in workflows.items():
        concurrency = workflow.get("concurrency")
        assert isinstance(concurrency, dict), f"{name}: a concurrency group"
        assert concurrency.get("group"), f"{name}: a concurrency group"
        groups[name] = concurrency["group"]
        # A newer push supersedes a PR check; a deployment is never cancelled halfway.
        assert concurrency.get("cancel-in-progress") is (name == "validate"), name
    assert groups["validate"] == "validate-${{ github.event.pull_request.number }}"
    assert {groups[name] for name in DEPLOY_WORKFLOWS} == {"deploy-dev", "deploy-staging", "deploy-production"}


def test_every_job_has_a_timeout(workflows: dict[str, Workflow]) -> None:
    for name, workflow in workflows.items():
        for job_id, job in _jobs(workflow).items():
            timeout = job.get("timeout-minutes")
            assert isinstance(timeout, int), f"{name}/{job_id}: timeout-minutes"
            assert 0 < timeout <= 120, f"{name}/{job_id}: timeout-minutes"


def test_actions_are_pinned_to_a_commit_with_the_version_in_a_comment(
    workflows: dict[str, Workflow], texts: dict[str, str]
) -> None:
    shas: dict[str, set[str]] = {}
    for name, workflow in workflows.items():
        for job_id, step in _steps(workflow):
            if "uses" in step:
                match = SHA_PIN.match(step["uses"])
                assert match, f"{name}/{job_id}: {step['uses']} is not pinned to a 40-hex commit SHA"
                shas.setdefault(match["action"], set()).add(match["sha"])
        for line in texts[name].splitlines():
            if found := USES_LINE.match(line):
                assert re.fullmatch(r"\s*#\s*v\d+(\.\d+)*\s*", found["comment"]), f"{name}: version comment on {line}"
    assert all(len(pins) == 1 for pins in shas.values()), f"one commit per action: {shas}"


def test_checkouts_do_not_persist_the_token(workflows: dict[str, Workflow]) -> None:
    checkouts = 0
    for name, workflow in workflows.items():
        for job_id, step in _steps(workflow):
            if step.get("uses", "").startswith("actions/checkout@"):
                checkouts += 1
                assert step.get("with", {}).get("persist-credentials") is False, f"{name}/{job_id}"
    assert checkouts >= 5


def test_no_long_lived_aws_keys(texts: dict[str, str]) -> None:
    for name, text in texts.items():
        for forbidden in ("AWS_ACCESS_KEY_ID", "aws-access-key-id", "AWS_SECRET_ACCESS_KEY", "aws-secret-access-key"):
            assert forbidden not in text, f"{name} mentions {forbidden}: use the OIDC roles"


def test_no_expressions_inside_scripts(workflows: dict[str, Workflow]) -> None:
    """Inputs, branch names, PR titles... reach scripts through `env:` only, never as `${{ }}` in the code."""
    for name, workflow in workflows.items():
        for job_id, step in _steps(workflow):
            for code in (step.get("run"), step.get("with", {}).get("script")):
                assert code is None or "${{" not in code, f"{name}/{job_id}/{step.get('name')}: expression in code"


def test_secrets_reach_steps_through_env_only(workflows: dict[str, Workflow], texts: dict[str, str]) -> None:
    used = {name: set(re.findall(r"secrets\.(\w+)", text)) for name, text in texts.items()}
    assert set().union(*used.values()) == {"SLACK_WEBHOOK_URL"}
    for name, workflow in workflows.items():
        for job_id, step in _steps(workflow):
            outside_env = {key: value for key, value in step.items() if key != "env"}
            assert "secrets." not in json.dumps(outside_env), f"{name}/{job_id}/{step.get('name')}"


def test_no_dependency_caches_in_deployments(workflows: dict[str, Workflow]) -> None:
    for name in DEPLOY_WORKFLOWS:
        for job_id, step in _steps(workflows[name]):
            inputs = step.get("with", {})
            assert "cache" not in inputs, f"{name}/{job_id}: no caches where images and stacks are deployed"
            if step.get("uses", "").startswith("actions/setup-node@"):
                assert inputs.get("package-manager-cache") is False, f"{name}/{job_id}"
            # actions/cache@, actions/cache/restore@, actions/cache/save@
            assert not step.get("uses", "").startswith("actions/cache"), f"{name}/{job_id}: {step['uses']}"


def test_deployments_install_only_the_pinned_runtime(workflows: dict[str, Workflow]) -> None:
    for name in DEPLOY_WORKFLOWS:
        (install,) = [step["run"] for _, step in _steps(workflows[name]) if "npm ci" in step.get("run", "")]
        assert "-r requirements.txt -r requirements-ops.txt -c constraints.txt" in install, name
        assert "requirements-dev.txt" not in install, f"{name}: no test tools where AWS credentials are"
        assert "pip check" in install, name


# ------------------------------------------------------------------------------------------------ AWS access


def test_aws_access_is_an_oidc_role_per_environment(workflows: dict[str, Workflow]) -> None:
    for name, (role, environment) in ROLES.items():
        aws_jobs = {
            job_id: job
            for job_id, job in _jobs(workflows[name]).items()
            if any(step.get("uses", "").startswith("aws-actions/configure-aws-credentials@") for step in job["steps"])
        }
        assert len(aws_jobs) == 1, f"{name}: one job with AWS access"
        ((job_id, job),) = aws_jobs.items()
        assert job["permissions"].get("id-token") == "write", f"{name}/{job_id}: id-token: write"
        (credentials,) = [
            s for s in job["steps"] if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")
        ]
        inputs = credentials["with"]
        assert inputs["role-to-assume"] == f"arn:aws:iam::${{{{ vars.AWS_ACCOUNT_ID }}}}:role/{role}"
        assert inputs["aws-region"] == "${{ vars.AWS_REGION }}"
        assert inputs["allowed-account-ids"] == "${{ vars.AWS_ACCOUNT_ID }}"
        # MlopsCi trusts the dev role for refs/heads/main and the others for their GitHub environment only.
        declared = job.get("environment")
        declared_name = declared["name"] if isinstance(declared, dict) else declared
        assert declared_name == environment, f"{name}/{job_id}: environment {declared_name!r}"


def test_promotions_require_their_github_environment(workflows: dict[str, Workflow]) -> None:
    staging = _jobs(workflows["promote-staging"])["promote"]["environment"]
    production = _jobs(workflows["promote-prod"])["promote"]["environment"]
    assert staging["name"] == "staging"
    assert production["name"] == "production"
    assert production["deployment"] is False  # the workflow creates the deployment record itself
    for name in ("promote-staging", "promote-prod"):
        assert set(workflows[name]["on"]) == {"workflow_dispatch"}, name


# ------------------------------------------------------------------------------------------------ validate.yml


def test_validate_runs_locked_installs_lint_tests_and_synth(workflows: dict[str, Workflow]) -> None:
    validate = workflows["validate"]
    assert set(validate["on"]["pull_request"]["types"]) >= {"opened", "synchronize", "reopened", "labeled", "unlabeled"}
    runs = [step.get("run", "") for step in _jobs(validate)["test"]["steps"]]
    assert runs.index("make install") < runs.index(".venv/bin/python -m pip check") < runs.index("make test")
    drift = _step(validate, "test", "Fail on drift from constraints.txt")["run"]
    assert "pip" in drift
    assert "freeze" in drift
    assert "constraints.txt" in drift
    assert any(run.startswith("npx cdk synth") for run in runs)


def test_drift_check_fails_on_an_unpinned_or_different_version(workflows: dict[str, Workflow], tmp_path: Path) -> None:
    script = _step(workflows["validate"], "test", "Fail on drift from constraints.txt")["run"].replace(
        ".venv/bin/python", sys.executable
    )
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    (tmp_path / "constraints.txt").write_text("# pins\n" + "\n".join(frozen) + "\n", encoding="utf-8")
    assert _bash(script, tmp_path).returncode == 0

    name, _, version = frozen[0].partition("==")
    drifted = [f"{name}=={version}.post99", *frozen[2:], "not-installed-anywhere==1.0"]
    (tmp_path / "constraints.txt").write_text("\n".join(drifted) + "\n", encoding="utf-8")
    result = _bash(script, tmp_path)
    assert result.returncode != 0
    assert f"constraints.txt pins {version}.post99" in result.stdout
    assert "is installed but not pinned" in result.stdout
    assert "not-installed-anywhere==1.0 is pinned but not installed" in result.stdout


def test_validate_diffs_against_the_base_branch_with_full_history(workflows: dict[str, Workflow]) -> None:
    validate = workflows["validate"]
    checkout = _jobs(validate)["diff"]["steps"][0]
    assert checkout["with"]["fetch-depth"] == 0
    diff = _step(validate, "diff", "diff")
    assert diff["env"]["BASE_REF"] == "${{ github.base_ref }}"
    assert '--base "origin/$BASE_REF"' in diff["run"]


LABELS_EXPRESSION = re.compile(
    r"^\$\{\{ contains\(github\.event\.pull_request\.labels\.\*\.name, '(?P<label>[\w-]+)'\) \}\}$"
)


def _labels_contain(expression: str, event: dict[str, Any]) -> str:
    """What GitHub makes of `${{ contains(github.event.pull_request.labels.*.name, '<label>') }}` for an event."""
    match = LABELS_EXPRESSION.match(expression)
    assert match, f"not a test of the pull request's labels: {expression}"
    names = [label["name"] for label in event["pull_request"]["labels"]]
    return str(match["label"] in names).lower()


@pytest.mark.parametrize(
    ("exit_code", "label", "gate_passes"),
    [(0, False, True), (8, False, False), (0, True, True), (2, False, False), (8, True, False)],
)
def test_validate_fails_on_destructive_changes_unless_labelled(
    workflows: dict[str, Workflow], tmp_path: Path, exit_code: int, label: bool, gate_passes: bool
) -> None:
    """The diff step reads the label and hands it on (to mlops-ops diff, and as its output allow_destroy); the gate
    reads that output. With the label, mlops-ops diff exits 0 on a destructive change, and the gate warns."""
    validate = workflows["validate"]
    diff = _step(validate, "diff", "diff")
    assert diff["env"]["ALLOW_DESTROY"] == "${{ contains(github.event.pull_request.labels.*.name, 'allow-destroy') }}"
    stub = tmp_path / ".venv" / "bin" / "mlops-ops"
    stub.parent.mkdir(parents=True)
    stub.write_text(
        "#!/bin/bash\n"
        'echo "$*" > "$RUNNER_TEMP/args"\n'
        "while [[ $# -gt 0 ]]; do [[ $1 == --output ]] && out=$2; shift; done\n"
        "printf '## Stacks\\n\\nEOF\\n' > \"$out\"\n"
        f"exit {exit_code}\n",
        encoding="utf-8",
    )
    stub.chmod(0o755)
    labels = [{"name": "documentation"}, *([{"name": "allow-destroy"}] if label else [])]
    allow_destroy = _labels_contain(diff["env"]["ALLOW_DESTROY"], {"pull_request": {"labels": labels}})
    assert allow_destroy == str(label).lower()
    result = _bash(diff["run"], tmp_path, BASE_REF="main", ALLOW_DESTROY=allow_destroy)
    assert result.returncode == 0, result.stderr  # the report must reach the comment job first
    args = (tmp_path / "args").read_text(encoding="utf-8").split()
    assert args[:3] == ["diff", "--base", "origin/main"]
    assert ("--allow-destroy" in args) is label
    outputs = (tmp_path / "output").read_text(encoding="utf-8")
    assert "## Stacks" in outputs
    step_outputs = _outputs(tmp_path)
    assert step_outputs["exit_code"] == str(exit_code)
    assert step_outputs["allow_destroy"] == str(label).lower()
    # The job hands it on to the comment job too.
    assert _jobs(validate)["diff"]["outputs"]["allow_destroy"] == "${{ steps.diff.outputs.allow_destroy }}"

    gate = _step(validate, "diff", "Destructive-change gate")
    assert gate["env"] == {
        "CODE": "${{ steps.diff.outputs.exit_code }}",
        "ALLOW_DESTROY": "${{ steps.diff.outputs.allow_destroy }}",
    }
    wired = {key: re.fullmatch(r"\$\{\{ steps\.diff\.outputs\.(\w+) \}\}", value) for key, value in gate["env"].items()}
    gate_env = {key: step_outputs[match[1]] for key, match in wired.items() if match}
    verdict = _bash(gate["run"], tmp_path, **gate_env)
    assert (verdict.returncode == 0) is gate_passes
    warning = "::warning title=allow-destroy::The label allow-destroy is set"
    assert (warning in verdict.stdout) is (label and exit_code == 0)
    if exit_code == 8:
        assert "::error title=Destructive change::" in verdict.stdout
        assert "add the label allow-destroy" in verdict.stdout


def test_validate_posts_and_updates_one_comment(workflows: dict[str, Workflow]) -> None:
    comment = _jobs(workflows["validate"])["comment"]
    assert comment["permissions"] == {"pull-requests": "write"}
    assert set(comment["needs"]) == {"diff", "deployed-diff"}
    assert "!cancelled()" in comment["if"]  # the report is posted when the gate fails too
    (step,) = comment["steps"]  # no checkout: the job with write access runs none of the PR's code
    assert step["uses"].startswith("actions/github-script@")
    script = step["with"]["script"]
    assert f"const marker = '{MARKER}';" in script
    for call in (
        "github.rest.issues.listComments",
        "github.rest.issues.updateComment",
        "github.rest.issues.createComment",
    ):
        assert call in script
    assert script.index("updateComment") < script.index("createComment")  # update the previous one, else create
    assert step["env"]["REPORT"] == "${{ needs.diff.outputs.report }}"


# ------------------------------------------------------------------------------------------------ deployments


def test_deploy_dev_builds_tags_deploys_smokes_and_notifies(workflows: dict[str, Workflow]) -> None:
    dev = workflows["deploy-dev"]
    assert dev["on"] == {"push": {"branches": ["main"]}}
    tag = _step(dev, "deploy", "tag")["run"]
    assert "${GITHUB_SHA::7}" in tag
    build = _step(dev, "deploy", "Build and push images")
    for repository in ("mlops-backend", "mlops-frontend", "mlops-inference"):
        assert f"build {repository} " in build["run"]
    assert build["env"]["FRONTEND_DOCKERFILE"] == "${{ vars.FRONTEND_DOCKERFILE || 'Dockerfile.prod' }}"
    assert build["env"]["IMAGE_TAG"] == "${{ steps.tag.outputs.image_tag }}"
    deploy = _step(dev, "deploy", "Deploy MlopsDev")["run"]
    assert deploy.startswith('npx cdk deploy MlopsDev -c "imageTag=$IMAGE_TAG" --require-approval never')
    smoke = _step(dev, "deploy", "Smoke test (public endpoints)")["run"]
    assert "aws ecs describe-services --cluster mlops-dev --services mlops-backend-service" in smoke
    assert ".venv/bin/mlops-ops smoke --env dev --public-only" in smoke
    notify = _jobs(dev)["notify"]
    assert notify["if"] == "always()"
    assert notify["environment"] == {"name": "dev", "deployment": False}
    (slack,) = notify["steps"]
    assert slack["env"]["SLACK_WEBHOOK_URL"] == "${{ secrets.SLACK_WEBHOOK_URL }}"
    assert "curl --fail" in slack["run"]
    assert '"$SLACK_WEBHOOK_URL"' in slack["run"]


@pytest.mark.parametrize(("desired", "checks"), [("1", ["--public-only"]), ("0", ["--only", "frontend"])])
def test_deploy_dev_smokes_the_frontend_only_after_hours(
    workflows: dict[str, Workflow], tmp_path: Path, desired: str, checks: list[str]
) -> None:
    """Dev scales every service to 0 after hours (config/dev.toml [services.schedule]): no backend to check then."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(
        '#!/bin/bash\necho "$*" > "$RUNNER_TEMP/aws-args"\necho "$DESIRED"\n', encoding="utf-8"
    )
    stub = tmp_path / ".venv" / "bin" / "mlops-ops"
    stub.parent.mkdir(parents=True)
    stub.write_text('#!/bin/bash\necho "$*" > "$RUNNER_TEMP/args"\n', encoding="utf-8")
    for tool in (bin_dir / "aws", stub):
        tool.chmod(0o755)
    smoke = _step(workflows["deploy-dev"], "deploy", "Smoke test (public endpoints)")["run"]
    result = _bash(smoke, tmp_path, DESIRED=desired, PATH=f"{bin_dir}:{os.environ['PATH']}")
    assert result.returncode == 0, result.stdout + result.stderr
    aws_args = (tmp_path / "aws-args").read_text(encoding="utf-8").split()
    assert aws_args[:2] == ["ecs", "describe-services"]
    assert (tmp_path / "args").read_text(encoding="utf-8").split() == ["smoke", "--env", "dev", *checks]
    summary = (tmp_path / "summary").read_text(encoding="utf-8")
    assert ("frontend only" in summary) is (desired == "0")


TAGGING_AWS_STUB = """#!/bin/bash
echo "$*" >> "$RUNNER_TEMP/aws-calls"
case "$1 $2" in
  "ecr batch-get-image")
    if [[ "$*" == *mlops-frontend* ]]; then echo None; else printf '%s\\t%s\\n' "$MEDIA_TYPE" "$MANIFEST"; fi ;;
  "ecr describe-images") [[ "$*" == *mlops-inference* ]] ;;  # inference: tagged by an earlier promotion
esac
"""


@pytest.mark.parametrize(("name", "environment"), [("promote-staging", "staging"), ("promote-prod", "production")])
def test_promotions_tag_what_they_deployed_so_the_registry_keeps_it(
    workflows: dict[str, Workflow], tmp_path: Path, name: str, environment: str
) -> None:
    """The registry's lifecycle keeps images tagged with the promotion prefixes (mlops_infra/names.py); the step
    re-tags the deployed image (same manifest, so the same image) after the rollout check and before the smoke test."""
    from mlops_infra.names import PROMOTED_TAG_PREFIXES

    prefix = PROMOTED_TAG_PREFIXES[environment]
    (job_id,) = _jobs(workflows[name])
    names = [step.get("name", "") for step in _jobs(workflows[name])[job_id]["steps"]]
    tagging = f"Tag the promoted images {prefix}<tag>"
    assert names.index("Wait for the ECS deployments to finish or roll back") < names.index(tagging)
    assert names.index(tagging) < names.index("Smoke test (public endpoints)")
    step = _step(workflows[name], job_id, tagging)
    assert step["env"]["PROMOTED_TAG"] == prefix + "${{ steps.inputs.outputs.image_tag }}"

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(TAGGING_AWS_STUB, encoding="utf-8")
    (bin_dir / "aws").chmod(0o755)
    manifest = '{"schemaVersion": 2, "layers": []}'
    result = _bash(
        step["run"],
        tmp_path,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        IMAGE_TAG="abc1234",
        PROMOTED_TAG=f"{prefix}abc1234",
        MEDIA_TYPE="application/vnd.oci.image.manifest.v1+json",
        MANIFEST=manifest,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    calls = (tmp_path / "aws-calls").read_text(encoding="utf-8").splitlines()
    puts = [call for call in calls if call.startswith("ecr put-image")]
    assert puts == [
        f"ecr put-image --repository-name mlops-backend --image-tag {prefix}abc1234 --image-manifest {manifest} "
        "--image-manifest-media-type application/vnd.oci.image.manifest.v1+json"
    ]
    assert "mlops-frontend has no image abc1234" in result.stdout  # nothing to tag: a notice, not a failure
    assert f"Tagged mlops-backend:abc1234 as {prefix}abc1234" in (tmp_path / "summary").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["promote-staging", "promote-prod"])
def test_promotions_validate_image_tag_before_any_use(workflows: dict[str, Workflow], name: str) -> None:
    workflow = workflows[name]
    inputs = workflow["on"]["workflow_dispatch"]["inputs"]
    assert inputs["image_tag"]["required"] is True
    steps = _jobs(workflow)["promote"]["steps"]
    first = steps[0]
    assert first["id"] == "inputs"
    assert first["env"] == {"IMAGE_TAG": "${{ inputs.image_tag }}"}
    assert TAG_REGEX in first["run"]
    # Every later step gets the validated output, never the raw input.
    assert "inputs.image_tag" not in json.dumps(steps[1:])
    deploy = _step(workflow, "promote", "deploy")
    assert deploy["env"]["IMAGE_TAG"] == "${{ steps.inputs.outputs.image_tag }}"
    stack = workflow["env"]["STACK"]
    assert stack == {"promote-staging": "MlopsStaging", "promote-prod": "MlopsProd"}[name]
    assert (
        deploy["run"] == 'npx cdk deploy "$STACK" -c "imageTag=$IMAGE_TAG" --require-approval never --progress events'
    )


@pytest.mark.parametrize(
    ("tag", "valid"),
    [
        ("1a2b3c4", True),
        ("v1.2.3_rc-1", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("-leading-dash", False),
        (".hidden", False),
        ("tag;rm -rf /", False),
        ("tag\n::stop-commands::x", False),
        ("$(id)", False),
        ("", False),
    ],
)
def test_image_tag_validation(workflows: dict[str, Workflow], tmp_path: Path, tag: str, valid: bool) -> None:
    for name in ("promote-staging", "promote-prod"):
        script = _jobs(workflows[name])["promote"]["steps"][0]["run"]
        result = _bash(script, tmp_path, IMAGE_TAG=tag, GITHUB_REF="refs/heads/main")
        assert (result.returncode == 0) is valid, f"{name}: {tag!r}"
        assert (_outputs(tmp_path).get("image_tag") == tag) is valid
        if not valid and tag:
            assert tag not in result.stdout  # a rejected tag is never echoed (workflow-command injection)


@pytest.mark.parametrize("name", ["promote-staging", "promote-prod"])
def test_promotions_run_from_main_only(workflows: dict[str, Workflow], tmp_path: Path, name: str) -> None:
    script = _jobs(workflows[name])["promote"]["steps"][0]["run"]
    result = _bash(script, tmp_path, IMAGE_TAG="1a2b3c4", GITHUB_REF="refs/heads/feature")
    assert result.returncode != 0
    assert "main" in result.stdout


# A canned AWS CLI: SCENARIO picks the answers of describe-services / describe-stacks / describe-alarms.
AWS_STUB = r"""#!/bin/bash
n=$(( $(cat "$STATE/count" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$STATE/count"
case "$1 $2" in
  "cloudwatch describe-alarms")
    echo x >> "$STATE/alarm-polls"
    shift 2; names=()
    while [[ $# -gt 0 && $1 != --query ]]; do [[ $1 != --alarm-names ]] && names+=("$1"); shift; done
    [[ $SCENARIO == missing ]] && names=("${names[@]:0:2}")
    for alarm in "${names[@]}"; do
      state=OK; [[ $SCENARIO == alarm && $n -ge 9 && $alarm == *inference-deploy-5xx ]] && state=ALARM
      printf '%s\t%s\n' "$alarm" "$state"
    done ;;
  "ecs describe-services")
    [[ "$*" == *"length(deployments)"* ]] && exit 0
    for arg in "$@"; do [[ $previous == --services ]] && service=$arg; previous=$arg; done
    breaker="ECS deployment circuit breaker"
    case "$SCENARIO:$service" in
      rollback:mlops-inference) printf 'COMPLETED\t%s: rolling back to ecs-svc/1\tarn:td/inference:7\n' "$breaker" ;;
      failed:mlops-mlflow) printf 'FAILED\t%s: tasks failed to start.\tarn:td/mlflow:3\n' "$breaker" ;;
      *) printf 'COMPLETED\tECS deployment ecs-svc/9 completed.\tarn:td/%s:5\n' "$service" ;;
    esac ;;
  "ecs wait") exit 0 ;;
  "cloudformation describe-stacks")
    [[ $SCENARIO == stack ]] && echo UPDATE_ROLLBACK_COMPLETE || echo UPDATE_COMPLETE ;;
  *) echo "unexpected: aws $*" >&2; exit 2 ;;
esac
"""
# A clock that moves 30 seconds per `date +%s`, so the bake passes without waiting for it.
DATE_STUB = r"""#!/bin/bash
if [[ $1 == +%s ]]; then
  now=$(( $(cat "$STATE/clock" 2>/dev/null || echo 1700000000) + 30 )); echo "$now" > "$STATE/clock"; echo "$now"
else
  exec {date} "$@"
fi
"""


@pytest.fixture
def aws_stub(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(AWS_STUB, encoding="utf-8")
    (bin_dir / "sleep").write_text("#!/bin/bash\n", encoding="utf-8")
    (bin_dir / "date").write_text(
        DATE_STUB.replace("{date}", shutil.which("date") or "/usr/bin/date"), encoding="utf-8"
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "STATE": str(tmp_path)}


@pytest.mark.parametrize("name", ["promote-staging", "promote-prod"])
@pytest.mark.parametrize(
    ("scenario", "rolled_back"), [("ok", False), ("rollback", True), ("failed", True), ("stack", True)]
)
def test_promotions_fail_loudly_on_rollback(
    workflows: dict[str, Workflow],
    tmp_path: Path,
    aws_stub: dict[str, str],
    name: str,
    scenario: str,
    rolled_back: bool,
) -> None:
    workflow = workflows[name]
    rollout = _step(workflow, "promote", "rollout")
    assert "aws ecs wait services-stable" in rollout["run"]
    assert "rolloutState" in rollout["run"]
    assert rollout["if"] == "${{ !cancelled() && steps.deploy.outcome != 'skipped' }}"
    env = {key: str(value) for key, value in workflow["env"].items()}
    assert env["ECS_SERVICES"] == "mlops-backend-service mlops-mlflow mlops-inference"
    result = _bash(rollout["run"], tmp_path, SCENARIO=scenario, **env, **aws_stub)
    assert (result.returncode != 0) is rolled_back, result.stdout + result.stderr
    assert _outputs(tmp_path)["rolled_back"] == str(rolled_back).lower()
    if rolled_back:
        assert "::error title=" in result.stdout
        assert "ROLLED BACK" in result.stdout.upper()
    assert "| mlops-inference |" in (tmp_path / "summary").read_text(encoding="utf-8")


@pytest.mark.parametrize(("scenario", "fired"), [("ok", ""), ("alarm", "mlops-prod-inference-deploy-5xx")])
def test_prod_watches_the_deployment_alarms_through_the_bake(
    workflows: dict[str, Workflow], tmp_path: Path, aws_stub: dict[str, str], scenario: str, fired: str
) -> None:
    prod = workflows["promote-prod"]
    watch = _step(prod, "promote", "watch")
    assert watch["if"] == "steps.deploy.outcome == 'success'"
    assert "aws cloudwatch describe-alarms" in watch["run"]
    assert "deadline" in watch["run"]
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config" / "prod.toml", tmp_path / "config" / "prod.toml")
    env = {key: str(value) for key, value in prod["env"].items()}
    result = _bash(watch["run"], tmp_path, SCENARIO=scenario, **env, **aws_stub)
    assert (result.returncode == 0) is (not fired), result.stdout + result.stderr
    assert _outputs(tmp_path)["fired"] == fired
    polls = len((tmp_path / "alarm-polls").read_text(encoding="utf-8").split())
    if not fired:  # the clock moves 30 s per poll: the watch lasted the whole bake (5 minutes in config/prod.toml)
        assert polls >= 10
    summary = (tmp_path / "summary").read_text(encoding="utf-8")
    for service in ("backend", "mlflow", "inference"):
        assert f"| mlops-prod-{service}-deploy-5xx |" in summary
        assert f"| mlops-prod-{service}-deploy-p99-latency |" in summary


def test_prod_fails_when_the_deployment_alarms_are_missing(
    workflows: dict[str, Workflow], tmp_path: Path, aws_stub: dict[str, str]
) -> None:
    prod = workflows["promote-prod"]
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config" / "prod.toml", tmp_path / "config" / "prod.toml")
    env = {key: str(value) for key, value in prod["env"].items()}
    result = _bash(_step(prod, "promote", "watch")["run"], tmp_path, SCENARIO="missing", **env, **aws_stub)
    assert result.returncode != 0
    assert "Deployment alarms missing" in result.stdout


def test_prod_reports_a_github_deployment(workflows: dict[str, Workflow]) -> None:
    prod = workflows["promote-prod"]
    steps = _jobs(prod)["promote"]["steps"]
    start = _step(prod, "promote", "deployment")
    finish = _step(prod, "promote", "Finish the GitHub deployment")
    assert steps.index(start) < steps.index(_step(prod, "promote", "deploy")) < steps.index(finish)
    assert "github.rest.repos.createDeployment(" in start["with"]["script"]
    assert "state: 'in_progress'" in start["with"]["script"]
    assert finish["if"] == "always() && steps.deployment.outputs.id != ''"
    assert "github.rest.repos.createDeploymentStatus(" in finish["with"]["script"]
    for state in ("'success'", "'failure'", "'error'"):
        assert state in finish["with"]["script"]
    assert finish["env"]["ROLLED_BACK"] == "${{ steps.rollout.outputs.rolled_back }}"


# ------------------------------------------------------------------------------------------------ docs


def test_docs_name_every_variable_secret_and_environment(texts: dict[str, str]) -> None:
    docs = DOCS.read_text(encoding="utf-8")
    text = "\n".join(texts.values())
    for name in set(re.findall(r"\b(?:vars|secrets)\.(\w+)", text)):
        assert f"`{name}`" in docs, f"README.md (Delivery) does not document {name}"
    for environment in ("`dev`", "`staging`", "`production`", "`allow-destroy`"):
        assert environment in docs
    for workflow in EXPECTED:
        assert f"{workflow}.yml" in docs
