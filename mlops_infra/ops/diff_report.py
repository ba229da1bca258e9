"""The Markdown report of `mlops-ops diff`: the verdict on stateful resources, a summary table, the monthly cost
change, then per stack its resource changes and the raw `cdk diff` output (collapsed)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from mlops_infra.ops.changes import ResourceChange, StackDiff


def render(
    diffs: Sequence[StackDiff],
    *,
    header: str,
    destructive: Sequence[tuple[str, ResourceChange]],
    allow_destroy: bool,
    cost: Sequence[str] = (),
) -> str:
    lines = ["# CDK diff", "", header, ""]
    if destructive:
        verdict = "allowed by --allow-destroy" if allow_destroy else "`mlops-ops diff` exits 8"
        lines += [f"**{len(destructive)} stateful resource(s) would be replaced or deleted** ({verdict}):", ""]
        lines += [f"- `{stack}` `{change.label()}` ({change.type}): {change.what}" for stack, change in destructive]
    else:
        lines.append("No stateful resource would be replaced or deleted.")
    lines += ["", "## Summary", ""]
    changed = [diff for diff in diffs if diff.status != "unchanged"]
    if changed:
        lines += [
            "| stack | added | changed | removed | replaced | stateful replaced/removed | note |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
    else:
        lines.append("No stack differs from the base.")
    for diff in changed:
        note = {"new": "**new stack**", "removed": "**removed stack**"}.get(diff.status, "")
        if diff.other_sections and diff.status == "changed":
            note = "also " + ", ".join(diff.other_sections)
        counts = [diff.count(action) for action in ("added", "changed", "removed", "replaced")]
        lines.append(f"| {diff.name} | {' | '.join(map(str, counts))} | {len(diff.destructive)} | {note} |")
    unchanged = [diff.name for diff in diffs if diff.status == "unchanged"]
    lines += [
        "",
        f"Unchanged: {', '.join(unchanged) or 'none'}. "
        "_replaced_: replaced in place (as `cdk diff` marks it) or its logical ID changed (a delete plus an add).",
    ]
    if cost:
        lines += ["", *cost]
    for diff in changed:
        lines += ["", *_stack_section(diff)]
    return "\n".join(lines) + "\n"


def _stack_section(diff: StackDiff) -> list[str]:
    lines = [f"## {diff.name}", ""]
    if diff.status == "new":
        lines += ["New stack: not in the base.", ""]
    elif diff.status == "removed":
        lines += [
            "Removed stack: no longer in the app. `cdk deploy` leaves the deployed stack alone; "
            "`cdk destroy` (or deleting it) deletes its resources.",
            "",
        ]
    if diff.other_sections and diff.status == "changed":
        lines += [f"Other template sections changed: {', '.join(diff.other_sections)}.", ""]
    if diff.changes:
        lines += ["| | logical ID | type | what |", "|---|---|---|---|"]
        for change in diff.changes:
            flag = {"replaced": "**REPLACED**", "removed": "**REMOVED**", "changed": "changed", "added": "added"}[
                change.action
            ]
            if change.stateful and change.action in ("replaced", "removed"):
                flag += " (stateful)"
            lines.append(f"| {flag} | `{change.label()}` | {change.type} | {change.what} |")
    if diff.raw is not None:
        fence = "`" * max(3, _longest_backtick_run(diff.raw) + 1)
        lines += [
            "",
            f"<details><summary>cdk diff {diff.name}</summary>",
            "",
            f"{fence}text",
            diff.raw,
            fence,
            "</details>",
        ]
    return lines


def _longest_backtick_run(text: str) -> int:
    return max((len(run) for run in re.findall(r"`+", text)), default=0)
