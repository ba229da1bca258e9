"""A Fargate service for any HTTP container, behind a listener rule, with safe deployments.

Built on the L2 `FargateService` (not `ecs_patterns`) because only it has ECS's native
deployment strategies: rolling with a circuit breaker, canary, and blue/green with a bake time,
the last two shifting traffic between two target groups and rolling back on alarm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aws_cdk import Duration, RemovalPolicy, TimeZone
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

Strategy = Literal["rolling", "canary", "blue_green"]
Capacity = Literal["on_demand", "spot"]
STRATEGIES: dict[Strategy, ecs.DeploymentStrategy] = {
    "rolling": ecs.DeploymentStrategy.ROLLING,
    "canary": ecs.DeploymentStrategy.CANARY,
    "blue_green": ecs.DeploymentStrategy.BLUE_GREEN,
}


@dataclass(frozen=True)
class Deployment:
    """How a new task definition replaces the old one."""

    strategy: Strategy
    bake_time: Duration = field(default_factory=lambda: Duration.minutes(5))
    canary_percent: int = 10
    alarm_5xx_count: int = 5  # target 5xx responses per minute (blue + green) that roll back
    alarm_p99_latency: Duration = field(default_factory=lambda: Duration.seconds(2))  # p99 that rolls back


@dataclass(frozen=True)
class Scaling:
    """Task count bounds and target tracking."""

    min_tasks: int
    max_tasks: int
    cpu_target_percent: int = 70
    requests_per_target: int | None = None  # per minute and target; None: no request-count tracking


@dataclass(frozen=True)
class OffHours:
    """Scale to 0 at `stop_hour` and back to the minimum at `start_hour`, Monday to Friday."""

    time_zone: str
    stop_hour: int = 18
    start_hour: int = 8


@dataclass(frozen=True)
class Routing:
    """Where the service receives traffic: a rule on an existing listener."""

    listener: elbv2.ApplicationListener
    load_balancer: elbv2.ApplicationLoadBalancer
    priority: int
    path_patterns: Sequence[str] = ("/*",)


@dataclass(frozen=True)
class ServiceMetrics:
    """A service's metrics for alarms and dashboards; target-group ones cover both of its target groups."""

    requests: cloudwatch.MathExpression  # per minute
    errors_5xx: cloudwatch.MathExpression  # target 5xx responses per minute
    error_rate_percent: cloudwatch.MathExpression
    p50_latency: cloudwatch.MathExpression  # seconds
    p99_latency: cloudwatch.MathExpression  # seconds
    healthy_targets: cloudwatch.MathExpression
    unhealthy_targets: cloudwatch.MathExpression
    running_tasks: cloudwatch.Metric
    desired_tasks: cloudwatch.Metric
    missing_tasks: cloudwatch.MathExpression  # desired - running


@dataclass(frozen=True)
class HttpServiceOptions:
    """What every service needs besides its container: where it runs, how big, how it deploys and scales."""

    cluster: ecs.ICluster
    service_name: str
    cpu: int
    memory_mib: int
    desired_count: int
    routing: Routing
    deployment: Deployment
    scaling: Scaling
    log_group_name: str
    log_retention: logs.RetentionDays
    log_encryption_key: kms.IKey
    log_removal_policy: RemovalPolicy = RemovalPolicy.RETAIN
    off_hours: OffHours | None = None
    alarm_name_prefix: str | None = None  # deployment alarms are named <prefix>-5xx and <prefix>-p99-latency
    # "spot": Fargate Spot (the cluster must enable the Fargate capacity providers); "on_demand": Fargate.
    capacity: Capacity = "on_demand"
    # The task definition family (default: service_name). Families are per account and region: where environments
    # share an account, give each its own, or a rollback to "the previous revision" may pick another's.
    task_family: str | None = None
    # False: the tasks may open HTTPS (443) connections anywhere (AWS APIs, image pulls, logs, secrets) and whatever
    # `allow_to` grants; True: any outbound traffic.
    allow_all_outbound: bool = False


