"""A variant of the shipped dev config with every optional feature switched on, synthesized once.

The variant: the frontend as an ECS service behind the web listener, a custom domain with its ACM
certificate and a WAF web ACL on CloudFront, MLflow from the registry with basic auth, the feature
cache, blue/green deployments and `-c imageTag=abc1234`. Only dev.toml is copied, so only MlopsDev
and MlopsDevFoundation are synthesized (one synth for the whole module: it is the slow part).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlops_infra.config import IMAGE_TAG_RULE, ConfigError, EnvironmentConfig
from tests.conftest import ROOT, Synth

STACK = "MlopsDev"
FOUNDATION = "MlopsDevFoundation"
REGISTRY = "MlopsRegistryUsEast1"
IMAGE_TAG = "abc1234"
DOMAIN = "mlops.example.com"
CERTIFICATE_ARN = "arn:aws:acm:us-east-1:123456789012:certificate/abc"
WEB_ACL_ARN = "arn:aws:wafv2:us-east-1:123456789012:global/webacl/mlops/abc"
# ECS service name -> the ECR repository its image comes from.
SERVICE_REPOSITORIES = {
    "mlops-backend-service": "mlops-backend",
    "mlops-inference": "mlops-inference",
    "mlops-frontend-service": "mlops-frontend",
    "mlops-mlflow": "mlops-mlflow",
}
ORIGIN_CERTIFICATE_ARN = "arn:aws:acm:us-east-1:123456789012:certificate/origin"
ORIGIN_DOMAIN = "origin.mlops.example.com"
# (pattern, replacement) on the text of config/dev.toml; each pattern must match exactly once.
EDITS = (
    (
        r'^hosting = "s3"$',
        f'hosting = "ecs"\ndomain_name = "{DOMAIN}"\ncertificate_arn = "{CERTIFICATE_ARN}"\n'
        f'web_acl_arn = "{WEB_ACL_ARN}"',
    ),
    (r'^removal_policy = "snapshot".*$', 'removal_policy = "destroy"'),
    (r'^image = "asset".*$', 'image = "registry"'),
    (r"^auth = false$", "auth = true"),
    (r"^(\[cache\]\n)enabled = false$", r"\1enabled = true"),
    (r'^deployment = "rolling".*$', 'deployment = "blue_green"'),
    (
        r"^(cloudfront_prefix_list_id = .*)$",
        rf'\1\ncertificate_arn = "{ORIGIN_CERTIFICATE_ARN}"\norigin_domain_name = "{ORIGIN_DOMAIN}"',
    ),
)


def variant_config_text() -> str:
    text = (ROOT / "config" / "dev.toml").read_text(encoding="utf-8")
    for pattern, replacement in EDITS:
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert count == 1, f"config/dev.toml changed: {pattern!r} matched {count} times"
    return text


@dataclass(frozen=True)
class Variant:
    config: EnvironmentConfig
    outdir: Path
    templates: dict[str, dict[str, Any]]
    report: dict[str, Any]  # the AwsSolutions plugin's part of validation-report.json
    nag_failure: str | None  # the synth's ValidationFailed error, if cdk-nag found something
    seconds: float  # create_app + app.synth()

    def resources(self, resource_type: str, stack: str = STACK) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.templates[stack]["Resources"].items()
            if resource["Type"] == resource_type
        }

    def service(self, name: str) -> dict[str, Any]:
        (found,) = [s for s in self.resources("AWS::ECS::Service").values() if s["Properties"]["ServiceName"] == name]
        return found

    def container(self, service_name: str) -> dict[str, Any]:
        task = self.templates[STACK]["Resources"][self.service(service_name)["Properties"]["TaskDefinition"]["Ref"]]
        (container,) = task["Properties"]["ContainerDefinitions"]
        return dict(container)

    def listener_rule(self, service_name: str) -> dict[str, Any]:
        """The listener rule forwarding to the service's (blue) target group."""
        (balancer,) = self.service(service_name)["Properties"]["LoadBalancers"]
        target_group = balancer["TargetGroupArn"]
        (rule,) = [
            rule["Properties"]
            for rule in self.resources("AWS::ElasticLoadBalancingV2::ListenerRule").values()
            if rule["Properties"]["Actions"] == [{"TargetGroupArn": target_group, "Type": "forward"}]
        ]
        return dict(rule)

    def distribution(self) -> dict[str, Any]:
        (distribution,) = self.resources("AWS::CloudFront::Distribution").values()
        return dict(distribution["Properties"]["DistributionConfig"])


