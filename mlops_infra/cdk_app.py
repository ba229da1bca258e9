"""Builds the CDK App: every environment found in the config folder, cdk-nag on every stack."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import App

from mlops_infra import compliance
from mlops_infra.cli_context import cli_settings_context
from mlops_infra.config import ConfigError, EnvironmentConfig, load_all
from mlops_infra.stacks import EnvironmentStacks, build_ci, build_environment, build_registries

CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"
# `-c environments=dev,prod` builds only those environments (the default is every config file).
ENVIRONMENTS_CONTEXT_KEY = "environments"


def create_app(
    *,
    context: Mapping[str, Any] | None = None,
    outdir: str | None = None,
    config_dir: Path | None = None,
    configs: list[EnvironmentConfig] | None = None,
) -> tuple[App, dict[str, EnvironmentStacks]]:
    """Build the app from validated configs (read from `config_dir` unless given); raises ConfigError."""
    app = App(
        context=dict(project_context() if context is None else context),
        outdir=outdir,
        # cfn-lint runs over every template in the tests; CDK_VALIDATION=true turns the slower built-in check back on.
        builtin_cloud_formation_validation=os.environ.get("CDK_VALIDATION", "false").lower() == "true",
    )
    every = configs or load_all(config_dir)
    configs = _select(app.node.try_get_context(ENVIRONMENTS_CONTEXT_KEY), every)
    compliance.enable_checks(app)
    environments = {}
    registries = build_registries(app, configs, every=every)
    for config in configs:
        stacks = build_environment(app, config, registry=registries[config.aws.region])
        compliance.acknowledge(stacks, config)
        environments[config.name] = stacks
    compliance.acknowledge_ci(build_ci(app, configs))
    return app, environments


def project_context() -> dict[str, Any]:
    """What `cdk synth` gives the app as context: the `context` of the repository's cdk.json (feature flags) and what
    the CLI derives from cdk.json's settings (`aws:cdk:path` metadata, for one).

    `python app.py` and in-process tests do not get it from the CLI; passing it keeps their
    templates identical to the CLI's. Context given by the CLI still takes precedence.
    """
    if not CDK_JSON.is_file():
        return {}
    settings: dict[str, Any] = json.loads(CDK_JSON.read_text(encoding="utf-8"))
    return {**settings.get("context", {}), **cli_settings_context(settings)}


def _select(selection: str | None, configs: list[EnvironmentConfig]) -> list[EnvironmentConfig]:
    if not selection:
        return configs
    by_name = {config.name: config for config in configs}
    names = [name.strip() for name in str(selection).split(",") if name.strip()]
    unknown = [name for name in names if name not in by_name]
    if unknown or not names:
        wrong = ", ".join(unknown) or "(none given)"
        known = ", ".join(sorted(by_name))
        raise ConfigError(
            [f"-c {ENVIRONMENTS_CONTEXT_KEY}={selection}: unknown environment(s) {wrong}; known environments: {known}"]
        )
    return [by_name[name] for name in names]
