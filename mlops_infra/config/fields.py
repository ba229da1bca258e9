"""The building blocks of the config models: value rules, reusable field types, and cross-field problems.

Each rule's error says what is allowed, in words; `mlops_infra.config.loading` prefixes it with the file, the
field path and the bad value.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

ENV_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]{1,15}$")
ENV_NAME_RULE = "2-16 lower-case letters or digits, starting with a letter"
REGION_PATTERN = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
ACCOUNT_PATTERN = re.compile(r"^\d{12}$")
PREFIX_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,18}[a-z0-9]$")
INSTANCE_CLASS_PATTERN = re.compile(r"^db\.[a-z][a-z0-9-]*\.[a-z0-9]+$")
ENGINE_VERSION_PATTERN = re.compile(r"^(\d+)\.(\d+)$")
SUPPORTED_POSTGRES_MAJORS = (16, 17)

# The values CloudWatch Logs accepts for a log group's retention.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


class FieldProblem(ValueError):
    """A cross-field rule's verdict on one field (a dotted path relative to the model)."""

    def __init__(self, field: str, value: Any, message: str) -> None:
        self.field = field
        self.value = value
        super().__init__(message)


class FieldProblems(ValueError):
    """Every cross-field problem of one model, so that each gets its own line."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(problem) for problem in problems))


def report(problems: list[FieldProblem]) -> None:
    """Raise every cross-field problem of a model at once (none: nothing)."""
    if problems:
        raise FieldProblems(problems)


# --------------------------------------------------------------------------------------------
# Reusable field types: each error says what is allowed, in words.


def between(low: int, high: int) -> AfterValidator:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return AfterValidator(check)


def matching(pattern: re.Pattern[str], allowed: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"must be {allowed}")
        return value

    return AfterValidator(check)


def one_of(choices: Iterable[int]) -> AfterValidator:
    allowed = tuple(choices)

    def check(value: int) -> int:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(map(str, allowed))}")
        return value

    return AfterValidator(check)


def unique(value: list[Any]) -> list[Any]:
    duplicates = sorted({str(item) for item in value if value.count(item) > 1})
    if duplicates:
        raise ValueError(f"must not repeat entries (repeated: {', '.join(duplicates)})")
    return value


def ipv4_cidr(value: str) -> str:
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as error:
        raise ValueError(f"must be an IPv4 network in CIDR notation such as 10.0.0.0/16 ({error})") from None
    if not 16 <= network.prefixlen <= 24:
        raise ValueError("must have a prefix length between /16 and /24 (VPC limits)")
    return value


Region = Annotated[str, matching(REGION_PATTERN, "an AWS region name such as us-east-1")]
Retention = Annotated[int, one_of(LOG_RETENTION_DAYS)]
NonEmpty = Annotated[str, Field(min_length=1, max_length=256)]


class Settings(BaseModel):
    """A config section: frozen, strict types, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def is_time_zone(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