def aws_solutions_report(outdir: Path) -> dict[str, Any]:
    plugin_reports = json.loads((outdir / "validation-report.json").read_text())["pluginReports"]
    (report,) = [r for r in plugin_reports if r["pluginName"] == "AwsSolutions"]
    return dict(report)


def acknowledged_rules(report: dict[str, Any], stack: str) -> set[str]:
    """Rule IDs (without their [finding] part) acknowledged on constructs of one stack."""
    return {
        violation["ruleName"].split("[")[0]
        for violation in report["suppressedViolations"]
        for construct in violation["violatingConstructs"]
        if construct["constructPath"].split("/")[0] == stack
    }


@pytest.fixture(scope="module")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Variant:
    from mlops_infra.cdk_app import create_app, project_context

    config_dir = tmp_path_factory.mktemp("variant-config")
    (config_dir / "dev.toml").write_text(variant_config_text(), encoding="utf-8")
    outdir = tmp_path_factory.mktemp("variant-cdk.out")
    started = time.perf_counter()
    app, environments = create_app(
        context={**project_context(), "imageTag": IMAGE_TAG}, outdir=str(outdir), config_dir=config_dir
    )
    # An unacknowledged cdk-nag finding fails the synth after the templates are written: keep them, so that
    # test_the_variant_passes_cdk_nag names the findings and the other tests still check the templates.
    nag_failure = None
    try:
        app.synth()
    except RuntimeError as error:
        if "ValidationFailed" not in str(error):
            raise
        nag_failure = str(error)
    seconds = time.perf_counter() - started
    return Variant(
        config=environments["dev"].application.config,
        outdir=outdir,
        templates={
            path.name.removesuffix(".template.json"): json.loads(path.read_text())
            for path in outdir.glob("*.template.json")
        },
        report=aws_solutions_report(outdir),
        nag_failure=nag_failure,
        seconds=seconds,
    )


# --- the variant itself ---------------------------------------------------------------------


def test_the_variant_config_switches_every_option_on(variant: Variant) -> None:
    config = variant.config
    assert (config.frontend.hosting, config.frontend.domain_name) == ("ecs", DOMAIN)
    assert (config.frontend.certificate_arn, config.frontend.web_acl_arn) == (CERTIFICATE_ARN, WEB_ACL_ARN)
    assert (config.mlflow.image, config.mlflow.auth) == ("registry", True)
    assert config.cache.enabled
    assert config.services.deployment == "blue_green"


def test_removal_policy_destroy_reaches_every_stateful_resource(variant: Variant) -> None:
    """`removal_policy = "destroy"` (the variant's; the shipped configs keep their data): the database, keys, buckets
    and log groups go with their stack. Repositories are shared (MlopsRegistry<Region>) and always retained."""
    assert variant.config.removal_policy == "destroy"
    checked = 0
    for stack in (STACK, FOUNDATION):
        for resource_type in ("AWS::RDS::DBInstance", "AWS::KMS::Key", "AWS::S3::Bucket", "AWS::Logs::LogGroup"):
            for logical_id, resource in variant.resources(resource_type, stack).items():
                checked += 1
                assert resource.get("DeletionPolicy") == "Delete", (stack, logical_id)
    assert checked >= 12
    for repository in variant.resources("AWS::ECR::Repository", REGISTRY).values():
        assert repository["DeletionPolicy"] == "Retain"


def test_only_the_dev_environment_is_synthesized(variant: Variant) -> None:
    assert set(variant.templates) == {STACK, FOUNDATION, REGISTRY, "MlopsCi"}


def test_the_variant_passes_cdk_nag(variant: Variant) -> None:
    findings = [
        f"{violation['ruleName']}: {[c['constructPath'] for c in violation['violatingConstructs']]}"
        for violation in variant.report["violations"]
    ]
    assert findings == []
    assert variant.report["conclusion"] == "success"
    assert variant.nag_failure is None


# --- frontend on ECS, custom domain, WAF ------------------------------------------------------


