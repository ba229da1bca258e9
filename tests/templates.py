"""Helpers for reading synthesized templates, shared by the test modules."""

from __future__ import annotations

from typing import Any

from tests.conftest import Synth


def application(env: str) -> str:
    """The entry stack of an environment: `Mlops<Env>`."""
    return f"Mlops{env.capitalize()}"


def foundation(env: str) -> str:
    return f"Mlops{env.capitalize()}Foundation"


def target(value: Any) -> str:
    """The logical ID a `Ref` or `Fn::GetAtt` points at."""
    if "Ref" in value:
        return str(value["Ref"])
    return str(value["Fn::GetAtt"][0])


def imported(synth: Synth, env: str, value: Any, exporter: str | None = None) -> Any:
    """The output value behind an `Fn::ImportValue` of the application stack, exported by `exporter` (default: the
    environment's foundation stack)."""
    name = value["Fn::ImportValue"]
    (output,) = [
        output["Value"]
        for output in synth.templates[exporter or foundation(env)]["Outputs"].values()
        if output.get("Export", {}).get("Name") == name
    ]
    return output
