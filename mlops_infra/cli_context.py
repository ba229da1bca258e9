"""The context keys the CDK CLI derives from a cdk.json's settings when it runs an app.

An app synthesized without the CLI (in-process tests, `python app.py`, the offline diff's synths) gets them from
here, so its templates equal those of `cdk synth` byte for byte (the `aws:cdk:path` metadata, for one). Mirrors
`contextFromSettings` in the aws-cdk CLI; tests/test_cli_context.py compares with what the pinned CLI passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def cli_settings_context(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Context from cdk.json's top-level settings (`pathMetadata`, `assetMetadata`, `versionReporting`, `staging`,
    `bundlingStacks`); the CLI gives these precedence over the `context` entries."""
    context: dict[str, Any] = {}
    if settings.get("pathMetadata", True):
        context["aws:cdk:enable-path-metadata"] = True
    if settings.get("assetMetadata", True):
        context["aws:cdk:enable-asset-metadata"] = True
    if settings.get("versionReporting", True):
        context["aws:cdk:version-reporting"] = True
    else:
        context["aws:cdk:disable-version-reporting"] = True
    if not settings.get("staging", True):
        context["aws:cdk:disable-asset-staging"] = True
    context["aws:cdk:bundling-stacks"] = settings.get("bundlingStacks", ["**"])
    # The CLI reports policy-validation failures itself (no validation plugin is used here; no template changes).
    context["@aws-cdk/core:failSynthOnValidationErrors"] = False
    return context
