"""`network.nat = "instance"`: dev's private subnets reach the internet through one hardened NAT instance.

Staging and prod keep their NAT gateways; production configs may not choose an instance.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlops_infra.config import ConfigError, load_all
from tests.conftest import Synth
from tests.templates import foundation, target

ROOT = Path(__file__).resolve().parent.parent


def nat_instances(synth: Synth, env: str) -> dict[str, dict[str, object]]:
    return {
        logical_id: resource
        for logical_id, resource in synth.resources(foundation(env), "AWS::EC2::Instance").items()
        if resource["Properties"].get("SourceDestCheck") is False
    }


def test_shipped_configs_choose_nat() -> None:
    configs = {config.name: config for config in load_all(ROOT / "config")}
    assert {name: config.network.nat for name, config in configs.items()} == {
        "dev": "instance",
        "staging": "gateway",
        "prod": "gateway",
    }
    assert configs["dev"].network.nat_instance_type == "t4g.nano"


def test_dev_has_one_nat_instance_and_no_nat_gateway(synth: Synth) -> None:
    template = synth.template(foundation("dev"))
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    template.resource_count_is("AWS::EC2::EIP", 0)
    template.resource_count_is("AWS::EC2::Instance", 1)
    assert len(nat_instances(synth, "dev")) == 1


@pytest.mark.parametrize(("env", "gateways"), [("staging", 1), ("prod", 3)])
def test_staging_and_prod_keep_nat_gateways(synth: Synth, env: str, gateways: int) -> None:
    template = synth.template(foundation(env))
    template.resource_count_is("AWS::EC2::NatGateway", gateways)
    template.resource_count_is("AWS::EC2::Instance", 0)


def subnet_tier(synth: Synth, logical_id: str) -> str:
    subnet = synth.templates[foundation("dev")]["Resources"][logical_id]
    assert subnet["Type"] == "AWS::EC2::Subnet"
    return str(next(tag["Value"] for tag in subnet["Properties"]["Tags"] if tag["Key"] == "aws-cdk:subnet-name"))


def test_nat_instance_sits_in_a_public_subnet(synth: Synth) -> None:
    ((_, instance),) = nat_instances(synth, "dev").items()
    properties = instance["Properties"]
    assert isinstance(properties, dict)
    assert subnet_tier(synth, target(properties["SubnetId"])) == "public"
    assert properties["InstanceType"] == "t4g.nano"


def test_private_subnets_route_to_the_nat_instance(synth: Synth) -> None:
    ((instance_id, _),) = nat_instances(synth, "dev").items()
    resources = synth.templates[foundation("dev")]["Resources"]
    private_tables = {
        association["Properties"]["RouteTableId"]["Ref"]
        for association in synth.resources(foundation("dev"), "AWS::EC2::SubnetRouteTableAssociation").values()
        if subnet_tier(synth, target(association["Properties"]["SubnetId"])) == "private"
    }
    assert len(private_tables) == len(synth.configs["dev"].aws.availability_zones)
    default_routes = {
        route["Properties"]["RouteTableId"]["Ref"]: route["Properties"]
        for route in synth.resources(foundation("dev"), "AWS::EC2::Route").values()
        if route["Properties"].get("DestinationCidrBlock") == "0.0.0.0/0"
    }
    for table in private_tables:
        assert default_routes[table].get("InstanceId") == {"Ref": instance_id}, table
        assert "NatGatewayId" not in default_routes[table]
    assert all(resources[table]["Type"] == "AWS::EC2::RouteTable" for table in private_tables)


def test_nat_instance_admits_only_the_vpc_cidr(synth: Synth) -> None:
    ((_, instance),) = nat_instances(synth, "dev").items()
    properties = instance["Properties"]
    assert isinstance(properties, dict)
    (group_ref,) = properties["SecurityGroupIds"]
    group_id = target(group_ref)
    group = synth.templates[foundation("dev")]["Resources"][group_id]["Properties"]
    cidr = synth.configs["dev"].network.cidr
    assert [rule["CidrIp"] for rule in group["SecurityGroupIngress"]] == [cidr]
    assert group["SecurityGroupIngress"][0]["IpProtocol"] == "-1"
    assert [(rule["CidrIp"], rule["IpProtocol"]) for rule in group["SecurityGroupEgress"]] == [("0.0.0.0/0", "-1")]
    # No separate ingress resources open the group further.
    extra = [
        rule
        for rule in synth.resources(foundation("dev"), "AWS::EC2::SecurityGroupIngress").values()
        if target(rule["Properties"]["GroupId"]) == group_id
    ]
    assert extra == []


def test_nat_instance_is_hardened(synth: Synth) -> None:
    ((_, instance),) = nat_instances(synth, "dev").items()
    properties = instance["Properties"]
    assert isinstance(properties, dict)
    assert properties["MetadataOptions"]["HttpTokens"] == "required"
    (root,) = properties["BlockDeviceMappings"]
    assert root["Ebs"]["Encrypted"] is True
    assert properties["Monitoring"] is False
    assert "KeyName" not in properties
    assert "DisableApiTermination" not in properties  # dev is disposable (acknowledged EC29)


def test_nat_instance_image_resolves_at_deploy_time(synth: Synth) -> None:
    """No AMI lookup at synth: the ImageId is an SSM-backed CloudFormation parameter (works offline)."""
    ((_, instance),) = nat_instances(synth, "dev").items()
    properties = instance["Properties"]
    assert isinstance(properties, dict)
    parameter = synth.templates[foundation("dev")]["Parameters"][properties["ImageId"]["Ref"]]
    assert parameter["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    assert parameter["Default"].startswith("/aws/service/ami-amazon-linux-latest/al2023-ami-")
    assert parameter["Default"].endswith("-arm64")


# --- config rules --------------------------------------------------------------------------------------


def config_dir_with(tmp_path: Path, file: str, old: str, new: str) -> Path:
    folder = tmp_path / "config"
    shutil.copytree(ROOT / "config", folder)
    path = folder / file
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1
    path.write_text(text.replace(old, new), encoding="utf-8")
    return folder


def problems(folder: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_all(folder)
    return caught.value.problems


def test_production_config_may_not_use_a_nat_instance(tmp_path: Path) -> None:
    folder = config_dir_with(tmp_path, "prod.toml", "[network]\n", '[network]\nnat = "instance"\n')
    assert problems(folder) == [
        f'{folder / "prod.toml"}: network.nat = "instance": must be gateway when production = true'
    ]


def test_unknown_nat_is_rejected(tmp_path: Path) -> None:
    folder = config_dir_with(tmp_path, "dev.toml", 'nat = "instance"', 'nat = "nat-gateway"')
    assert problems(folder) == [
        f'{folder / "dev.toml"}: network.nat = "nat-gateway": must be one of "gateway" or "instance"'
    ]


def test_bad_nat_instance_type_is_rejected(tmp_path: Path) -> None:
    folder = config_dir_with(tmp_path, "dev.toml", 'nat_instance_type = "t4g.nano"', 'nat_instance_type = "t4g nano"')
    assert problems(folder) == [
        f'{folder / "dev.toml"}: network.nat_instance_type = "t4g nano": must be an EC2 instance type such as t4g.nano'
    ]
