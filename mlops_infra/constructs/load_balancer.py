"""One internal Application Load Balancer for all services, a listener per audience.

Each listener (port) admits only the peers that call it: the CloudFront-facing listener admits
CloudFront's origin-facing prefix list, the MLflow listener the services that use MLflow, and so
on. Services attach with listener rules (see `HttpService`).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_s3 as s3
from constructs import Construct


class InternalLoadBalancer(Construct):
    """An internal ALB in the private subnets: drops invalid headers, logs access, no default route."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        idle_timeout: Duration,
        deletion_protection: bool,
        access_logs_bucket: s3.IBucket,
        access_logs_prefix: str,
        name: str | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="Internal load balancer: each listener admits only its callers",
            allow_all_outbound=False,
        )
        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            load_balancer_name=name,
            vpc=vpc,
            internet_facing=False,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_group=self.security_group,
            idle_timeout=idle_timeout,
            deletion_protection=deletion_protection,
            drop_invalid_header_fields=True,
            http2_enabled=True,
        )
        self.load_balancer.log_access_logs(access_logs_bucket, access_logs_prefix)
        self.listeners: dict[int, elbv2.ApplicationListener] = {}

    def add_listener(
        self,
        id: str,
        *,
        port: int,
        callers: Sequence[ec2.IPeer],
        description: str,
        certificate: elbv2.IListenerCertificate | None = None,
    ) -> elbv2.ApplicationListener:
        """A listener on `port` that answers 404 unless a service's rule matches; open to `callers` only.

        HTTPS (TLS 1.2+, the recommended policy) with `certificate`, else HTTP.
        """
        listener = self.load_balancer.add_listener(
            id,
            port=port,
            protocol=elbv2.ApplicationProtocol.HTTPS if certificate else elbv2.ApplicationProtocol.HTTP,
            certificates=[certificate] if certificate else None,
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS if certificate else None,
            open=False,
            default_action=elbv2.ListenerAction.fixed_response(
                404, content_type="text/plain", message_body="Not Found"
            ),
        )
        for caller in callers:
            self.allow(port, caller, description)
        self.listeners[port] = listener
        return listener

    def allow(self, port: int, caller: ec2.IPeer, description: str) -> None:
        """Admit one more caller (a security group or a prefix list) to a listener's port."""
        self.security_group.add_ingress_rule(caller, ec2.Port.tcp(port), description)
