"""Deploy MlopsDev with the real CDK CLI to a local AWS (moto), then redeploy it with a new image tag.

What it proves beyond the synth tests: the CLI's bootstrap, asset publishing, change sets of both stacks in
dependency order, cross-stack exports, and an update by `-c imageTag=...`, against CloudFormation as moto
emulates it (tests/moto_patches.py lists its gaps). Needs neither an AWS account nor Docker: the MLflow image
is pulled from the registry (a copy of config/ with `image = "registry"`), and the one custom resource
(restrict the default security group) is answered by a watcher (tests/moto_harness.py).

Resource types moto does not emulate are stood in for; UNEMULATED is their reviewed list, so a new such type
fails the test until someone decides the local deploy still proves enough.

`make deploy-local` runs this module alone (about 40 s); `make test` runs it with the rest.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.moto_harness import ACCOUNT, REGION, CliRun, CustomResourceWatcher, MotoServer, cli_env, run_cli
from tests.moto_patches import STUBS, unemulated_types

ROOT = Path(__file__).resolve().parent.parent
CDK = ROOT / "node_modules" / ".bin" / "cdk"
TIMEOUT = 150  # seconds, per CLI command (measured: bootstrap ~13 s, deploy ~15 s, redeploy ~10 s)
NEW_TAG = "abc1234"
FAMILIES = ("mlops-backend-service", "mlops-mlflow", "mlops-inference")

# Reviewed: resource types of MlopsDevFoundation and MlopsDev that moto 5.2.5 has no CloudFormation model for.
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
    server: MotoServer
    outdir: Path
    env: dict[str, str]
    watcher: CustomResourceWatcher
    runs: list[CliRun] = field(default_factory=list)
    images_before_update: dict[str, list[str]] = field(default_factory=dict)

    def log(self) -> str:
        runs = "\n\n".join(run.describe() for run in self.runs)
        return f"{runs}\n\nwatcher answered: {self.watcher.answered}\nwatcher errors: {self.watcher.errors}"

    def cli(self, *args: str, cwd: Path = ROOT, timeout: float = TIMEOUT) -> CliRun:
        run = run_cli([str(CDK), *args], cwd=cwd, env=self.env, timeout=timeout)
        self.runs.append(run)
        return run

    def must(self, *args: str) -> CliRun:
        run = self.cli(*args)
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


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """moto server + watcher, bootstrap, deploy MlopsDev (and its foundation), redeploy with imageTag=NEW_TAG."""
    assert CDK.is_file(), f"{CDK} missing: run `make install` (npm ci)"
    folder = tmp_path_factory.mktemp("deploy-local")
    server = MotoServer()
    server.start()
    try:
        watcher = CustomResourceWatcher(server)
        watcher.start()
        try:
            deployment = Deployment(
                server=server,
                watcher=watcher,
                outdir=folder / "cdk.out",
                env=cli_env(server, MLOPS_CONFIG_DIR=str(_registry_config(folder))),
            )
            deploy = ["deploy", "MlopsDev", "-c", "environments=dev", "--require-approval", "never", "--method=direct"]
            deploy += ["-o", str(deployment.outdir)]
            deployment.must("bootstrap", f"aws://{ACCOUNT}/{REGION}", "-o", str(folder / "bootstrap.out"))
            deployment.must(*deploy)
            deployment.images_before_update = deployment.newest_images()
            # --force: deploy even if the CLI sees no change (the image tag must reach moto; harmless otherwise).
            deployment.must(*deploy, "-c", f"imageTag={NEW_TAG}", "--force")
            yield deployment
        finally:
            watcher.stop()
    finally:
        server.stop()


def test_stacks_deployed_and_updated(deployment: Deployment) -> None:
    assert deployment.stack("CDKToolkit")["StackStatus"] == "CREATE_COMPLETE"
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
    found = set().union(*(unemulated_types(deployment.template(s)) for s in ("MlopsDevFoundation", "MlopsDev")))
    assert found == UNEMULATED, (
        f"new (review, then add to UNEMULATED): {sorted(found - UNEMULATED)}; gone: {sorted(UNEMULATED - found)}"
    )
    stubbed = {stub.resource_type for stub in STUBS.values()}
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
    assert set(FAMILIES) <= services


def test_image_tag_rolled(deployment: Deployment) -> None:
    def tags(images: dict[str, list[str]]) -> dict[str, set[str]]:
        return {family: {image.rsplit(":", 1)[-1] for image in found} for family, found in images.items()}

    assert tags(deployment.images_before_update) == {family: {"initial"} for family in FAMILIES}
    after = deployment.newest_images()
    assert tags(after) == {family: {NEW_TAG} for family in FAMILIES}
    for family, images in after.items():
        assert all(f".dkr.ecr.{REGION}.amazonaws.com/{family.removesuffix('-service')}:" in i for i in images), images


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


def test_broken_template_fails(deployment: Deployment, tmp_path: Path) -> None:
    """A template whose Ref names no resource must fail the deploy (loudly, quickly), not pass unnoticed."""
    cdk_json = json.loads((ROOT / "cdk.json").read_text())
    (tmp_path / "cdk.json").write_text(json.dumps({"app": f"{sys.executable} app.py", "context": cdk_json["context"]}))
    (tmp_path / "app.py").write_text(BROKEN_APP)
    started = time.monotonic()
    run = deployment.cli(
        "deploy", "BrokenRef", "--require-approval", "never", "--method=direct", cwd=tmp_path, timeout=90
    )
    assert run.returncode not in (0, None), run.describe()
    # moto answers the bad Ref with an HTTP 500, the SDK retries, and the retry finds the half-made stack.
    assert "BrokenRef failed to deploy" in run.output, run.describe()
    (stack,) = deployment.server.client("cloudformation").describe_stacks(StackName="BrokenRef")["Stacks"]
    assert not stack["StackStatus"].endswith("_COMPLETE") or "ROLLBACK" in stack["StackStatus"], stack
    assert time.monotonic() - started < 90