class HttpService(Construct):
    """A load-balanced Fargate service: logs, secrets, health checks, least-privilege roles, scaling."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        options: HttpServiceOptions,
        image: ecs.ContainerImage,
        container_port: int,
        health_check_path: str = "/health",
        container_health_check: Sequence[str] | None = None,
        environment: Mapping[str, str] | None = None,
        secrets: Mapping[str, ecs.Secret] | None = None,
        command: Sequence[str] | None = None,
        readonly_root_filesystem: bool = True,
    ) -> None:
        super().__init__(scope, id)
        service_name = options.service_name
        self.service_name = service_name
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=options.log_group_name,
            retention=options.log_retention,
            encryption_key=options.log_encryption_key,
            removal_policy=options.log_removal_policy,
        )
        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description=f"{service_name}: what the application itself may do (grants are added explicitly)",
        )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "Task",
            family=options.task_family or service_name,
            cpu=options.cpu,
            memory_limit_mib=options.memory_mib,
            task_role=self.task_role,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        self.container = self._build_container(
            image=image,
            port=container_port,
            environment=environment or {},
            secrets=secrets or {},
            command=command,
            readonly=readonly_root_filesystem,
            health_check=container_health_check,
        )
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=options.cluster.vpc,
            description=f"{service_name} tasks",
            allow_all_outbound=options.allow_all_outbound,
        )
        if not options.allow_all_outbound:
            self.security_group.add_egress_rule(
                ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS: AWS APIs, image pulls, logs and secrets"
            )
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=options.cluster,
            service_name=service_name,
            task_definition=self.task_definition,
            desired_count=options.desired_count,
            security_groups=[self.security_group],
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            assign_public_ip=False,
            enable_execute_command=False,
            health_check_grace_period=Duration.seconds(60),
            min_healthy_percent=100,
            max_healthy_percent=200,
            # Every strategy rolls back when tasks fail to start (circuit breaker); canary and blue/green also
            # on the deployment alarms, after shifting traffic to the new tasks.
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            deployment_strategy=STRATEGIES[options.deployment.strategy],
            canary_configuration=ecs.TrafficShiftConfig(
                step_percent=options.deployment.canary_percent, step_bake_time=options.deployment.bake_time
            )
            if options.deployment.strategy == "canary"
            else None,
            bake_time=options.deployment.bake_time if options.deployment.strategy != "rolling" else None,
            capacity_provider_strategies=[ecs.CapacityProviderStrategy(capacity_provider="FARGATE_SPOT", weight=1)]
            if options.capacity == "spot"
            else None,
        )
        if options.capacity == "spot":
            # After the cluster's capacity-provider association, which CloudFormation may otherwise create later.
            self.service.node.add_dependency(options.cluster)
        self._load_balancer = options.routing.load_balancer
        self.target_group, self.alternate_target_group = self._build_routing(
            options.routing, container_port, health_check_path, options.deployment
        )
        prefix = options.alarm_name_prefix or service_name
        self.deployment_alarm_names = [f"{prefix}-5xx", f"{prefix}-p99-latency"]
        self.metrics = self._build_metrics()
        self.deployment_alarms = self._build_deployment_alarms(options.deployment)
        if options.deployment.strategy != "rolling":
            # Literal names (not Ref tokens) keep the service free of references to its alarms; the explicit
            # dependency still creates the alarms first.
            self.service.enable_deployment_alarms(
                self.deployment_alarm_names, behavior=ecs.AlarmBehavior.ROLLBACK_ON_ALARM
            )
            for alarm in self.deployment_alarms:
                self.service.node.add_dependency(alarm)
        self.scaling = self._build_scaling(options.scaling, options.off_hours)

    # ----------------------------------------------------------------------------------------

    def _build_container(
        self,
        *,
        image: ecs.ContainerImage,
        port: int,
        environment: Mapping[str, str],
        secrets: Mapping[str, ecs.Secret],
        command: Sequence[str] | None,
        readonly: bool,
        health_check: Sequence[str] | None,
    ) -> ecs.ContainerDefinition:
        container = self.task_definition.add_container(
            "app",
            image=image,
            essential=True,
            port_mappings=[ecs.PortMapping(container_port=port, name="http")],
            environment=dict(environment),
            secrets=dict(secrets),
            command=list(command) if command is not None else None,
            readonly_root_filesystem=readonly,
            logging=ecs.LogDrivers.aws_logs(stream_prefix=self.service_name, log_group=self.log_group),
            health_check=ecs.HealthCheck(
                command=list(health_check),
                interval=Duration.seconds(30),
                timeout=Duration.seconds(5),
                retries=3,
                start_period=Duration.seconds(60),
            )
            if health_check
            else None,
            stop_timeout=Duration.seconds(30),
        )
        if readonly:
            # A writable scratch /tmp on the task's ephemeral storage; everything else stays read-only.
            self.task_definition.add_volume(name="tmp")
            container.add_mount_points(ecs.MountPoint(container_path="/tmp", source_volume="tmp", read_only=False))
        return container

    def _target_group(self, id: str, vpc: ec2.IVpc, port: int, health_check_path: str) -> elbv2.ApplicationTargetGroup:
        return elbv2.ApplicationTargetGroup(
            self,
            id,
            vpc=vpc,
            port=port,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            deregistration_delay=Duration.seconds(30),
            health_check=elbv2.HealthCheck(
                path=health_check_path,
                healthy_http_codes="200",
                interval=Duration.seconds(15),
                timeout=Duration.seconds(5),
                healthy_threshold_count=2,
                unhealthy_threshold_count=3,
            ),
        )

    def _build_routing(
        self, routing: Routing, port: int, health_check_path: str, deployment: Deployment
    ) -> tuple[elbv2.ApplicationTargetGroup, elbv2.ApplicationTargetGroup | None]:
        vpc = self.service.cluster.vpc
        blue = self._target_group("TargetGroup", vpc, port, health_check_path)
        rule = elbv2.ApplicationListenerRule(
            self,
            "ListenerRule",
            listener=routing.listener,
            priority=routing.priority,
            conditions=[elbv2.ListenerCondition.path_patterns(list(routing.path_patterns))],
            action=elbv2.ListenerAction.forward([blue]),
        )
        green = None
        alternate = None
        if deployment.strategy != "rolling":
            green = self._target_group("AlternateTargetGroup", vpc, port, health_check_path)
            alternate = ecs.AlternateTarget(
                "Alternate",
                alternate_target_group=green,
                production_listener=ecs.ListenerRuleConfiguration.application_listener_rule(rule),
            )
        target = self.service.load_balancer_target(
            container_name=self.container.container_name, container_port=port, alternate_target=alternate
        )
        target.attach_to_application_target_group(blue)  # also opens the port to the load balancer
        return blue, green

    def allow_to(self, peer: ec2.ISecurityGroup, port: int, description: str) -> None:
        """Let the tasks open connections to `peer` on `port` (the peer must admit them too: its ingress rule)."""
        self.security_group.add_egress_rule(peer, ec2.Port.tcp(port), description)

    def _build_metrics(self) -> ServiceMetrics:
        """The service's metrics over both target groups (the live one changes with canary and blue/green)."""
        groups = [group for group in (self.target_group, self.alternate_target_group) if group is not None]
        minute = Duration.minutes(1)

        def combined(expression: str, name: str, statistic: str, label: str) -> cloudwatch.MathExpression:
            """`expression` over one metric `name` of each target group (ids unique per service, metric and
            statistic, so expressions can be nested and graphed together)."""
            stem = "".join(c for c in f"{self.service_name}{name}{statistic}" if c.isalnum()).lower()
            ids = [f"{stem}{index}" for index in range(len(groups))]
            return cloudwatch.MathExpression(
                # The load balancer publishes counts only when non-zero (the idle group: never): FILL keeps sums whole.
                expression=expression.format(ids=",".join(ids), sum="+".join(f"FILL({id},0)" for id in ids)),
                using_metrics={
                    id: self._target_group_metric(name, statistic, group) for id, group in zip(ids, groups, strict=True)
                },
                label=f"{self.service_name} {label}",
                period=minute,
            )

        requests = combined("{sum}", "RequestCount", "Sum", "requests per minute")
        errors = combined("{sum}", "HTTPCode_Target_5XX_Count", "Sum", "target 5xx per minute")
        insights = {"ClusterName": self.service.cluster.cluster_name, "ServiceName": self.service_name}

        def tasks(name: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="ECS/ContainerInsights",
                metric_name=name,
                dimensions_map=insights,
                statistic="Average",
                period=minute,
            )

        return ServiceMetrics(
            requests=requests,
            errors_5xx=errors,
            error_rate_percent=cloudwatch.MathExpression(
                expression="IF(requests > 0, 100 * errors / requests, 0)",
                using_metrics={"requests": requests, "errors": errors},
                label=f"{self.service_name} 5xx %",
                period=minute,
            ),
            p50_latency=combined("MAX([{ids}])", "TargetResponseTime", "p50", "p50 response time"),
            p99_latency=combined("MAX([{ids}])", "TargetResponseTime", "p99", "p99 response time"),
            healthy_targets=combined("{sum}", "HealthyHostCount", "Minimum", "healthy targets"),
            unhealthy_targets=combined("{sum}", "UnHealthyHostCount", "Maximum", "unhealthy targets"),
            running_tasks=tasks("RunningTaskCount"),
            desired_tasks=tasks("DesiredTaskCount"),
            missing_tasks=cloudwatch.MathExpression(
                expression="desired - running",
                using_metrics={"desired": tasks("DesiredTaskCount"), "running": tasks("RunningTaskCount")},
                label=f"{self.service_name} tasks missing",
                period=minute,
            ),
        )

    def _build_deployment_alarms(self, deployment: Deployment) -> list[cloudwatch.Alarm]:
        """5xx count and p99 latency over both target groups: literal names, so the service can name them."""
        return [
            cloudwatch.Alarm(
                self,
                "Deploy5xxAlarm",
                alarm_name=self.deployment_alarm_names[0],
                alarm_description=f"{self.service_name}: target 5xx responses; rolls a deployment back",
                metric=self.metrics.errors_5xx,
                threshold=deployment.alarm_5xx_count,
                evaluation_periods=2,
                datapoints_to_alarm=2,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            cloudwatch.Alarm(
                self,
                "DeployLatencyAlarm",
                alarm_name=self.deployment_alarm_names[1],
                alarm_description=f"{self.service_name}: p99 target response time; rolls a deployment back",
                metric=self.metrics.p99_latency,
                threshold=deployment.alarm_p99_latency.to_seconds(),
                evaluation_periods=3,
                datapoints_to_alarm=3,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
        ]

    def _scale_on_requests(self, capacity: ecs.ScalableTaskCount, requests_per_target: int) -> None:
        """Requests per task per minute. With an alternate target group the live group changes with every
        deployment, so the count adds both groups and divides by the running tasks (metric math)."""
        if self.alternate_target_group is None:
            capacity.scale_on_request_count(
                "RequestScaling",
                policy_name="request-scaling",
                requests_per_target=requests_per_target,
                target_group=self.target_group,
            )
            return

        # CDK's target tracking takes only single metrics: the policy is written as CloudFormation directly.
        def query(id: str, metric: str, namespace: str, dimensions: dict[str, str], statistic: str) -> Any:
            return appscaling.CfnScalingPolicy.TargetTrackingMetricDataQueryProperty(
                id=id,
                return_data=False,
                metric_stat=appscaling.CfnScalingPolicy.TargetTrackingMetricStatProperty(
                    metric=appscaling.CfnScalingPolicy.TargetTrackingMetricProperty(
                        metric_name=metric,
                        namespace=namespace,
                        dimensions=[
                            appscaling.CfnScalingPolicy.TargetTrackingMetricDimensionProperty(name=key, value=value)
                            for key, value in dimensions.items()
                        ],
                    ),
                    stat=statistic,
                ),
            )

        load_balancer = self._load_balancer.load_balancer_full_name
        groups = [self.target_group, self.alternate_target_group]
        metrics = [
            query(
                f"r{index}",
                "RequestCount",
                "AWS/ApplicationELB",
                {"LoadBalancer": load_balancer, "TargetGroup": group.target_group_full_name},
                "Sum",
            )
            for index, group in enumerate(groups)
        ]
        metrics.append(
            query(
                "tasks",
                "RunningTaskCount",
                "ECS/ContainerInsights",
                {"ClusterName": self.service.cluster.cluster_name, "ServiceName": self.service_name},
                "Average",
            )
        )
        metrics.append(
            appscaling.CfnScalingPolicy.TargetTrackingMetricDataQueryProperty(
                id="perTask",
                # FILL: the idle target group publishes no RequestCount, and a sum with a missing term is missing.
                expression="IF(tasks > 0, (FILL(r0, 0) + FILL(r1, 0)) / tasks, 0)",
                label=f"{self.service_name} requests per task",
                return_data=True,
            )
        )
        target = capacity.node.find_child("Target")
        assert isinstance(target, appscaling.ScalableTarget)
        appscaling.CfnScalingPolicy(
            self,
            "RequestScaling",
            policy_name="request-scaling",
            policy_type="TargetTrackingScaling",
            scaling_target_id=target.scalable_target_id,
            target_tracking_scaling_policy_configuration=appscaling.CfnScalingPolicy.TargetTrackingScalingPolicyConfigurationProperty(
                target_value=requests_per_target,
                scale_in_cooldown=300,
                scale_out_cooldown=60,
                customized_metric_specification=appscaling.CfnScalingPolicy.CustomizedMetricSpecificationProperty(
                    metrics=metrics
                ),
            ),
        )

    def _target_group_metric(self, name: str, statistic: str, group: elbv2.ApplicationTargetGroup) -> cloudwatch.Metric:
        """A target group's metric by dimensions (the alternate group is not attached to a listener by CDK)."""
        return cloudwatch.Metric(
            namespace="AWS/ApplicationELB",
            metric_name=name,
            statistic=statistic,
            period=Duration.minutes(1),
            dimensions_map={
                "LoadBalancer": self._load_balancer.load_balancer_full_name,
                "TargetGroup": group.target_group_full_name,
            },
        )

    def _build_scaling(self, scaling: Scaling, off_hours: OffHours | None) -> ecs.ScalableTaskCount:
        capacity = self.service.auto_scale_task_count(min_capacity=scaling.min_tasks, max_capacity=scaling.max_tasks)
        capacity.scale_on_cpu_utilization(
            "CpuScaling",
            policy_name="cpu-scaling",
            target_utilization_percent=scaling.cpu_target_percent,
            scale_in_cooldown=Duration.minutes(5),
            scale_out_cooldown=Duration.minutes(1),
        )
        if scaling.requests_per_target is not None:
            self._scale_on_requests(capacity, scaling.requests_per_target)
        if off_hours is not None:
            zone = TimeZone.of(off_hours.time_zone)
            capacity.scale_on_schedule(
                "StopAfterHours",
                schedule=appscaling.Schedule.cron(minute="0", hour=str(off_hours.stop_hour), week_day="MON-FRI"),
                min_capacity=0,
                max_capacity=0,
                time_zone=zone,
            )
            capacity.scale_on_schedule(
                "StartWorkingHours",
                schedule=appscaling.Schedule.cron(minute="0", hour=str(off_hours.start_hour), week_day="MON-FRI"),
                min_capacity=scaling.min_tasks,
                max_capacity=scaling.max_tasks,
                time_zone=zone,
            )
        return capacity
