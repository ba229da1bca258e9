"""Fixes to moto 5.2.5's CloudFormation emulation that the local deploy (tests/test_deploy_local.py) needs.

Each patch covers a gap between what the CDK synthesizes and what moto's CloudFormation models accept; none
changes what a template means. `applied()` installs them for the duration of a `with` block and restores the
originals afterwards, so other tests of the session that use moto (`mock_aws`) see moto unchanged.

STUBS records every resource of a type moto does not emulate (stand-in objects that accept any Ref/GetAtt).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

# (StackId, LogicalResourceId) -> the stand-in of a resource of a type moto does not emulate
STUBS: dict[tuple[str, str], Any] = {}

_MISSING = object()


def _patch(undo: list[tuple[Any, str, Any]], owner: Any, name: str, value: Any) -> None:
    undo.append((owner, name, vars(owner).get(name, _MISSING)))
    setattr(owner, name, value)


from moto.ec2.exceptions import InvalidPermissionDuplicateError  # noqa: E402


def _install(undo: list[tuple[Any, str, Any]]) -> None:
    import moto.cloudformation.parsing as parsing
    from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
    from moto.cloudformation.models import CloudFormationBackend
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.security_groups import SecurityGroup, SecurityGroupIngress
    from moto.ecs.models import TaskDefinition, pascal_to_camelcase, remap_nested_keys
    from moto.elbv2.models import FakeTargetGroup
    from moto.kms.models import Key
    from moto.rds.models import DBInstance, DBParameterGroup

    # 1. Fn::GetAtt DatabaseInstance.MasterUserSecret.SecretArn (RDS-managed master secret).
    has_attr, get_attr = DBInstance.has_cfn_attr.__func__, DBInstance.get_cfn_attribute  # type: ignore[attr-defined]

    def db_has_cfn_attr(cls: Any, attr: str) -> bool:
        return attr == "MasterUserSecret.SecretArn" or bool(has_attr(cls, attr))

    def db_get_cfn_attribute(self: Any, name: str) -> Any:
        if name == "MasterUserSecret.SecretArn":
            secret = getattr(self, "master_user_secret", None)
            if secret is not None:
                return secret.secret.arn
            return (
                f"arn:aws:secretsmanager:{self.region}:{self.account_id}:secret:rds!db-{self.db_instance_identifier}"
                "-AbCdEf"
            )
        return get_attr(self, name)

    _patch(undo, DBInstance, "has_cfn_attr", classmethod(db_has_cfn_attr))
    _patch(undo, DBInstance, "get_cfn_attribute", db_get_cfn_attribute)

    # 2. AWS::KMS::Key Tags arrive as {Key, Value}; moto's KMS tagger wants {TagKey, TagValue}.
    kms_create = Key.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def kms_create_fixed(cls: Any, resource_name: str, cfn: dict[str, Any], account_id: str, region: str, **kw: Any):
        props = cfn.get("Properties", {})
        if props.get("Tags"):
            tags = [{"TagKey": tag["Key"], "TagValue": tag["Value"]} for tag in props["Tags"]]
            cfn = dict(cfn, Properties=dict(props, Tags=tags))
        return kms_create(cls, resource_name, cfn, account_id, region, **kw)

    _patch(undo, Key, "create_from_cloudformation_json", classmethod(kms_create_fixed))

    # 3. {"Ref": DBParameterGroup} must give its name (moto gives the object).
    if "physical_resource_id" not in vars(DBParameterGroup):
        _patch(undo, DBParameterGroup, "physical_resource_id", property(lambda self: self.name))

    # 4. SecurityGroupIngress rules without FromPort/ToPort (IpProtocol -1): KeyError in moto.
    sg_create = SecurityGroup.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def sg_create_fixed(cls: Any, resource_name: str, cfn: dict[str, Any], account_id: str, region: str, **kw: Any):
        props = cfn.get("Properties", {})
        if props.get("SecurityGroupIngress"):
            rules = [dict({"FromPort": None, "ToPort": None}, **rule) for rule in props["SecurityGroupIngress"]]
            cfn = dict(cfn, Properties=dict(props, SecurityGroupIngress=rules))
        return sg_create(cls, resource_name, cfn, account_id, region, **kw)

    _patch(undo, SecurityGroup, "create_from_cloudformation_json", classmethod(sg_create_fixed))

    # 5. AWS::EC2::SecurityGroupIngress from a prefix list only (S3 gateway endpoint): moto asserts a CIDR or group.
    sgi_create = SecurityGroupIngress.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def sgi_create_fixed(cls: Any, resource_name: str, cfn: dict[str, Any], account_id: str, region: str, **kw: Any):
        props = cfn["Properties"]
        sources = ("CidrIp", "CidrIpv6", "SourceSecurityGroupId", "SourceSecurityGroupName")
        if props.get("SourcePrefixListId") and not any(props.get(key) for key in sources):
            backend = ec2_backends[account_id][region]
            group = backend.describe_security_groups(group_ids=[props["GroupId"]])[0]
            prefix_list = {"PrefixListId": props["SourcePrefixListId"], "Description": props.get("Description", "")}
            backend.authorize_security_group_ingress(
                group_name_or_id=group.id,
                ip_protocol=props["IpProtocol"],
                from_port=props.get("FromPort"),
                to_port=props.get("ToPort"),
                ip_ranges=[],
                prefix_list_ids=[prefix_list],
            )
            return cls(group, props)
        try:
            return sgi_create(cls, resource_name, cfn, account_id, region, **kw)
        except InvalidPermissionDuplicateError:
            # 10. moto sometimes applies a rule twice (resources are created in a varying order); AWS applies it
            # once. Keep the one rule instead of failing the stack.
            backend = ec2_backends[account_id][region]
            group = backend.describe_security_groups(group_ids=[props["GroupId"]])[0]
            return cls(group, props)

    _patch(undo, SecurityGroupIngress, "create_from_cloudformation_json", classmethod(sgi_create_fixed))

    # 6. Fn::GetAtt TargetGroup.TargetGroupFullName (alarms, dashboards): moto's target group has no attributes.
    def tg_has_cfn_attr(cls: Any, attr: str) -> bool:
        return attr in ("TargetGroupFullName", "TargetGroupName", "TargetGroupArn", "LoadBalancerArns")

    def tg_get_cfn_attribute(self: Any, attr: str) -> Any:
        if attr == "TargetGroupFullName":
            return self.arn.split(":")[-1]
        if attr == "TargetGroupName":
            return self.name
        if attr == "TargetGroupArn":
            return self.arn
        if attr == "LoadBalancerArns":
            return list(getattr(self, "load_balancer_arns", []))
        raise UnformattedGetAttTemplateException()

    if "get_cfn_attribute" not in vars(FakeTargetGroup):
        _patch(undo, FakeTargetGroup, "has_cfn_attr", classmethod(tg_has_cfn_attr))
        _patch(undo, FakeTargetGroup, "get_cfn_attribute", tg_get_cfn_attribute)

    # 7. Types moto does not emulate are skipped (None), so any Ref/GetAtt to them fails the stack: a stand-in
    # accepts every attribute and records its properties. The test keeps the list of such types reviewed.
    original_class_from_type = parsing.resource_class_from_type

    def class_from_type(resource_type: str) -> Any:
        model = original_class_from_type(resource_type)
        if model is None and resource_type not in parsing.NULL_MODELS:
            return stub_model()
        return model

    _patch(undo, parsing, "resource_class_from_type", class_from_type)

    # 8. update_stack with UsePreviousValue for a parameter the stack took from its default (BootstrapVersion):
    # KeyError, HTTP 500.
    def resolve_update_parameters(self: Any, instance: Any, incoming_params: list[dict[str, Any]]) -> dict[str, Any]:
        known = getattr(instance, "parameters", {}) or {}
        params = {p["ParameterKey"]: p["ParameterValue"] for p in incoming_params if "ParameterValue" in p}
        params.update(
            {
                p["ParameterKey"]: known[p["ParameterKey"]]
                for p in incoming_params
                if p.get("UsePreviousValue", False) and p["ParameterKey"] in known
            }
        )
        return params

    _patch(undo, CloudFormationBackend, "_resolve_update_parameters", resolve_update_parameters)

    # 9. An updated AWS::ECS::TaskDefinition (new image tag) registers the CloudFormation-cased (PascalCase) container
    # definitions, so the new revision has no `image`; the create path converts them to camelCase, so does this.
    td_update = TaskDefinition.update_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def td_update_fixed(
        cls: Any,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> Any:
        props = cloudformation_json["Properties"]
        camel = {
            key: remap_nested_keys(props[key], pascal_to_camelcase)
            for key in ("ContainerDefinitions", "Volumes")
            if key in props
        }
        cfn = dict(cloudformation_json, Properties=dict(props, **camel))
        return td_update(cls, original_resource, new_resource_name, cfn, account_id, region_name)

    _patch(undo, TaskDefinition, "update_from_cloudformation_json", classmethod(td_update_fixed))


_STUB_MODEL: Any = None


def stub_model() -> Any:
    """The stand-in model for unemulated resource types (a CloudFormationModel subclass, made once)."""
    global _STUB_MODEL
    if _STUB_MODEL is not None:
        return _STUB_MODEL
    from moto.core.common_models import CloudFormationModel

    class StubResource(CloudFormationModel):  # type: ignore[misc]
        def __init__(self, logical_id: str, resource_type: str, properties: dict[str, Any], account: str, region: str):
            self.logical_id, self.resource_type, self.properties = logical_id, resource_type, properties
            self.account_id, self.region_name = account, region

        @staticmethod
        def cloudformation_type() -> str:
            return "Moto::Stub::Resource"

        @property
        def physical_resource_id(self) -> str:
            return f"{self.logical_id}-stub"

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return True

        def get_cfn_attribute(self, attr: str) -> str:
            if attr.endswith(("Arn", "ARN")):
                service = self.resource_type.split("::")[1].lower()
                return f"arn:aws:{service}:{self.region_name}:{self.account_id}:{self.logical_id}"
            if attr == "DomainName":
                return f"{self.logical_id.lower()}.cloudfront.net"
            return f"{self.logical_id}-{attr}"

        @classmethod
        def create_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str, **kw: Any
        ) -> StubResource:
            properties = cloudformation_json.get("Properties", {})
            stub = cls(kw["LogicalId"], kw["ResourceType"], properties, account_id, region_name)
            STUBS[(kw["StackId"], kw["LogicalId"])] = stub
            return stub

        @classmethod
        def update_from_cloudformation_json(  # type: ignore[override]
            cls, original_resource: Any, new_resource_name: str, cloudformation_json: dict[str, Any], *args: Any
        ) -> Any:
            original_resource.properties = cloudformation_json.get("Properties", {})
            return original_resource

        @classmethod
        def delete_from_cloudformation_json(cls, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
            return None

    _STUB_MODEL = StubResource
    return StubResource


@contextlib.contextmanager
def applied() -> Iterator[None]:
    """The patches, installed for the `with` block; the originals are restored on the way out."""
    undo: list[tuple[Any, str, Any]] = []
    try:
        _install(undo)
        yield
    finally:
        for owner, name, original in reversed(undo):
            if original is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        STUBS.clear()


def unemulated_types(template: dict[str, Any]) -> set[str]:
    """The resource types of a template that moto 5.2.5 has no CloudFormation model for (stand-ins or custom)."""
    import moto.cloudformation.parsing as parsing

    models = parsing.get_model_map()
    return {
        resource["Type"]
        for resource in template.get("Resources", {}).values()
        if resource["Type"] not in models and resource["Type"] not in parsing.NULL_MODELS
    }
