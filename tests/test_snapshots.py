"""Snapshot of every stack's template: a change shows up in review as a diff of the JSON.

Update after reviewing the change: `make snapshots` (pytest --snapshot-update).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from tests.conftest import STACKS, Synth

# Asset hashes change with asset contents and CDK upgrades. (cdk.json turns off CDK's version-reporting
# resource, so the CLI's templates equal these in-process ones.)
ASSET_HASH = re.compile(r"[0-9a-f]{64}")


def stable(template: dict[str, Any]) -> dict[str, Any]:
    """The template with volatile values masked."""
    masked: dict[str, Any] = json.loads(ASSET_HASH.sub("<asset-hash>", json.dumps(template, sort_keys=True)))
    return masked


@pytest.fixture
def snapshot_json(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)


@pytest.mark.parametrize("stack", STACKS)
def test_template_matches_snapshot(synth: Synth, snapshot_json: SnapshotAssertion, stack: str) -> None:
    assert stable(synth.templates[stack]) == snapshot_json


def test_masking_keeps_everything_but_volatile_values() -> None:
    template = {
        "Resources": {
            "A": {
                "Type": "AWS::S3::Bucket",
                "Properties": {"Key": "a" * 64 + ".zip", "Name": "kept", "Short": "a" * 63},
            },
        }
    }
    assert stable(template) == {
        "Resources": {
            "A": {
                "Type": "AWS::S3::Bucket",
                "Properties": {"Key": "<asset-hash>.zip", "Name": "kept", "Short": "a" * 63},
            },
        }
    }
