"""Reading `config/<env>.toml` files into validated configs, or into one message line per problem.

Each line names the file, the field path, the bad value (as written in TOML) and what is allowed.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from mlops_infra.config.fields import ENV_NAME_PATTERN, ENV_NAME_RULE, FieldProblems
from mlops_infra.config.models import EnvironmentConfig

CONFIG_DIR_ENV = "MLOPS_CONFIG_DIR"
DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent.parent.parent / "config"


class ConfigError(Exception):
    """One or more problems in a config file; ``str()`` is the message shown to the user."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def config_dir() -> Path:
    """The folder holding `<env>.toml` files: `$MLOPS_CONFIG_DIR`, else the repository's `config/`."""
    return Path(os.environ.get(CONFIG_DIR_ENV) or DEFAULT_CONFIG_DIR)


def environment_names(directory: Path | None = None) -> list[str]:
    """The environments defined in a config folder, sorted."""
    folder = directory or config_dir()
    if not folder.is_dir():
        raise ConfigError([f"{_display(folder)}: config folder not found (set {CONFIG_DIR_ENV} or create it)"])
    # Hidden files (editor backups such as .#dev.toml) are not environments.
    return sorted(path.stem for path in folder.glob("*.toml") if not path.name.startswith((".", "#")))


def load_config(env: str, directory: Path | None = None) -> EnvironmentConfig:
    """Read and validate `<directory>/<env>.toml`; raise ConfigError naming every problem."""
    folder = directory or config_dir()
    path = folder / f"{env}.toml"
    shown = _display(path)
    if not ENV_NAME_PATTERN.fullmatch(env):
        raise ConfigError(
            [f"{shown}: file name {env!r}: an environment's name must be {ENV_NAME_RULE} (it names the stacks)"]
        )
    if not path.is_file():
        known = ", ".join(environment_names(folder)) or "none"
        raise ConfigError([f"{shown}: no such file: unknown environment {env!r} (known environments: {known})"])
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"{shown}: invalid TOML: {error}"]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([f"{shown}: cannot read file: {error}"]) from None
    if "name" in raw:
        raise ConfigError([f"{shown}: name = {_show(raw['name'])}: unknown key; the environment's name is the file's"])
    try:
        return EnvironmentConfig.model_validate({"name": env, **raw})
    except ValidationError as error:
        raise ConfigError(_describe(shown, error)) from None


def load_all(directory: Path | None = None) -> list[EnvironmentConfig]:
    """Every environment of a config folder; all problems of all files in one ConfigError."""
    folder = directory or config_dir()
    names = environment_names(folder)
    if not names:
        raise ConfigError([f"{_display(folder)}: no <env>.toml files found"])
    configs, problems = [], []
    for name in names:
        try:
            configs.append(load_config(name, folder))
        except ConfigError as error:
            problems.extend(error.problems)
    if problems:
        raise ConfigError(problems)
    return configs


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _describe(shown: str, error: ValidationError) -> list[str]:
    problems: list[str] = []
    for item in error.errors(include_url=False):
        location = [str(part) for part in item["loc"]]
        value: Any = item.get("input")
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, FieldProblems):
            problems.extend(
                f"{shown}: {_join([*location, problem.field])} = {_show(problem.value)}: {problem}"
                for problem in cause.problems
            )
            continue
        message = _message(item, location)
        path = _join(location)
        if item["type"] == "missing":
            problems.append(f"{shown}: {path}: {message}")
        else:
            problems.append(f"{shown}: {path} = {_show(value)}: {message}")
    return problems


def _message(item: Any, location: list[str]) -> str:
    kind = item["type"]
    if kind == "value_error":
        return str(item["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(location[:-1])
        return f"unknown key; allowed keys here: {', '.join(allowed)}" if allowed else "unknown key"
    if kind == "missing":
        return "is required but missing"
    if kind == "literal_error":
        return f"must be one of {str(item['ctx']['expected']).replace(chr(39), chr(34))}"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        bound = next(iter((item.get("ctx") or {}).values()), "?")
        return f"must be {bounds[kind]} {bound}"
    readable = {
        "int_type": "must be a whole number",
        "float_type": "must be a number",
        "bool_type": "must be true or false",
        "string_type": "must be a string in quotes",
        "list_type": 'must be a list such as ["a", "b"]',
        "dict_type": "must be a table",
        "model_type": "must be a table",
        "model_attributes_type": "must be a table",
        "too_short": "has too few entries",
        "too_long": "has too many entries",
        "string_too_short": "must not be empty",
    }
    base = readable.get(kind, str(item["msg"]))
    if kind in ("too_short", "too_long") and "ctx" in item:
        ctx = item["ctx"]
        bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        base += f" (at {'least' if kind == 'too_short' else 'most'} {bound})"
    return base


def _allowed_keys(location: list[str]) -> list[str]:
    model: Any = EnvironmentConfig
    for part in location:
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        model = field.annotation
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [key for key in model.model_fields if not (model is EnvironmentConfig and key == "name")]
    return []


def _join(location: list[str]) -> str:
    text = ""
    for part in location:
        if part.isdigit():
            text += f"[{part}]"
        elif part.startswith("["):
            text += part
        else:
            text += f".{part}" if text else part
    # a FieldProblem path such as "availability_zones[1]" is already joined
    return text.replace(".[", "[")


def _show(value: Any) -> str:
    """A value as it is written in TOML."""
    if value is None:
        return "(not set)"
    if isinstance(value, list):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict | BaseModel):
        return "{...}"
    return repr(value)
