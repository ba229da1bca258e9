"""model-registry/entrypoint.py: the `mlflow server` command line and basic-auth's config file.

Pure functions only: no network, no PostgreSQL, nothing executed.
"""

from __future__ import annotations

import configparser
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from urllib.parse import unquote, urlsplit

import pytest

ENTRYPOINT = Path(__file__).resolve().parent.parent / "model-registry" / "entrypoint.py"
FLAGS = ["--host", "0.0.0.0", "--port", "5000", "--serve-artifacts", "--artifacts-destination", "s3://bucket/mlflow"]
SPECIAL_PASSWORD = "p@ss:w/rd?#%!&x"  # every character that means something in a URL


def load_entrypoint() -> ModuleType:
    """Imported by path: the folder's name has a hyphen."""
    spec = importlib.util.spec_from_file_location("mlflow_entrypoint", ENTRYPOINT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


entrypoint = load_entrypoint()


def settings(**overrides: str) -> dict[str, str]:
    """The container's environment as the task definition sets it (secrets included)."""
    env = {
        "DB_HOST": "host",
        "DB_PORT": "5432",
        "DB_NAME": "mlflow",
        "DB_USER": "user",
        "DB_PASSWORD": "pass",
        "MLFLOW_AUTH": "false",
    }
    return env | overrides


def auth_settings(**overrides: str) -> dict[str, str]:
    auth = {
        "MLFLOW_AUTH": "true",
        "MLFLOW_AUTH_DB_NAME": "mlflow_auth",
        "MLFLOW_ADMIN_USERNAME": "admin",
        "MLFLOW_ADMIN_PASSWORD": "admin-secret",
    }
    return settings(**(auth | overrides))


def read_back(path: Path) -> configparser.SectionProxy:
    """The file read the way MLflow reads it (mlflow.server.auth.config: a plain ConfigParser)."""
    parser = configparser.ConfigParser()
    assert parser.read(path, encoding="utf-8") == [str(path)]
    return parser["mlflow"]


# --- server_command -------------------------------------------------------------------------


def test_the_command_starts_mlflow_with_the_backend_store() -> None:
    command = entrypoint.server_command(settings(), FLAGS)
    assert command[:4] == [
        "mlflow",
        "server",
        "--backend-store-uri",
        "postgresql+psycopg2://user:pass@host:5432/mlflow",
    ]


def test_the_flags_follow_in_order_without_auth() -> None:
    assert entrypoint.server_command(settings(), FLAGS)[4:] == FLAGS


@pytest.mark.parametrize("value", ["false", "", "True", "1"])
def test_basic_auth_only_when_mlflow_auth_is_true(value: str) -> None:
    assert "--app-name" not in entrypoint.server_command(settings(MLFLOW_AUTH=value), FLAGS)


def test_basic_auth_adds_the_app_name_after_the_flags() -> None:
    assert entrypoint.server_command(auth_settings(), FLAGS)[4:] == [*FLAGS, "--app-name", "basic-auth"]


def test_no_mlflow_auth_variable_means_no_basic_auth() -> None:
    env = settings()
    del env["MLFLOW_AUTH"]
    assert entrypoint.server_command(env, [])[4:] == []


@pytest.mark.parametrize("password", [SPECIAL_PASSWORD, "@", ":", "/", "?", "#", "%", "%40", "a b+c"])
def test_special_characters_in_the_password_are_quoted(password: str) -> None:
    uri = entrypoint.server_command(settings(DB_PASSWORD=password), [])[3]
    parts = urlsplit(uri)
    assert parts.password is not None
    assert unquote(parts.password) == password
    assert (unquote(parts.username or ""), parts.hostname, parts.port, parts.path) == ("user", "host", 5432, "/mlflow")


def test_special_characters_in_the_user_are_quoted() -> None:
    uri = entrypoint.server_command(settings(DB_USER="ml@flow:admin"), [])[3]
    assert unquote(urlsplit(uri).username or "") == "ml@flow:admin"


def test_the_driver_can_be_overridden() -> None:
    env = settings(MLFLOW_BACKEND_STORE_DRIVER="postgresql+psycopg")
    assert entrypoint.server_command(env, [])[3] == "postgresql+psycopg://user:pass@host:5432/mlflow"


def test_the_default_driver_is_psycopg2() -> None:
    assert urlsplit(entrypoint.server_command(settings(), [])[3]).scheme == "postgresql+psycopg2"


# --- write_auth_config ----------------------------------------------------------------------


def test_the_auth_config_points_at_the_auth_database(tmp_path: Path) -> None:
    path = tmp_path / "basic_auth.ini"
    entrypoint.write_auth_config(auth_settings(), str(path))
    section = read_back(path)
    assert section["database_uri"] == "postgresql+psycopg2://user:pass@host:5432/mlflow_auth"
    assert (section["admin_username"], section["admin_password"]) == ("admin", "admin-secret")
    assert section["default_permission"] == "READ"
    assert section["authorization_function"] == "mlflow.server.auth:authenticate_request_basic_auth"


def test_the_auth_config_uses_the_driver_override(tmp_path: Path) -> None:
    path = tmp_path / "basic_auth.ini"
    entrypoint.write_auth_config(auth_settings(MLFLOW_BACKEND_STORE_DRIVER="postgresql+psycopg"), str(path))
    assert read_back(path)["database_uri"] == "postgresql+psycopg://user:pass@host:5432/mlflow_auth"


def test_the_admin_username_defaults_to_admin(tmp_path: Path) -> None:
    env = auth_settings()
    del env["MLFLOW_ADMIN_USERNAME"]
    path = tmp_path / "basic_auth.ini"
    entrypoint.write_auth_config(env, str(path))
    assert read_back(path)["admin_username"] == "admin"


def test_a_database_password_with_special_characters_survives_the_auth_config(tmp_path: Path) -> None:
    """RDS-generated passwords contain punctuation; quoted, it becomes %XX, which ConfigParser must not choke on."""
    path = tmp_path / "basic_auth.ini"
    entrypoint.write_auth_config(auth_settings(DB_PASSWORD=SPECIAL_PASSWORD), str(path))
    parts = urlsplit(read_back(path)["database_uri"])
    assert unquote(parts.password or "") == SPECIAL_PASSWORD
    assert parts.path == "/mlflow_auth"


def test_an_admin_password_with_a_percent_sign_survives_the_auth_config(tmp_path: Path) -> None:
    path = tmp_path / "basic_auth.ini"
    entrypoint.write_auth_config(auth_settings(MLFLOW_ADMIN_PASSWORD="100%sure"), str(path))
    assert read_back(path)["admin_password"] == "100%sure"
