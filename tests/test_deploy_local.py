"""Deploy MlopsDev with the real CDK CLI to a local AWS (moto), then redeploy it with a new image tag.

What it proves beyond the synth tests: the CLI's bootstrap, asset publishing, change sets of both stacks in
dependency order, cross-stack exports, and an update by `-c imageTag=...`, against CloudFormation as moto
emulates it (tests/moto_patches.py lists its gaps). Needs neither an AWS account nor Docker: the MLflow image
is pulled from the registry (a copy of config/ with `image = "registry"`), and the one custom resource
(restrict the default security group) is answered by a watcher (tests/moto_harness.py).

Resource types moto does not emulate are stood in for; UNEMULATED is their reviewed list, so a new such type
fails the test until someone decides the local deploy still proves enough.

The CLI commands (`deploy_chain`) run in a background process with the moto server (tests/local_deploy.py),
started with the test session, so they overlap the other tests; the `deployment` fixture waits for its report,
then the tests query the server. `make deploy-local` runs this module alone (about 25 s); `make test` runs it
with the rest, last.
"""

from __future__ import annotations

import json
import shutil
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BACKGROUND
from tests.moto_harness import ACCOUNT, REGION, CliRun, LocalAws, WatcherLog, cli_env, run_cli
from tests.moto_patches import STUBS, unemulated_types

pytestmark = pytest.mark.background  # the fixture waits on the background deploy: run these tests last

ROOT = Path(__file__).resolve().parent.parent
CDK = ROOT / "node_modules" / ".bin" / "cdk"
TIMEOUT = 150  # seconds, per CLI command (measured: bootstrap ~2 s, deploy ~12 s, redeploy ~5 s)
BROKEN_TIMEOUT = 90  # seconds, the deploy of BROKEN_APP
# The whole chain, from the start of the background process (its moto server starts in about 2 s).
CHAIN_TIMEOUT = 60 + 3 * TIMEOUT + BROKEN_TIMEOUT
NEW_TAG = "abc1234"
SERVICE_NAMES = ("mlops-backend-service", "mlops-mlflow", "mlops-inference")
# Task definition family -> the ECR repository of its image.
FAMILIES = {f"mlops-dev-{name}": f"mlops-{name}" for name in ("backend", "mlflow", "inference")}

# `cdk deploy MlopsDev` and its dependencies
DEPLOYED_STACKS = ("MlopsRegistryUsEast1", "MlopsDevFoundation", "MlopsDev")
# Reviewed: resource types of DEPLOYED_STACKS that moto 5.2.5 has no CloudFormation model for.
# They are created as stand-ins (nothing to assert on); the custom resource is answered SUCCESS by the watcher.
UNEMULATED = {
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
    "AWS::Backup::BackupPlan",
    "AWS::Backup::BackupSelection",
    "AWS::Backup::BackupVault",
    "AWS::CloudFront::Distribution",
    "AWS::CloudFront::Function",
    "AWS::CloudFront::OriginAccessControl",
    "AWS::CloudFront::ResponseHeadersPolicy",
    "AWS::CloudFront::VpcOrigin",
    "AWS::CloudWatch::Alarm",
    "AWS::EC2::SecurityGroupEgress",
    "AWS::ECS::ClusterCapacityProviderAssociations",
    "AWS::S3::BucketPolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::Scheduler::Schedule",
    "Custom::VpcRestrictDefaultSG",
}


