"""Start `mlflow server` with its backend store built from the environment.

The task definition passes the server's flags as the container command and the database's
coordinates as environment variables; the password arrives as an ECS secret (from the
RDS-managed Secrets Manager secret) and so never appears in the task definition. Before the
server starts, the MLflow database (and the auth database, with basic auth) is created if
missing, since the RDS instance only has the default one.
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Mapping, Sequence
from urllib.parse import quote

DRIVER = "postgresql+psycopg2"  # psycopg 3 breaks stage transitions on MLflow 3
AUTH_CONFIG_PATH = "/tmp/basic_auth.ini"


def database_uri(env: Mapping[str, str], database: str) -> str:
    user = quote(env["DB_USER"], safe="")
    password = quote(env["DB_PASSWORD"], safe="")
    return f"{env.get('MLFLOW_BACKEND_STORE_DRIVER', DRIVER)}://{user}:{password}@{env['DB_HOST']}:{env['DB_PORT']}/{database}"


def server_command(env: Mapping[str, str], flags: Sequence[str]) -> list[str]:
    """The full `mlflow server` command line for these settings."""
    command = ["mlflow", "server", "--backend-store-uri", database_uri(env, env["DB_NAME"]), *flags]
    if env.get("MLFLOW_AUTH") == "true":
        command += ["--app-name", "basic-auth"]
    return command


def write_auth_config(env: Mapping[str, str], path: str = AUTH_CONFIG_PATH) -> None:
    """basic-auth's settings: users live in a PostgreSQL database, never in SQLite on the task's disk."""
    settings = {
        "default_permission": "READ",
        "database_uri": database_uri(env, env["MLFLOW_AUTH_DB_NAME"]),
        "admin_username": env.get("MLFLOW_ADMIN_USERNAME", "admin"),
        "admin_password": env["MLFLOW_ADMIN_PASSWORD"],
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    parser = configparser.ConfigParser()
    # MLflow reads this file with interpolation on: a literal % (URL-quoted passwords have them) is written %%.
    parser["mlflow"] = {key: value.replace("%", "%%") for key, value in settings.items()}
    with open(path, "w", encoding="utf-8") as handle:
        parser.write(handle)


def ensure_databases(env: Mapping[str, str]) -> None:  # pragma: no cover - needs a PostgreSQL server
    import psycopg2

    names = [env["DB_NAME"]] + ([env["MLFLOW_AUTH_DB_NAME"]] if env.get("MLFLOW_AUTH") == "true" else [])
    connection = psycopg2.connect(
        host=env["DB_HOST"],
        port=env["DB_PORT"],
        user=env["DB_USER"],
        password=env["DB_PASSWORD"],
        dbname="postgres",
        sslmode="require",
    )
    connection.autocommit = True
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()


def main(argv: Sequence[str]) -> None:  # pragma: no cover - replaces the process
    env = dict(os.environ)
    ensure_databases(env)
    if env.get("MLFLOW_AUTH") == "true":
        write_auth_config(env)
        os.environ["MLFLOW_AUTH_CONFIG_PATH"] = AUTH_CONFIG_PATH
    command = server_command(env, argv)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
