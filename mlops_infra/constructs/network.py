"""The VPC: public, private-with-egress and isolated subnets, flow logs and VPC endpoints."""

from __future__ import annotations

from collections.abc import Sequence

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


class Network(Construct):
    """A three-tier VPC over the given availability zones; the default security group has no rules."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cidr: str,
        availability_zones: Sequence[str],
        nat_gateways: int,
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
        self.cidr = cidr
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(cidr),
            availability_zones=list(availability_zones),
            nat_gateways=nat_gateways,
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