@dataclass
class Deployment:
    server: LocalAws
    outdir: Path
    watcher: WatcherLog
    env: dict[str, str] = field(default_factory=dict)
    runs: list[CliRun] = field(default_factory=list)
    images_before_update: dict[str, list[str]] = field(default_factory=dict)
    stub_types: list[str] = field(default_factory=list)  # of STUBS after the redeploy (in the background process)
    broken: CliRun | None = None  # the deploy of BROKEN_APP
    error: str | None = None  # why the chain stopped early

    def log(self) -> str:
        runs = "\n\n".join(run.describe() for run in self.runs)
        return f"{runs}\n\nwatcher answered: {self.watcher.answered}\nwatcher errors: {self.watcher.errors}"

    def cli(self, *args: str, cwd: Path = ROOT, timeout: float = TIMEOUT) -> CliRun:
        run = run_cli([str(CDK), *args], cwd=cwd, env=self.env, timeout=timeout)
        self.runs.append(run)
        return run

    def must(self, *args: str, cwd: Path = ROOT) -> CliRun:
        run = self.cli(*args, cwd=cwd)
        assert run.returncode == 0, f"CDK CLI failed\n{self.log()}"
        return run

    def stack(self, name: str) -> dict[str, Any]:
        return dict(self.server.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0])

    def template(self, stack: str) -> dict[str, Any]:
        return dict(json.loads((self.outdir / f"{stack}.template.json").read_text()))

    def newest_images(self) -> dict[str, list[str]]:
        """Family -> the container images of its newest task-definition revision."""
        ecs = self.server.client("ecs")
        images = {}
        for family in FAMILIES:
            arns = ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]
            assert arns, f"no task definition of family {family}"
            # moto ignores sort=DESC: pick the highest revision (the ARN's :N suffix) explicitly.
            newest = max(arns, key=lambda arn: int(arn.rsplit(":", 1)[1]))
            definition = ecs.describe_task_definition(taskDefinition=newest)["taskDefinition"]
            images[family] = [container["image"] for container in definition["containerDefinitions"]]
        return images

    def report(self) -> dict[str, Any]:
        """What the background process sends the test session (JSON)."""
        return {
            "endpoint": self.server.endpoint,
            "outdir": str(self.outdir),
            "watcher": {"answered": self.watcher.answered, "errors": self.watcher.errors},
            "runs": [run.to_json() for run in self.runs],
            "images_before_update": self.images_before_update,
            "stub_types": self.stub_types,
            "broken": None if self.broken is None else self.broken.to_json(),
            "error": self.error,
        }

    @classmethod
    def from_report(cls, report: dict[str, Any]) -> Deployment:
        broken = report["broken"]
        return cls(
            server=LocalAws(report["endpoint"]),
            outdir=Path(report["outdir"]),
            watcher=WatcherLog(**report["watcher"]),
            runs=[CliRun.from_json(run) for run in report["runs"]],
            images_before_update=report["images_before_update"],
            stub_types=report["stub_types"],
            broken=None if broken is None else CliRun.from_json(broken),
            error=report["error"],
        )


def _registry_config(folder: Path) -> Path:
    """A copy of config/ whose dev environment pulls the MLflow image from ECR instead of building it (no Docker)."""
    config = folder / "config"
    shutil.copytree(ROOT / "config", config)
    dev = config / "dev.toml"
    text = dev.read_text()
    lines = [line for line in text.splitlines() if line.split("#")[0].strip() == 'image = "asset"']
    assert len(lines) == 1, f'expected one `image = "asset"` line in config/dev.toml, found {lines}'
    dev.write_text(text.replace(lines[0], 'image = "registry"'))
    return config


def deploy_chain(server: LocalAws, watcher: WatcherLog, folder: Path) -> dict[str, Any]:
    """Run in the background process (tests/local_deploy.py), against its moto server: bootstrap, deploy MlopsDev (and
    DEPLOYED_STACKS), note the images, redeploy with imageTag=NEW_TAG, note the stand-ins, deploy BROKEN_APP.

    The bootstrap runs in an empty folder, as an operator bootstraps an account: in the repository root the CLI would
    synthesize the whole app first (5 s) for nothing. A failed step ends the chain; the report says why.
    """
    deployment = Deployment(server=server, watcher=watcher, outdir=folder / "cdk.out")
    try:
        deployment.env = cli_env(server, MLOPS_CONFIG_DIR=str(_registry_config(folder)))
        deploy = ["deploy", "MlopsDev", "-c", "environments=dev", "--require-approval", "never", "--method=direct"]
        deploy += ["-o", str(deployment.outdir)]
        empty = folder / "bootstrap"
        empty.mkdir()
        deployment.must("bootstrap", f"aws://{ACCOUNT}/{REGION}", cwd=empty)
        deployment.must(*deploy)
        deployment.images_before_update = deployment.newest_images()
        # --force: deploy even if the CLI sees no change (the image tag must reach moto; harmless otherwise).
        deployment.must(*deploy, "-c", f"imageTag={NEW_TAG}", "--force")
        deployment.stub_types = sorted({stub.resource_type for stub in STUBS.values()})
        deployment.broken = deploy_broken_app(deployment, folder / "broken-app")
    except AssertionError as error:  # from must(): the failed command and the log
        deployment.error = str(error)
    except Exception:
        deployment.error = f"{traceback.format_exc()}\n{deployment.log()}"
    return deployment.report()


