"""The operators' CloudWatch dashboard: inference, model quality, and infrastructure, one row each."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_rds as rds
from constructs import Construct

from mlops_infra.constructs.alerting import DRIFT_METRICS, MODEL_NAMESPACE, model_metric
from mlops_infra.constructs.http_service import HttpService

WIDTH = 8  # three widgets per row (a dashboard row is 24 units wide)
HEIGHT = 6


def _graph(title: str, left: Sequence[cloudwatch.IMetric], *, unit: str | None = None) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(
        title=title,
        left=list(left),
        width=WIDTH,
        height=HEIGHT,
        left_y_axis=cloudwatch.YAxisProps(label=unit, show_units=unit is None) if unit else None,
    )


class PlatformDashboard(Construct):
    """Dashboard `name`: every graph reads the metrics of this environment's own resources."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        inference: HttpService,
        services: Mapping[str, HttpService],
        database: rds.IDatabaseInstance,
        models: Sequence[str],
        alarms: Sequence[cloudwatch.IAlarm] = (),
    ) -> None:
        super().__init__(scope, id)
        self.dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=name, default_interval=Duration.hours(3)
        )
        self.dashboard.add_widgets(cloudwatch.TextWidget(markdown="## Inference", width=24, height=1))
        self.dashboard.add_widgets(*self._inference(inference))
        self.dashboard.add_widgets(cloudwatch.TextWidget(markdown="## Models", width=24, height=1))
        self.dashboard.add_widgets(*self._models(models))
        self.dashboard.add_widgets(cloudwatch.TextWidget(markdown="## Infrastructure", width=24, height=1))
        self.dashboard.add_widgets(*self._services(services))
        self.dashboard.add_widgets(*self._database(database))
        if alarms:
            self.dashboard.add_widgets(
                cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(alarms), width=24, height=HEIGHT)
            )

    @staticmethod
    def _inference(inference: HttpService) -> list[cloudwatch.IWidget]:
        metrics = inference.metrics
        custom = cloudwatch.Metric(
            namespace=MODEL_NAMESPACE, metric_name="InferenceLatency", statistic="p99", period=Duration.minutes(1)
        )
        return [
            cloudwatch.GraphWidget(
                title="Inference latency p50 / p99",
                left=[metrics.p50_latency, metrics.p99_latency],
                left_y_axis=cloudwatch.YAxisProps(label="target response time (s)", show_units=False),
                right=[
                    custom.with_(statistic="p50", label="MLOps InferenceLatency p50"),
                    custom.with_(label="MLOps InferenceLatency p99"),
                ],
                right_y_axis=cloudwatch.YAxisProps(label="InferenceLatency (ms)", show_units=False),
                width=WIDTH,
                height=HEIGHT,
            ),
            _graph("Inference 5xx error rate (%)", [metrics.error_rate_percent], unit="%"),
            _graph("Inference requests per minute", [metrics.requests]),
        ]

    @staticmethod
    def _models(models: Sequence[str]) -> list[cloudwatch.IWidget]:
        return [
            _graph("Model accuracy", [model_metric(model, "Accuracy").with_(label=model) for model in models]),
            _graph(
                "Model drift",
                [
                    model_metric(model, drift).with_(label=f"{model} {drift}")
                    for model in models
                    for drift in DRIFT_METRICS
                ],
            ),
        ]

    @staticmethod
    def _services(services: Mapping[str, HttpService]) -> list[cloudwatch.IWidget]:
        five = Duration.minutes(5)
        return [
            _graph(
                "ECS CPU (%)",
                [s.service.metric_cpu_utilization(period=five).with_(label=n) for n, s in services.items()],
            ),
            _graph(
                "ECS memory (%)",
                [s.service.metric_memory_utilization(period=five).with_(label=n) for n, s in services.items()],
            ),
            _graph(
                "Running / desired tasks",
                [
                    m
                    for n, s in services.items()
                    for m in (
                        s.metrics.running_tasks.with_(label=f"{n} running"),
                        s.metrics.desired_tasks.with_(label=f"{n} desired"),
                    )
                ],
            ),
            _graph(
                "Healthy / unhealthy targets",
                [m for n, s in services.items() for m in (s.metrics.healthy_targets, s.metrics.unhealthy_targets)],
            ),
            _graph(
                "Network I/O (bytes/s)",
                [
                    cloudwatch.Metric(
                        namespace="ECS/ContainerInsights",
                        metric_name=metric,
                        dimensions_map={
                            "ClusterName": s.service.cluster.cluster_name,
                            "ServiceName": s.service_name,
                        },
                        statistic="Average",
                        period=five,
                        label=f"{n} {direction}",
                    )
                    for n, s in services.items()
                    for metric, direction in (("NetworkRxBytes", "in"), ("NetworkTxBytes", "out"))
                ],
            ),
        ]

    @staticmethod
    def _database(database: rds.IDatabaseInstance) -> list[cloudwatch.IWidget]:
        five = Duration.minutes(5)
        return [
            _graph("RDS CPU (%)", [database.metric_cpu_utilization(period=five)]),
            _graph("RDS connections", [database.metric_database_connections(statistic="Maximum", period=five)]),
            _graph("RDS free storage (bytes)", [database.metric_free_storage_space(statistic="Minimum", period=five)]),
        ]
