"""README.md keeps up with the code: every config key, `make` target and `mlops-ops` option, the template figures.

Each test names what the README lacks (or names but the code no longer has), so a change that adds a key, a target or
an option fails here until the docs say what it does.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mlops_infra.config import EnvironmentConfig
from mlops_infra.ops.cli import build_parser
from tests.conftest import Synth
from tests.readme_figures import TEMPLATE_ROW

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SERVICE_NAMES = ("backend", "mlflow", "inference", "frontend")
NOT_A_KEY = {"name"}  # the environment's name: the config file's name, not a key in it
# One row; its text names each threshold (a pattern such as `*_percent` may cover several).
WILDCARD = "observability.thresholds.*"
SIZE_TOLERANCE = 0.10  # the README's kB may lag a growing template this much before it must be refreshed


def section(heading: str) -> str:
    """The README's text under `## heading`, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## )", README, re.MULTILINE | re.DOTALL)
    assert match, f"README.md has no section '## {heading}'"
    return match.group(1)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (through Optional and Annotated), none for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated):
        return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]
    return []


def config_keys(model: type[BaseModel] = EnvironmentConfig, prefix: str = "") -> set[str]:
    """Every key a config file may hold, as a dotted path; the four service sizes as `services.<name>.…`."""
    keys = set()
    for name, field in model.model_fields.items():
        if not prefix and name in NOT_A_KEY:
            continue
        path = f"{prefix}<name>" if prefix == "services." and name in SERVICE_NAMES else f"{prefix}{name}"
        nested = _models_in(field.annotation)
        keys |= config_keys(nested[0], f"{path}.") if nested else {path}
    return keys


def documented_keys() -> tuple[set[str], str]:
    """The keys the configuration reference's table names in its first column, and the text of its wildcard row.

    A cell "`network.nat` / `nat_instance_type`" names network.nat and network.nat_instance_type; placeholders such as
    `services.<backend|mlflow|…>.cpu` read as `services.<name>.cpu`."""
    keys, wildcard_row = set(), ""
    for row in section("Configuration reference").splitlines():
        if not row.startswith("| `"):
            continue
        first_cell = re.split(r"(?<!\\)\|", row)[1]
        parent = ""
        for token in re.findall(r"`([^`]+)`", first_cell):
            token = re.sub(r"<[^>]*>", "<name>", token)
            if "." in token:
                parent = token.rsplit(".", 1)[0] + "."
                key = token
            else:
                key = parent + token
            keys.add(key)
            if key == WILDCARD:
                wildcard_row = row
    return keys, wildcard_row


def test_every_config_key_is_in_the_configuration_reference() -> None:
    code = config_keys()
    documented, wildcard_row = documented_keys()
    under_wildcard = {key for key in code if fnmatch.fnmatchcase(key, WILDCARD)}
    named_in_row = re.findall(r"`([^`]+)`", wildcard_row)
    unexplained = sorted(
        key
        for key in under_wildcard
        if not any(fnmatch.fnmatchcase(key.rsplit(".", 1)[1], pattern) for pattern in named_in_row)
    )
    assert not unexplained, f"README's `{WILDCARD}` row does not name: {unexplained}"
    missing = sorted(code - under_wildcard - documented)
    assert not missing, f"README.md (Configuration reference) lacks a row for: {missing}"
    stale = sorted(documented - code - {WILDCARD})
    assert not stale, f"README.md (Configuration reference) documents keys the config does not have: {stale}"


def test_config_key_walk_sees_nested_tables() -> None:
    """The walk above must reach into sub-tables, or the reference test would pass on top-level names alone."""
    keys = config_keys()
    assert {"services.<name>.cpu", "services.schedule.time_zone", "observability.thresholds.cpu_percent"} <= keys
    assert "services" not in keys
    assert "name" not in keys


def make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][\w-]*):", makefile, re.MULTILINE))


def test_every_make_target_is_in_the_commands_table() -> None:
    commands = section("Commands")
    targets = make_targets()
    assert {"install", "synth", "test"} <= targets
    missing = sorted(target for target in targets if not re.search(rf"`make {target}[` ]", commands))
    assert not missing, f"README.md (Commands) does not list: {['make ' + t for t in missing]}"


def ops_options() -> dict[str, set[str]]:
    """`mlops-ops` subcommand (e.g. "model promote") -> its long options, from the real parser."""
    found: dict[str, set[str]] = {}

    def walk(parser: argparse.ArgumentParser, command: str) -> None:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subparsers:
            options = {o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
            found[command] = options
        for action in subparsers:
            for name, child in action.choices.items():
                walk(child, f"{command} {name}".strip())

    walk(build_parser(), "")
    return found


def test_every_ops_option_is_in_the_operations_section() -> None:
    operations = section("Operations")
    options = ops_options()
    assert {"model promote", "service rollback", "smoke", "diff", "cost"} <= set(options)
    missing = sorted(
        f"mlops-ops {command} {option}"
        for command, names in options.items()
        for option in names
        if not re.search(rf"{re.escape(option)}(?![\w-])", operations)
    )
    assert not missing, f"README.md (Operations) does not explain: {missing}"


def test_template_figures_in_the_readme_are_current(synth: Synth) -> None:
    rows = {stack: (float(kb), int(count)) for stack, kb, count in TEMPLATE_ROW.findall(section("Observability"))}
    assert set(rows) == set(synth.templates), f"README.md (Observability) lists template figures of {sorted(rows)}"
    for stack, (kb, count) in rows.items():
        actual_kb = (synth.outdir / f"{stack}.template.json").stat().st_size / 1000
        actual_count = len(synth.templates[stack]["Resources"])
        refresh = "(`make snapshots` rewrites the figures)"
        assert count == actual_count, f"README.md: {stack} has {actual_count} resources, not {count} {refresh}"
        assert abs(kb - actual_kb) <= SIZE_TOLERANCE * actual_kb, (
            f"README.md: {stack} is {actual_kb:.1f} kB, not {kb} {refresh}"
        )