@pytest.fixture(scope="module")
def deployment(pytestconfig: pytest.Config) -> Deployment:
    """The background deploy (moto server + watcher, bootstrap, deploy, redeploy with imageTag=NEW_TAG), once done."""
    assert CDK.is_file(), f"{CDK} missing: run `make install` (npm ci)"
    deployment = Deployment.from_report(pytestconfig.stash[BACKGROUND].local_deploy().wait(CHAIN_TIMEOUT))
    assert deployment.error is None, deployment.error
    return deployment


def test_stacks_deployed_and_updated(deployment: Deployment) -> None:
    assert deployment.stack("CDKToolkit")["StackStatus"] == "CREATE_COMPLETE"
    assert deployment.stack("MlopsRegistryUsEast1")["StackStatus"] == "CREATE_COMPLETE", deployment.log()
    assert deployment.stack("MlopsDevFoundation")["StackStatus"] == "CREATE_COMPLETE", deployment.log()
    assert deployment.stack("MlopsDev")["StackStatus"] == "UPDATE_COMPLETE", deployment.log()
    outputs = {output["OutputKey"]: output["OutputValue"] for output in deployment.stack("MlopsDev")["Outputs"]}
    assert outputs["ImageTag"] == NEW_TAG
    assert outputs["ClusterName"] == "mlops-dev"
    assert {"FrontendUrl", "LoadBalancerDns", "MlflowTrackingUri", "InferenceUrl", "SiteBucket"} <= set(outputs)
    assert outputs["MlflowTrackingUri"].endswith(":5000")
    assert [answer for answer in deployment.watcher.answered if "RestrictDefaultSecurityGroup" in answer], (
        deployment.log()
    )


def test_unemulated_types_are_reviewed(deployment: Deployment) -> None:
    found = set().union(*(unemulated_types(deployment.template(s)) for s in DEPLOYED_STACKS))
    assert found == UNEMULATED, (
        f"new (review, then add to UNEMULATED): {sorted(found - UNEMULATED)}; gone: {sorted(UNEMULATED - found)}"
    )
    stubbed = set(deployment.stub_types)  # {stub.resource_type for stub in STUBS.values()} in the server's process
    assert stubbed == UNEMULATED - {"Custom::VpcRestrictDefaultSG"}


