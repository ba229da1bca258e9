"""Names fixed by the deployment guide, in one place."""

REPOSITORY_NAMES = ("mlops-backend", "mlops-frontend", "mlops-inference")


def cluster_name(env: str) -> str:
    return f"mlops-{env}"


def database_identifier(env: str) -> str:
    return f"mlops-db-{env}"


def key_alias_prefix(env: str) -> str:
    return f"alias/mlops-{env}"


def flow_log_group_name(env: str) -> str:
    return f"/vpc/mlops-{env}/flow-logs"
