"""Names fixed by the deployment guide, in one place."""

REPOSITORY_NAMES = ("mlops-backend", "mlops-frontend", "mlops-inference", "mlops-mlflow")
# The tag prefix the promotion workflows add to the image they deploy, by GitHub environment; the registry keeps
# the newest PROMOTED_IMAGES_KEPT images of each.
PROMOTED_TAG_PREFIXES = {"staging": "staging-", "production": "prod-"}
PROMOTED_IMAGES_KEPT = 10


def cluster_name(env: str) -> str:
    return f"mlops-{env}"


def database_identifier(env: str) -> str:
    return f"mlops-db-{env}"


def key_alias_prefix(env: str) -> str:
    return f"alias/mlops-{env}"


def flow_log_group_name(env: str) -> str:
    return f"/vpc/mlops-{env}/flow-logs"


def log_group_patterns(env: str) -> tuple[str, ...]:
    """Every log group of an environment (services, flow logs, database logs): its `logs` key serves these only."""
    return (
        service_log_group(env, "*"),
        f"/vpc/mlops-{env}/*",
        f"/aws/rds/instance/{database_identifier(env)}/*",
        state_machine_log_group(env, "*"),
    )


def state_machine_log_group(env: str, purpose: str) -> str:
    """Step Functions logs: under /aws/vendedlogs/, as AWS recommends (no log resource policy to outgrow)."""
    return f"/aws/vendedlogs/states/mlops-{env}-{purpose}"


# The services, by short name: (ECS service name, container port).
SERVICES = {
    "backend": ("mlops-backend-service", 5000),
    "frontend": ("mlops-frontend-service", 8080),
    "mlflow": ("mlops-mlflow", 5000),
    "inference": ("mlops-inference", 8080),
}
MLFLOW_REPOSITORY = "mlops-mlflow"


def task_family(env: str, service: str) -> str:
    """Task definition families are per account: prefixed per environment, which may share one."""
    return f"mlops-{env}-{service}"


def service_log_group(env: str, service: str) -> str:
    return f"/ecs/mlops-{env}/{service}"


def deployment_alarm_prefix(env: str, service: str) -> str:
    """Deployment alarms are `<prefix>-5xx` and `<prefix>-p99-latency`: stable, so runbooks can name them."""
    return f"mlops-{env}-{service}-deploy"


def alarm_prefix(env: str) -> str:
    """Every alarm of an environment is named `mlops-<env>-...`."""
    return f"mlops-{env}"


def alert_topic(env: str) -> str:
    return f"mlops-{env}-alerts"


def dashboard(env: str) -> str:
    return f"mlops-{env}"


def backup_vault(env: str) -> str:
    """The environment's AWS Backup vault (its DR-region copy vault adds `-dr`)."""
    return f"mlops-{env}"


def ci_diff_role() -> str:
    return "mlops-ci-diff"


def ci_deploy_role(env: str) -> str:
    return f"mlops-ci-deploy-{env}"
