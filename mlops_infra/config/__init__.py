"""Typed, validated per-environment settings read from ``config/<env>.toml``.

Every value that differs between environments lives in a TOML file; :func:`load_config` turns one file into a
frozen :class:`EnvironmentConfig` or raises :class:`ConfigError` with one line per problem, each naming the
file, the field path, the bad value and what is allowed.

- `fields`: value rules and reusable field types (each error says what is allowed);
- `models`: the sections of a config file and the rules that span sections (production, after hours, ...);
- `loading`: reading the files and turning validation errors into those lines.
"""

from mlops_infra.config.fields import FieldProblem, FieldProblems
from mlops_infra.config.loading import (
    CONFIG_DIR_ENV,
    DEFAULT_CONFIG_DIR,
    ConfigError,
    config_dir,
    environment_names,
    load_all,
    load_config,
)
from mlops_infra.config.models import (
    IMAGE_TAG_PATTERN,
    IMAGE_TAG_RULE,
    AlarmThresholds,
    AwsSettings,
    BackupSettings,
    CacheSettings,
    CiSettings,
    DatabaseSettings,
    EnvironmentConfig,
    FrontendSettings,
    InferenceSettings,
    LoadBalancerSettings,
    MlflowSettings,
    NamingSettings,
    NetworkSettings,
    ObservabilitySettings,
    RegistrySettings,
    ScheduleSettings,
    ServiceSize,
    ServicesSettings,
    StorageSettings,
    TagSettings,
)

__all__ = [
    "CONFIG_DIR_ENV",
    "DEFAULT_CONFIG_DIR",
    "IMAGE_TAG_PATTERN",
    "IMAGE_TAG_RULE",
    "AlarmThresholds",
    "AwsSettings",
    "BackupSettings",
    "CacheSettings",
    "CiSettings",
    "ConfigError",
    "DatabaseSettings",
    "EnvironmentConfig",
    "FieldProblem",
    "FieldProblems",
    "FrontendSettings",
    "InferenceSettings",
    "LoadBalancerSettings",
    "MlflowSettings",
    "NamingSettings",
    "NetworkSettings",
    "ObservabilitySettings",
    "RegistrySettings",
    "ScheduleSettings",
    "ServiceSize",
    "ServicesSettings",
    "StorageSettings",
    "TagSettings",
    "config_dir",
    "environment_names",
    "load_all",
    "load_config",
]
