"""The VPC: public, private-with-egress and isolated subnets, NAT, flow logs and VPC endpoints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

# Interface endpoints by the short name used in props and config.
INTERFACE_ENDPOINTS: dict[str, tuple[ec2.InterfaceVpcEndpointAwsService, ...]] = {
    "ecr": (ec2.InterfaceVpcEndpointAwsService.ECR, ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER),
    "logs": (ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,),
    "secretsmanager": (ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,),
}

NatKind = Literal["gateway", "instance"]
NAT_KINDS: tuple[NatKind, ...] = ("gateway", "instance")
# The NAT instance's root volume: the Amazon Linux 2023 AMI's snapshot is 8 GiB, the smallest size it boots from.
NAT_INSTANCE_ROOT_DEVICE = "/dev/xvda"
NAT_INSTANCE_ROOT_GIB = 8


class Network(Construct):
    """A three-tier VPC over the given availability zones; the default security group has no rules.

    Private subnets reach the internet through `nat_gateways` NAT gateways (``nat="gateway"``) or as many
    NAT instances (``nat="instance"``: Amazon Linux 2023 with iptables masquerading, a fraction of a
    gateway's cost, no managed availability). A NAT instance admits traffic from the VPC's CIDR only,
    requires IMDSv2, has an encrypted root volume, no SSH key and no detailed monitoring.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cidr: str,
        availability_zones: Sequence[str],
        nat_gateways: int,
        nat: NatKind = "gateway",
        nat_instance_type: str = "t4g.nano",
        flow_log_traffic_type: ec2.FlowLogTrafficType,
        flow_log_retention: logs.RetentionDays,
        log_encryption_key: kms.IKey,
        log_removal_policy: RemovalPolicy,
        flow_log_group_name: str | None = None,
        interface_endpoints: Sequence[str] = (),
        public_subnet_mask: int = 24,
        private_subnet_mask: int = 20,
        isolated_subnet_mask: int = 24,
    ) -> None:
        super().__init__(scope, id)
        unknown = sorted(set(interface_endpoints) - INTERFACE_ENDPOINTS.keys())
        if unknown:
            raise ValueError(f"unknown interface endpoints {unknown}; known: {sorted(INTERFACE_ENDPOINTS)}")
        if nat not in NAT_KINDS:
            raise ValueError(f"unknown nat {nat!r}; known: {', '.join(NAT_KINDS)}")
        self.cidr = cidr
        self.nat_instance_provider = self._nat_instance_provider(nat_instance_type) if nat == "instance" else None
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(cidr),
            availability_zones=list(availability_zones),
            nat_gateways=nat_gateways,
            nat_gateway_provider=self.nat_instance_provider,
            restrict_default_security_group=True,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=public_subnet_mask),
                ec2.SubnetConfiguration(
                    name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=private_subnet_mask
                ),
                ec2.SubnetConfiguration(
                    name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=isolated_subnet_mask
                ),
            ],
        )
        self.nat_instances = self._harden_nat_instances()
        self.flow_log_group = logs.LogGroup(
            self,
            "FlowLogGroup",
            log_group_name=flow_log_group_name,
            encryption_key=log_encryption_key,
            retention=flow_log_retention,
            removal_policy=log_removal_policy,
        )
        self.flow_log = self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_log_group),
            traffic_type=flow_log_traffic_type,
        )
        self.vpc.add_gateway_endpoint("S3Endpoint", service=ec2.GatewayVpcEndpointAwsService.S3)
        self.endpoint_security_group = self._build_interface_endpoints(interface_endpoints)

    @staticmethod
    def _nat_instance_provider(instance_type_name: str) -> ec2.NatInstanceProviderV2:
        """NAT instances of the given type; the AMI is resolved at deploy time from the public SSM parameter."""
        instance_type = ec2.InstanceType(instance_type_name)
        arm = instance_type.architecture == ec2.InstanceArchitecture.ARM_64
        return ec2.NatProvider.instance_v2(
            instance_type=instance_type,
            machine_image=ec2.MachineImage.latest_amazon_linux2023(
                cpu_type=ec2.AmazonLinuxCpuType.ARM_64 if arm else ec2.AmazonLinuxCpuType.X86_64
            ),
            # Outbound only: the provider's default would admit all traffic from 0.0.0.0/0.
            default_allowed_traffic=ec2.NatTrafficDirection.OUTBOUND_ONLY,
        )

    def _harden_nat_instances(self) -> list[ec2.Instance]:
        """Admit only the VPC's CIDR; IMDSv2, an encrypted root volume, no detailed monitoring on every instance."""
        provider = self.nat_instance_provider
        if provider is None:
            return []
        provider.security_group.add_ingress_rule(
            ec2.Peer.ipv4(self.cidr), ec2.Port.all_traffic(), "Traffic to the internet from inside the VPC"
        )
        instances = list(provider.gateway_instances)
        for instance in instances:
            cfn = instance.node.default_child
            assert isinstance(cfn, ec2.CfnInstance)
            cfn.metadata_options = ec2.CfnInstance.MetadataOptionsProperty(
                http_endpoint="enabled", http_tokens="required"
            )
            cfn.monitoring = False
            cfn.block_device_mappings = [
                ec2.CfnInstance.BlockDeviceMappingProperty(
                    device_name=NAT_INSTANCE_ROOT_DEVICE,
                    ebs=ec2.CfnInstance.EbsProperty(
                        volume_type="gp3",
                        volume_size=NAT_INSTANCE_ROOT_GIB,
                        encrypted=True,
                        delete_on_termination=True,
                    ),
                )
            ]
        return instances

    def _build_interface_endpoints(self, names: Sequence[str]) -> ec2.SecurityGroup | None:
        """HTTPS from inside the VPC only; the CIDR is a literal so the rule reads plainly in the template."""
        if not names:
            return None
        group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=self.vpc,
            description="Interface VPC endpoints: HTTPS from this VPC only",
            allow_all_outbound=False,
        )
        group.add_ingress_rule(ec2.Peer.ipv4(self.cidr), ec2.Port.tcp(443), "HTTPS from inside the VPC")
        for name in names:
            for service in INTERFACE_ENDPOINTS[name]:
                self.vpc.add_interface_endpoint(
                    f"{service.short_name.replace('.', '-').title().replace('-', '')}Endpoint",
                    service=service,
                    private_dns_enabled=True,
                    open=False,
                    security_groups=[group],
                    subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
                )
        return group
