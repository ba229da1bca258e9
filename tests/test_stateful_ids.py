"""Guard: stateful resources keep their logical IDs, so no change replaces them by accident.

A changed logical ID makes CloudFormation create a new resource and delete the old one: for a
database, bucket, repository, key or log group that is data loss. The IDs in use are listed in
tests/stateful_resources.json; this test fails when one disappears (or a new one is not listed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import Synth

REGISTRY = Path(__file__).with_name("stateful_resources.json")
STATEFUL_TYPES = (
    "AWS::Backup::BackupVault",
    "AWS::EC2::VPC",
    "AWS::ECR::Repository",
    "AWS::KMS::Key",
    "AWS::Logs::LogGroup",
    "AWS::RDS::DBInstance",
    "AWS::S3::Bucket",
    "AWS::SecretsManager::Secret",  # MLflow's admin password: basic auth keeps the first one it saw
)
HOW_TO_PROCEED = """
If this is an accident (a construct was renamed or moved), keep the old ID: rename it back, or pin it with
`resource.node.default_child.override_logical_id("<old id>")`.
If you do mean to replace the resource (and have planned the data migration), regenerate the list with
`make stateful-ids`, commit it, and say in the pull request why the replacement is safe."""


def stateful_ids(synth: Synth) -> dict[str, dict[str, str]]:
    return {
        stack: {
            logical_id: resource["Type"]
            for logical_id, resource in sorted(template["Resources"].items())
            if resource["Type"] in STATEFUL_TYPES
        }
        for stack, template in sorted(synth.templates.items())
    }


def test_stateful_resources_keep_their_logical_ids(synth: Synth) -> None:
    current = stateful_ids(synth)
    if os.environ.get("UPDATE_STATEFUL_IDS") == "1":
        REGISTRY.write_text(json.dumps(current, indent=2) + "\n")
    registered: dict[str, dict[str, str]] = json.loads(REGISTRY.read_text())
    removed = [
        f"{stack}/{logical_id} ({kind})"
        for stack, resources in registered.items()
        for logical_id, kind in resources.items()
        if logical_id not in current.get(stack, {})
    ]
    added = [
        f"{stack}/{logical_id} ({kind})"
        for stack, resources in current.items()
        for logical_id, kind in resources.items()
        if logical_id not in registered.get(stack, {})
    ]
    assert not removed, (
        "these stateful resources would be REPLACED or DELETED:\n  " + "\n  ".join(removed) + HOW_TO_PROCEED
    )
    assert not added, (
        "new stateful resources are not yet guarded; add them with `make stateful-ids` and commit "
        "tests/stateful_resources.json:\n  " + "\n  ".join(added)
    )


def test_registry_covers_every_kind_of_stateful_resource() -> None:
    registered: dict[str, dict[str, str]] = json.loads(REGISTRY.read_text())
    kinds = {kind for resources in registered.values() for kind in resources.values()}
    assert kinds == set(STATEFUL_TYPES)
    assert registered["MlopsProdFoundation"]["DatabaseInstanceAA8A5FDE"] == "AWS::RDS::DBInstance"