def test_network(deployment: Deployment) -> None:
    ec2 = deployment.server.client("ec2")
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:aws:cloudformation:stack-name", "Values": ["MlopsDevFoundation"]}])
    assert len(vpcs["Vpcs"]) == 1
    vpc_id = vpcs["Vpcs"][0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    by_az: dict[str, int] = {}
    for subnet in subnets:
        by_az[subnet["AvailabilityZone"]] = by_az.get(subnet["AvailabilityZone"], 0) + 1
    assert by_az == {"us-east-1a": 3, "us-east-1b": 3}  # public, private, isolated in each


def test_services(deployment: Deployment) -> None:
    ecs = deployment.server.client("ecs")
    clusters = ecs.describe_clusters(clusters=["mlops-dev"])["clusters"]
    assert [cluster["status"] for cluster in clusters] == ["ACTIVE"]
    services = {arn.rsplit("/", 1)[-1] for arn in ecs.list_services(cluster="mlops-dev")["serviceArns"]}
    assert set(SERVICE_NAMES) <= services


def test_image_tag_rolled(deployment: Deployment) -> None:
    def tags(images: dict[str, list[str]]) -> dict[str, set[str]]:
        return {family: {image.rsplit(":", 1)[-1] for image in found} for family, found in images.items()}

    assert tags(deployment.images_before_update) == {family: {"initial"} for family in FAMILIES}
    after = deployment.newest_images()
    assert tags(after) == {family: {NEW_TAG} for family in FAMILIES}
    for family, images in after.items():
        assert all(f".dkr.ecr.{REGION}.amazonaws.com/{FAMILIES[family]}:" in i for i in images), images


def test_database(deployment: Deployment) -> None:
    (instance,) = deployment.server.client("rds").describe_db_instances(DBInstanceIdentifier="mlops-db-dev")[
        "DBInstances"
    ]
    assert instance["Engine"] == "postgres"
    assert instance["EngineVersion"] == "17.6"
    assert instance["StorageEncrypted"] is True
    assert instance["BackupRetentionPeriod"] == 7


def test_storage_and_registries(deployment: Deployment) -> None:
    repositories = deployment.server.client("ecr").describe_repositories()["repositories"]
    assert sorted(r["repositoryName"] for r in repositories if r["repositoryName"].startswith("mlops-")) == [
        "mlops-backend",
        "mlops-frontend",
        "mlops-inference",
        "mlops-mlflow",
    ]
    buckets = {bucket["Name"] for bucket in deployment.server.client("s3").list_buckets()["Buckets"]}
    assert {"example-mlops-models-dev", "example-mlops-access-logs-dev"} <= buckets


def test_load_balancer_and_alerts(deployment: Deployment) -> None:
    elbv2 = deployment.server.client("elbv2")
    (balancer,) = elbv2.describe_load_balancers()["LoadBalancers"]
    assert balancer["Scheme"] == "internal"
    groups = elbv2.describe_target_groups(LoadBalancerArn=balancer["LoadBalancerArn"])["TargetGroups"]
    assert len(groups) == 3
    topics = [topic["TopicArn"] for topic in deployment.server.client("sns").list_topics()["Topics"]]
    assert f"arn:aws:sns:{REGION}:{ACCOUNT}:mlops-dev-alerts" in topics


BROKEN_APP = """
import aws_cdk as cdk
from aws_cdk import aws_ssm as ssm

app = cdk.App()
stack = cdk.Stack(app, "BrokenRef", env=cdk.Environment(account="123456789012", region="us-east-1"))
parameter = ssm.CfnParameter(stack, "Parameter", type="String", value="placeholder")
parameter.add_property_override("Value", {"Ref": "DoesNotExist"})
app.synth()
"""


def deploy_broken_app(deployment: Deployment, folder: Path) -> CliRun:
    """Deploy BROKEN_APP (its own cdk.json, the project's context) with the CLI; in the background chain."""
    folder.mkdir()
    cdk_json = json.loads((ROOT / "cdk.json").read_text())
    (folder / "cdk.json").write_text(json.dumps({"app": f"{sys.executable} app.py", "context": cdk_json["context"]}))
    (folder / "app.py").write_text(BROKEN_APP)
    return deployment.cli(
        "deploy", "BrokenRef", "--require-approval", "never", "--method=direct", cwd=folder, timeout=BROKEN_TIMEOUT
    )


def test_broken_template_fails(deployment: Deployment) -> None:
    """A template whose Ref names no resource must fail the deploy (loudly, quickly), not pass unnoticed."""
    run = deployment.broken
    assert run is not None
    assert run.returncode not in (0, None), run.describe()
    # moto answers the bad Ref with an HTTP 500, the SDK retries, and the retry finds the half-made stack.
    assert "BrokenRef failed to deploy" in run.output, run.describe()
    (stack,) = deployment.server.client("cloudformation").describe_stacks(StackName="BrokenRef")["Stacks"]
    assert not stack["StackStatus"].endswith("_COMPLETE") or "ROLLBACK" in stack["StackStatus"], stack
    assert run.seconds < BROKEN_TIMEOUT
