"""What changed between two versions of a stack: per resource, from the templates and from `cdk diff`.

The templates give what was added, removed or changed, and logical-ID changes (a delete plus an add, paired by
type and likeness); `cdk diff` output gives what is replaced in place (`replace`, `may be replaced`) and what
a deletion does (`destroy`, `orphan`). A change is destructive when it replaces or deletes a stateful resource.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# Resources whose replacement or deletion loses data (or, for a key, makes data unreadable).
STATEFUL_TYPES = frozenset(
    {
        "AWS::RDS::DBInstance",
        "AWS::RDS::DBCluster",
        "AWS::S3::Bucket",
        "AWS::ECR::Repository",
        "AWS::KMS::Key",
        "AWS::Logs::LogGroup",
        "AWS::DynamoDB::Table",
        "AWS::EC2::VPC",
        "AWS::Backup::BackupVault",
        "AWS::SecretsManager::Secret",
    }
)
# Resource attributes besides Properties that make CloudFormation update a resource; Metadata is left out
# (construct paths and asset hints, not a change to the resource).
ATTRIBUTES = ("DependsOn", "Condition", "DeletionPolicy", "UpdateReplacePolicy", "UpdatePolicy", "CreationPolicy")
# `cdk diff` resource line: `[~] AWS::S3::Bucket Path/To/Construct LogicalId replace`
RESOURCE_LINE = re.compile(r"^\[(?P<op>[-+~\u2190])\] (?P<type>\w+(?:::\w+)+) (?P<rest>.+)$")
PROPERTY_LINE = re.compile(
    r"^ [\u251c\u2514]\u2500 \[[-+~]\] (?P<name>.+?) \((?P<why>requires replacement|may cause replacement)\)$"
)
MOVE_SUFFIX = re.compile(r" \(OR move .*\)$")
IMPACTS = ("may be replaced", "replace", "destroy", "orphan", "import")
HASH_SUFFIX = re.compile(r"[0-9A-F]{8}$")

Action = Literal["replaced", "removed", "changed", "added"]
ACTION_ORDER: dict[Action, int] = {"replaced": 0, "removed": 1, "changed": 2, "added": 3}
Status = Literal["changed", "new", "removed", "unchanged"]


@dataclass(frozen=True)
class CdkMarker:
    """What `cdk diff` printed for one resource: its impact word, the properties forcing a replacement, its type."""

    impact: str
    replacing: tuple[str, ...] = ()
    type: str = ""

    @property
    def replaces(self) -> bool:
        return self.impact in ("replace", "may be replaced")

    def replacement(self) -> str:
        """`A, B requires replacement (`cdk diff`: replace)`."""
        forcing = ", ".join(self.replacing) or "a property"
        verb = "requires" if self.impact == "replace" else "may require"
        return f"{forcing} {verb} replacement (`cdk diff`: {self.impact})"


@dataclass(frozen=True)
class ResourceChange:
    logical_id: str
    type: str
    action: Action
    what: str
    partner: str | None = None  # the logical ID on the other side of a logical-ID change
    if_replaced: str = ""  # what happens to the old resource should `cdk diff` say it is replaced (UpdateReplacePolicy)

    @property
    def stateful(self) -> bool:
        return self.type in STATEFUL_TYPES

    @property
    def destructive(self) -> bool:
        return self.stateful and self.action in ("replaced", "removed")

    def label(self) -> str:
        if self.action == "replaced" and self.partner:
            return f"{self.logical_id} -> {self.partner}"
        return self.logical_id

    def verb(self) -> str:
        if self.action == "replaced" and self.partner:
            return f"replaced by {self.partner}"
        return self.action


@dataclass
class StackDiff:
    name: str
    status: Status
    changes: list[ResourceChange] = field(default_factory=list)
    other_sections: list[str] = field(default_factory=list)
    raw: str | None = None

    def count(self, action: Action) -> int:
        return sum(1 for change in self.changes if change.action == action)

    @property
    def destructive(self) -> list[ResourceChange]:
        return [change for change in self.changes if change.destructive]


def compare_templates(base: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[list[ResourceChange], list[str]]:
    """Resources added, removed, changed (by logical ID) and logical-ID changes; other template sections changed."""
    old_resources: dict[str, Any] = base.get("Resources", {})
    new_resources: dict[str, Any] = new.get("Resources", {})
    changes: list[ResourceChange] = []
    for logical_id in sorted(old_resources.keys() & new_resources.keys()):
        old, current = old_resources[logical_id], new_resources[logical_id]
        if old.get("Type") != current.get("Type"):
            what = f"type changed from {old.get('Type')}: CloudFormation replaces it"
            changes.append(ResourceChange(logical_id, old.get("Type", "?"), "replaced", what))
        elif what := _changed_parts(old, current):
            note = _policy_note("UpdateReplacePolicy", current)
            changes.append(ResourceChange(logical_id, current.get("Type", "?"), "changed", what, if_replaced=note))
    removed = {
        logical_id: old_resources[logical_id].get("Type", "?")
        for logical_id in old_resources.keys() - new_resources.keys()
    }
    added = {
        logical_id: new_resources[logical_id].get("Type", "?")
        for logical_id in new_resources.keys() - old_resources.keys()
    }
    for old_id, new_id in _pair_renames(removed, added):
        kind = removed.pop(old_id)
        del added[new_id]
        what = f"logical ID changed to {new_id}: CloudFormation creates {new_id}, then deletes {old_id}"
        changes.append(ResourceChange(old_id, kind, "replaced", _with_policy(what, old_resources[old_id]), new_id))
    for logical_id, kind in removed.items():
        changes.append(ResourceChange(logical_id, kind, "removed", _with_policy("deleted", old_resources[logical_id])))
    changes.extend(ResourceChange(logical_id, kind, "added", "created") for logical_id, kind in added.items())
    sections = sorted(key for key in (base.keys() | new.keys()) - {"Resources"} if base.get(key) != new.get(key))
    return sorted(changes, key=_order), sections


def _changed_parts(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """`properties: A, B; DeletionPolicy`: what differs between two versions of a resource (empty: nothing)."""
    old_properties: dict[str, Any] = old.get("Properties", {})
    new_properties: dict[str, Any] = new.get("Properties", {})
    parts = [
        name
        for name in sorted(old_properties.keys() | new_properties.keys())
        if old_properties.get(name) != new_properties.get(name)
    ]
    attributes = [name for name in ATTRIBUTES if old.get(name) != new.get(name)]
    return "; ".join(filter(None, [f"properties: {', '.join(parts)}" if parts else "", ", ".join(attributes)]))


def _pair_renames(removed: Mapping[str, str], added: Mapping[str, str]) -> list[tuple[str, str]]:
    """Removed and added resources of one type, paired most-similar logical IDs first."""
    candidates = sorted(
        (
            -difflib.SequenceMatcher(None, HASH_SUFFIX.sub("", old_id), HASH_SUFFIX.sub("", new_id)).ratio(),
            old_id,
            new_id,
        )
        for old_id, old_type in removed.items()
        for new_id, new_type in added.items()
        if old_type == new_type
    )
    pairs: list[tuple[str, str]] = []
    used_old: set[str] = set()
    used_new: set[str] = set()
    for _, old_id, new_id in candidates:
        if old_id not in used_old and new_id not in used_new:
            pairs.append((old_id, new_id))
            used_old.add(old_id)
            used_new.add(new_id)
    return pairs


def _with_policy(what: str, resource: Mapping[str, Any]) -> str:
    return f"{what}{_policy_note('DeletionPolicy', resource)}"


def _policy_note(attribute: str, resource: Mapping[str, Any]) -> str:
    """What a DeletionPolicy / UpdateReplacePolicy does to the resource it removes, as a parenthesis."""
    policy = resource.get(attribute)
    if policy in ("Retain", "RetainExceptOnCreate"):
        return f" ({attribute} {policy}: the old one stays in AWS, no longer managed)"
    if policy == "Snapshot":
        return f" ({attribute} Snapshot: a final snapshot is taken)"
    return ""


def _order(change: ResourceChange) -> tuple[bool, int, str]:
    return (not change.destructive, ACTION_ORDER[change.action], change.logical_id)


def parse_cdk_diff(output: str) -> dict[str, CdkMarker]:
    """Per logical ID, the impact `cdk diff` printed on its resource line and the properties it says force it."""
    markers: dict[str, CdkMarker] = {}
    current: str | None = None
    for line in output.splitlines():
        if match := RESOURCE_LINE.match(line):
            rest = MOVE_SUFFIX.sub("", match["rest"]).rstrip()
            impact = next((word for word in IMPACTS if rest.endswith(" " + word)), "")
            tokens = rest.removesuffix(" " + impact).split(" ") if impact else rest.split(" ")
            current = tokens[-1]
            markers[current] = CdkMarker(impact, type=match["type"])
        elif current and (match := PROPERTY_LINE.match(line)):
            marker = markers[current]
            markers[current] = CdkMarker(marker.impact, (*marker.replacing, match["name"]), marker.type)
        elif not line.startswith((" ", "\u2502")):
            current = None
    return markers


def apply_markers(diff: StackDiff, markers: Mapping[str, CdkMarker]) -> None:
    """In-place replacements come from `cdk diff`; so do its words on deletions (destroy / orphan).

    `cdk diff` also marks a resource whose template is unchanged when something it references is replaced (its
    `Ref` then names a new physical resource): such a resource is replaced too.
    """
    updated: list[ResourceChange] = []
    for change in diff.changes:
        marker = markers.get(change.logical_id)
        if change.action == "changed" and marker and marker.replaces:
            what = f"{change.what}; {marker.replacement()}{change.if_replaced}"
            change = ResourceChange(change.logical_id, change.type, "replaced", what)
        elif change.action == "changed" and marker is None:
            change = ResourceChange(change.logical_id, change.type, "changed", f"{change.what} (`cdk diff`: no change)")
        updated.append(change)
    in_templates = {change.logical_id for change in diff.changes} | {change.partner for change in diff.changes}
    for logical_id, marker in markers.items():
        if marker.replaces and logical_id not in in_templates:
            what = f"unchanged in the template, but a resource it references is replaced: {marker.replacement()}"
            updated.append(ResourceChange(logical_id, marker.type or "?", "replaced", what))
    diff.changes = sorted(updated, key=_order)