def test_the_frontend_runs_as_an_ecs_service_behind_the_web_listener(variant: Variant) -> None:
    listeners = variant.resources("AWS::ElasticLoadBalancingV2::Listener")
    frontend = variant.listener_rule("mlops-frontend-service")
    backend = variant.listener_rule("mlops-backend-service")
    assert frontend["ListenerArn"] == backend["ListenerArn"]
    assert listeners[frontend["ListenerArn"]["Ref"]]["Properties"]["Port"] == 443  # load_balancer.certificate_arn
    # /api/* is matched first (lower priority number), everything else goes to the frontend.
    assert (backend["Priority"], backend["Conditions"]) == (
        10,
        [{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/api/*"]}}],
    )
    assert (frontend["Priority"], frontend["Conditions"]) == (
        20,
        [{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/*"]}}],
    )


def test_cloudfront_serves_the_site_from_the_vpc_origin(variant: Variant) -> None:
    config = variant.distribution()
    (origin,) = config["Origins"]
    vpc_origin_id = origin["VpcOriginConfig"]["VpcOriginId"]["Fn::GetAtt"][0]
    endpoint = variant.resources("AWS::CloudFront::VpcOrigin")[vpc_origin_id]["Properties"]["VpcOriginEndpointConfig"]
    (load_balancer,) = variant.resources("AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert (endpoint["Arn"], endpoint["HTTPPort"]) == ({"Ref": load_balancer}, 80)
    assert config["DefaultCacheBehavior"]["TargetOriginId"] == origin["Id"]
    assert "FunctionAssociations" not in config["DefaultCacheBehavior"]
    assert [behavior["TargetOriginId"] for behavior in config["CacheBehaviors"]] == [origin["Id"]]


def test_there_is_no_site_bucket_and_no_spa_function(variant: Variant) -> None:
    (bucket,) = variant.resources("AWS::S3::Bucket")  # the edge's log bucket only
    assert bucket.startswith("EdgeLogs")
    assert variant.resources("AWS::CloudFront::Function") == {}
    assert variant.resources("AWS::CloudFront::OriginAccessControl") == {}
    assert "SiteBucket" not in variant.templates[STACK]["Outputs"]


def test_the_distribution_has_the_custom_domain_certificate_and_web_acl(variant: Variant) -> None:
    config = variant.distribution()
    assert config["Aliases"] == [DOMAIN]
    assert config["ViewerCertificate"] == {
        "AcmCertificateArn": CERTIFICATE_ARN,
        "MinimumProtocolVersion": "TLSv1.2_2021",
        "SslSupportMethod": "sni-only",
    }
    assert config["WebACLId"] == WEB_ACL_ARN


def test_tls_and_waf_findings_are_acknowledged_only_without_domain_and_web_acl(variant: Variant, synth: Synth) -> None:
    shipped = acknowledged_rules(aws_solutions_report(synth.outdir), STACK)
    varied = acknowledged_rules(variant.report, STACK)
    assert {"AwsSolutions-CFR1", "AwsSolutions-CFR2", "AwsSolutions-CFR4"} <= shipped
    assert "AwsSolutions-CFR1" in varied  # no geo restriction: acknowledged everywhere
    assert not {"AwsSolutions-CFR2", "AwsSolutions-CFR4"} & varied


# --- images, MLflow, cache, deployments -------------------------------------------------------


def image_source(variant: Variant, image: Any) -> tuple[str, str]:
    """(ECR repository name, tag) of an image `<account>.dkr.ecr.<region>.<suffix>/<repository>:<tag>`."""
    parts = image["Fn::Join"][1]
    assert parts[-3] == "/", image
    export = parts[-2]["Fn::ImportValue"]
    (output,) = [o for o in variant.templates[REGISTRY]["Outputs"].values() if o["Export"]["Name"] == export]
    repository = variant.templates[REGISTRY]["Resources"][output["Value"]["Ref"]]
    assert repository["Type"] == "AWS::ECR::Repository"
    tag = parts[-1]
    assert tag.startswith(":"), image
    return repository["Properties"]["RepositoryName"], tag.removeprefix(":")


def test_every_service_image_comes_from_its_repository_with_the_image_tag(variant: Variant) -> None:
    images = {name: image_source(variant, variant.container(name)["Image"]) for name in SERVICE_REPOSITORIES}
    assert images == {name: (repository, IMAGE_TAG) for name, repository in SERVICE_REPOSITORIES.items()}
    assert len(variant.resources("AWS::ECS::Service")) == len(SERVICE_REPOSITORIES)


def test_no_container_image_is_built_and_the_image_tag_is_an_output(variant: Variant) -> None:
    assets = json.loads((variant.outdir / f"{STACK}.assets.json").read_text())
    assert assets["dockerImages"] == {}
    assert variant.templates[STACK]["Outputs"]["ImageTag"]["Value"] == IMAGE_TAG


def test_mlflow_has_basic_auth_with_an_admin_secret(variant: Variant) -> None:
    container = variant.container("mlops-mlflow")
    environment = {item["Name"]: item["Value"] for item in container["Environment"]}
    assert environment["MLFLOW_AUTH"] == "true"
    assert environment["MLFLOW_AUTH_DB_NAME"] == "mlflow_auth"
    assert environment["MLFLOW_ADMIN_USERNAME"] == "admin"
    secrets = {item["Name"]: item["ValueFrom"] for item in container["Secrets"]}
    (admin_secret,) = variant.resources("AWS::SecretsManager::Secret")
    assert secrets["MLFLOW_ADMIN_PASSWORD"] == {"Ref": admin_secret}


def test_the_feature_cache_exists_encrypted(variant: Variant) -> None:
    (cache,) = variant.resources("AWS::ElastiCache::ReplicationGroup").values()
    properties = cache["Properties"]
    assert properties["Engine"] == "valkey"
    assert properties["AtRestEncryptionEnabled"] is True
    assert (properties["TransitEncryptionEnabled"], properties["TransitEncryptionMode"]) == (True, "required")


def test_every_service_deploys_blue_green(variant: Variant) -> None:
    for name in SERVICE_REPOSITORIES:
        properties = variant.service(name)["Properties"]
        assert properties["DeploymentConfiguration"]["Strategy"] == "BLUE_GREEN", name
        (balancer,) = properties["LoadBalancers"]
        assert "AlternateTargetGroupArn" in balancer["AdvancedConfiguration"], name


# --- `-c imageTag` ----------------------------------------------------------------------------


def test_a_bad_image_tag_is_a_config_error(tmp_path: Path) -> None:
    """Raised while the stacks are built, so nothing is synthesized."""
    from mlops_infra.cdk_app import create_app, project_context

    context = {**project_context(), "environments": "dev", "imageTag": "bad tag!"}
    with pytest.raises(ConfigError) as raised:
        create_app(context=context, outdir=str(tmp_path), config_dir=ROOT / "config")
    message = str(raised.value)
    assert "imageTag=bad tag!" in message
    assert IMAGE_TAG_RULE in message
    assert list(tmp_path.glob("*.template.json")) == []


def test_cloudfront_reaches_the_load_balancer_over_https_with_a_certificate(variant: Variant) -> None:
    resources = variant.templates[STACK]["Resources"]
    listeners = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ElasticLoadBalancingV2::Listener"]
    (web,) = [listener for listener in listeners if listener["Port"] not in (5000, 8080)]
    assert web["Port"] == 443
    assert web["Protocol"] == "HTTPS"
    assert web["Certificates"] == [{"CertificateArn": ORIGIN_CERTIFICATE_ARN}]
    assert web["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    ingress_ports = {
        (rule.get("SourcePrefixListId"), rule["FromPort"])
        for r in resources.values()
        if r["Type"] == "AWS::EC2::SecurityGroup"
        for rule in r["Properties"].get("SecurityGroupIngress", [])
    } | {
        (r["Properties"].get("SourcePrefixListId"), r["Properties"]["FromPort"])
        for r in resources.values()
        if r["Type"] == "AWS::EC2::SecurityGroupIngress"
    }
    assert ("pl-3b927c52", 443) in ingress_ports
    assert ("pl-3b927c52", 80) not in ingress_ports
    (origin,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudFront::VpcOrigin"]
    endpoint = origin["VpcOriginEndpointConfig"]
    assert endpoint["OriginProtocolPolicy"] == "https-only"
    assert endpoint["HTTPSPort"] == 443
    distribution = next(r for r in resources.values() if r["Type"] == "AWS::CloudFront::Distribution")
    origins = distribution["Properties"]["DistributionConfig"]["Origins"]
    assert {o["DomainName"] for o in origins} == {ORIGIN_DOMAIN}
