"""In-process unit tests of mlops_infra.config: the shipped config files, the models, derived names.

Bad inputs are tested through the real entry point (app.py) in tests/test_config_errors.py; the
few error paths here are the ones that entry point cannot reach (an unknown environment's name).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mlops_infra.config import (
    CONFIG_DIR_ENV,
    DEFAULT_CONFIG_DIR,
    ConfigError,
    EnvironmentConfig,
    config_dir,
    environment_names,
    load_all,
    load_config,
)

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config"


@pytest.fixture(scope="module")
def configs() -> dict[str, EnvironmentConfig]:
    return {config.name: config for config in load_all(SHIPPED)}


def write_config(folder: Path, env: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{env}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def shipped_text(env: str) -> str:
    return (SHIPPED / f"{env}.toml").read_text(encoding="utf-8")


def replaced(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} should occur once in the shipped config"
    return text.replace(old, new)


# --------------------------------------------------------------------------------------------
# The shipped config files.


def test_shipped_environments_load_sorted_by_name(configs: dict[str, EnvironmentConfig]) -> None:
    assert environment_names(SHIPPED) == ["dev", "prod", "staging"]
    assert [config.name for config in load_all(SHIPPED)] == ["dev", "prod", "staging"]
    assert set(configs) == {"dev", "prod", "staging"}


def test_default_config_dir_is_the_repository_config_folder() -> None:
    assert DEFAULT_CONFIG_DIR == SHIPPED


def test_dev_values(configs: dict[str, EnvironmentConfig]) -> None:
    dev = configs["dev"]
    assert dev.production is False
    assert dev.termination_protection is False
    assert dev.removal_policy == "snapshot"
    assert dev.aws.region == "us-east-1"
    assert dev.aws.account is None
    assert dev.aws.availability_zones == ["us-east-1a", "us-east-1b"]
    assert dev.aws.dr_region is None
    assert dev.network.cidr == "10.10.0.0/16"
    assert dev.network.nat_gateways == 1
    assert dev.network.flow_log_traffic_type == "REJECT"
    assert dev.network.flow_log_retention_days == 14
    assert dev.network.interface_endpoints == []
    assert dev.database.multi_az is False
    assert dev.database.backup_retention_days == 7
    assert dev.database.deletion_protection is False
    assert dev.database.instance_class == "db.t4g.micro"
    assert dev.storage.replication is False
    # The after-hours savings: the database and NAT instance stop with the services, which run on Spot.
    assert dev.database.stop_after_hours is True
    assert dev.network.stop_nat_after_hours is True
    assert dev.services.capacity == "spot"
    assert dev.registry.max_image_count == 100  # the registry is shared: the same in every environment


def test_staging_values(configs: dict[str, EnvironmentConfig]) -> None:
    staging = configs["staging"]
    assert staging.production is False
    assert staging.termination_protection is True
    assert staging.aws.availability_zones == ["us-east-1a", "us-east-1b"]
    assert staging.network.cidr == "10.20.0.0/16"
    assert staging.network.nat_gateways == 1
    assert staging.network.flow_log_traffic_type == "ALL"
    assert staging.database.multi_az is False
    assert staging.database.backup_retention_days == 14
    assert staging.database.deletion_protection is True
    assert staging.storage.replication is False
    assert (staging.database.stop_after_hours, staging.network.stop_nat_after_hours) == (False, False)
    assert staging.services.capacity == "on_demand"


def test_prod_values(configs: dict[str, EnvironmentConfig]) -> None:
    prod = configs["prod"]
    assert prod.production is True
    assert prod.termination_protection is True
    assert prod.removal_policy == "retain"
    assert prod.aws.region == "us-east-1"
    assert prod.aws.availability_zones == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert prod.aws.dr_region == "us-west-2"
    assert prod.network.cidr == "10.30.0.0/16"
    assert prod.network.nat_gateways == 3
    assert prod.network.flow_log_traffic_type == "ALL"
    assert prod.network.interface_endpoints == ["ecr", "logs", "secretsmanager"]
    assert prod.database.multi_az is True
    assert prod.database.backup_retention_days == 30
    assert prod.database.deletion_protection is True
    assert prod.database.instance_class == "db.m6g.large"
    assert prod.storage.replication is True
    assert prod.registry.max_image_count == 100


def test_environments_do_not_share_a_vpc_cidr(configs: dict[str, EnvironmentConfig]) -> None:
    cidrs = [config.network.cidr for config in configs.values()]
    assert len(set(cidrs)) == len(cidrs)


def test_defaults_fill_keys_the_files_leave_out(configs: dict[str, EnvironmentConfig]) -> None:
    for config in configs.values():
        assert config.network.subnet_masks() == {"public": 24, "private": 20, "isolated": 24}
        assert config.database.performance_insights is True
        assert config.storage.abort_incomplete_multipart_days == 7
        assert config.registry.untagged_expiry_days == 7
        assert config.tags.extra == {}


# --------------------------------------------------------------------------------------------
# Derived names.


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_derived_names(configs: dict[str, EnvironmentConfig], env: str) -> None:
    config = configs[env]
    assert config.title == env.capitalize()
    assert config.models_bucket_name == f"example-mlops-models-{env}"
    assert config.models_replica_bucket_name == f"example-mlops-models-{env}-replica"
    assert config.access_logs_bucket_name == f"example-mlops-access-logs-{env}"
    assert config.replica_access_logs_bucket_name == f"example-mlops-access-logs-{env}-replica"
    assert config.database.engine_major_version == "17"


def test_longest_allowed_prefix_and_name_still_give_valid_bucket_names(tmp_path: Path) -> None:
    prefix, env = "a" * 20, "e" * 16
    write_config(tmp_path, env, replaced(shipped_text("dev"), 'prefix = "example"', f'prefix = "{prefix}"'))
    config = load_config(env, tmp_path)
    names = [
        config.models_bucket_name,
        config.models_replica_bucket_name,
        config.access_logs_bucket_name,
        config.replica_access_logs_bucket_name,
    ]
    assert all(3 <= len(name) <= 63 for name in names), names


# --------------------------------------------------------------------------------------------
# The models are immutable.


def test_config_is_frozen(configs: dict[str, EnvironmentConfig]) -> None:
    prod = configs["prod"]
    with pytest.raises(ValidationError, match="frozen"):
        prod.production = False
    with pytest.raises(ValidationError, match="frozen"):
        prod.database.multi_az = False
    with pytest.raises(ValidationError, match="frozen"):
        prod.aws.dr_region = None
    with pytest.raises(ValidationError, match="frozen"):
        prod.network.nat_gateways = 1
    assert prod.production is True
    assert prod.database.multi_az is True


def test_loading_twice_gives_equal_configs(configs: dict[str, EnvironmentConfig]) -> None:
    assert load_config("prod", SHIPPED) == configs["prod"]


# --------------------------------------------------------------------------------------------
# Where configs are read from, and errors the entry point cannot reach.


def test_config_dir_follows_the_environment_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path))
    assert config_dir() == tmp_path
    monkeypatch.setenv(CONFIG_DIR_ENV, "")
    assert config_dir() == DEFAULT_CONFIG_DIR
    monkeypatch.delenv(CONFIG_DIR_ENV)
    assert config_dir() == DEFAULT_CONFIG_DIR


def test_load_all_reads_the_folder_named_by_the_environment_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_config(tmp_path, "qa", shipped_text("staging"))
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path))
    [qa] = load_all()
    assert qa.name == "qa"
    assert qa.models_bucket_name == "example-mlops-models-qa"
    assert qa.database.backup_retention_days == 14


def test_unknown_environment_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("qa", SHIPPED)
    [problem] = caught.value.problems
    assert "qa.toml: no such file" in problem
    assert "unknown environment 'qa'" in problem
    assert "known environments: dev, prod, staging" in problem
    assert str(caught.value) == problem


def test_unknown_environment_in_a_folder_without_configs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown environment 'qa' \(known environments: none\)"):
        load_config("qa", tmp_path)


def test_load_all_of_an_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no <env>\.toml files found"):
        load_all(tmp_path)


def test_load_all_of_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"config folder not found \\(set {CONFIG_DIR_ENV}"):
        load_all(tmp_path / "missing")


def test_config_error_keeps_one_problem_per_line() -> None:
    error = ConfigError(["a.toml: x = 1: bad", "b.toml: y = 2: bad"])
    assert error.problems == ["a.toml: x = 1: bad", "b.toml: y = 2: bad"]
    assert str(error) == "a.toml: x = 1: bad\nb.toml: y = 2: bad"


# --------------------------------------------------------------------------------------------
# Values at the edge of what is allowed still load.


def test_minimal_config_with_only_required_keys(tmp_path: Path) -> None:
    text = "\n".join(
        line
        for line in shipped_text("dev").splitlines()
        if not line.startswith(
            (
                "interface_endpoints",
                "max_allocated_storage_gib",
                "log_retention_days",
                "access_log_expiration_days",
                "replication",
            )
        )
    )
    write_config(tmp_path, "dev", text)
    config = load_config("dev", tmp_path)
    assert config.network.interface_endpoints == []
    assert config.database.max_allocated_storage_gib is None
    assert config.database.log_retention_days == 30
    assert config.storage.access_log_expiration_days == 90
    assert config.storage.replication is False


def test_production_accepts_the_minimum_it_allows(tmp_path: Path) -> None:
    text = replaced(shipped_text("prod"), "backup_retention_days = 30", "backup_retention_days = 7")
    text = replaced(text, 'removal_policy = "retain"', 'removal_policy = "snapshot"')
    write_config(tmp_path, "prod", text)
    config = load_config("prod", tmp_path)
    assert config.database.backup_retention_days == 7
    assert config.removal_policy == "snapshot"


def test_subnets_that_exactly_fill_the_vpc_fit(tmp_path: Path) -> None:
    # 2 AZs x (/26 + /27 + /27) = 2 x (64 + 32 + 32) = 256 addresses = one /24.
    masks = "public_subnet_mask = 26\nprivate_subnet_mask = 27\nisolated_subnet_mask = 27\n"
    text = replaced(shipped_text("dev"), 'cidr = "10.10.0.0/16"', f'cidr = "10.10.0.0/24"\n{masks}')
    write_config(tmp_path, "dev", text)
    assert load_config("dev", tmp_path).network.subnet_masks() == {"public": 26, "private": 27, "isolated": 27}
    write_config(tmp_path, "dev", text.replace("isolated_subnet_mask = 27", "isolated_subnet_mask = 26"))
    with pytest.raises(ConfigError, match=r'network.cidr = "10.10.0.0/24": is too small for 2 availability zones'):
        load_config("dev", tmp_path)


def test_account_and_tags_extra_are_accepted(tmp_path: Path) -> None:
    text = replaced(shipped_text("dev"), '# account = "111111111111"', 'account = "111111111111"')
    text = replaced(text, 'cost_center = "ml-platform"', 'cost_center = "ml-platform"\nextra = { team = "vision" }')
    write_config(tmp_path, "dev", text)
    config = load_config("dev", tmp_path)
    assert config.aws.account == "111111111111"
    assert config.tags.extra == {"team": "vision"}


# --- rules across environments (checked where the shared stacks are built) --------------------------------------


def _shipped_with(env: str, **sections: object) -> list[EnvironmentConfig]:
    """The shipped configs, with sections of one environment replaced."""
    return [config.model_copy(update=sections) if config.name == env else config for config in load_all()]


def test_environments_sharing_the_registry_need_its_lifecycle_alike(tmp_path: Path) -> None:
    from mlops_infra.cdk_app import create_app
    from mlops_infra.config.models import RegistrySettings

    configs = _shipped_with("dev", registry=RegistrySettings(max_image_count=20))
    with pytest.raises(ConfigError) as raised:
        create_app(configs=configs, outdir=str(tmp_path))
    (problem,) = raised.value.problems
    assert problem.startswith("[registry] differs between environments that share the repositories (")
    assert "dev: max_image_count = 20, untagged_expiry_days = 7" in problem
    assert "prod: max_image_count = 100" in problem
    assert not list(tmp_path.iterdir())  # nothing synthesized


def test_shared_stacks_serve_one_account(tmp_path: Path) -> None:
    from mlops_infra.cdk_app import create_app
    from mlops_infra.config.models import AwsSettings

    prod = next(config for config in load_all() if config.name == "prod")
    configs = _shipped_with("prod", aws=AwsSettings(**{**prod.aws.model_dump(), "account": "123456789012"}))
    with pytest.raises(ConfigError) as raised:
        create_app(configs=configs, outdir=str(tmp_path))
    assert raised.value.problems == [
        "aws.account differs between environments (123456789012, unset): MlopsRegistry serves one account; "
        "synthesize it per account with -c environments=<the environments of that account>"
    ]
