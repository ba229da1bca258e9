"""Reusable constructs: typed keyword props in, created resources out as public attributes.

None of them reads a file, an environment variable or the environment's name, so any CDK
app can use them: `from mlops_infra.constructs import Network, Database`.
"""

from mlops_infra.constructs.alerting import AlertTopic, PlatformAlarms, Thresholds, grant_put_metrics
from mlops_infra.constructs.artifact_storage import ArtifactStorage, ReplicationDestination
from mlops_infra.constructs.backup import BackupPlan, protected_vault
from mlops_infra.constructs.ci_identity import DeployTarget, GithubOidcRoles
from mlops_infra.constructs.container_registry import ContainerRegistry
from mlops_infra.constructs.dashboard import PlatformDashboard
from mlops_infra.constructs.database import Database
from mlops_infra.constructs.feature_cache import FeatureCache
from mlops_infra.constructs.frontend_distribution import FrontendDistribution
from mlops_infra.constructs.http_service import (
    Deployment,
    HttpService,
    HttpServiceOptions,
    OffHours,
    Routing,
    Scaling,
    ServiceMetrics,
)
from mlops_infra.constructs.keys import DataKeys, customer_managed_key
from mlops_infra.constructs.load_balancer import InternalLoadBalancer
from mlops_infra.constructs.mlflow_server import MlflowServer
from mlops_infra.constructs.network import Network
from mlops_infra.constructs.restart_on_rotation import RestartOnSecretRotation
from mlops_infra.constructs.stop_start import StopStartSchedule, StopStartTarget

__all__ = [
    "AlertTopic",
    "ArtifactStorage",
    "BackupPlan",
    "ContainerRegistry",
    "DataKeys",
    "Database",
    "DeployTarget",
    "Deployment",
    "FeatureCache",
    "FrontendDistribution",
    "GithubOidcRoles",
    "HttpService",
    "HttpServiceOptions",
    "InternalLoadBalancer",
    "MlflowServer",
    "Network",
    "OffHours",
    "PlatformAlarms",
    "PlatformDashboard",
    "ReplicationDestination",
    "RestartOnSecretRotation",
    "Routing",
    "Scaling",
    "ServiceMetrics",
    "StopStartSchedule",
    "StopStartTarget",
    "Thresholds",
    "customer_managed_key",
    "grant_put_metrics",
    "protected_vault",
]
