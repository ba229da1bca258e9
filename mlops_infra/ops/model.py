"""`mlops-ops model status|promote|rollback`: the champion of a registered model, on MLflow aliases.

Stages are deprecated in MLflow 3: the served version is the one under alias `champion`, the one before it
under alias `previous`. `promote` moves `previous` to the current champion, then `champion` to the new
version, and tags that version with who and when; `rollback` swaps the two aliases, so a rollback is
itself undone by another one; `rollback --to V` makes V champion and the current champion previous.
With `--redeploy --env ENV` the command then forces a new deployment of ECS service `mlops-inference`
in cluster `mlops-<env>` so that its tasks load the new champion (the service is checked before the
aliases change).

The tracking server is `--tracking-uri`, else `MLFLOW_TRACKING_URI`: an http(s) URL. The MLflow client itself reads
`MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD` (or `MLFLOW_TRACKING_TOKEN`) and its HTTP settings
(`MLFLOW_HTTP_REQUEST_TIMEOUT`, `MLFLOW_HTTP_REQUEST_MAX_RETRIES`: its default of 7 retries with backoff
takes minutes to give up on an unreachable server). Only `MlflowClient` is used: mlflow-skinny suffices.

An alias change takes two registry writes. The command prints the change before making it and writes `previous`
first: should the second write fail, the champion has not moved and the error names the command that completes it.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import re
import shlex
import socket
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlops_infra.ops import aws
from mlops_infra.ops.errors import (
    AwsFailure,
    CredentialsMissing,
    MissingExtra,
    NothingToRollBackTo,
    OpsError,
    ServerUnreachable,
    UnknownModel,
    UnknownVersion,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

CHAMPION = "champion"
PREVIOUS = "previous"
TAG_BY = "promoted_by"
TAG_AT = "promoted_at"
TAG_HOW = "promoted_with"  # "promote", "rollback" or "rollback --to"
READY = "READY"


class UsageError(OpsError):
    """A missing setting argparse cannot see (the tracking URI may come from the environment)."""

    exit_code = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "model",
        help="show, promote or roll back the champion of a registered model",
        description="The champion of a registered model, on MLflow aliases champion and previous.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    status = actions.add_parser("status", help="the versions of a model with their aliases and status")
    _common(status)
    status.set_defaults(run=run_status)

    promote = actions.add_parser(
        "promote",
        help="make a READY version champion (the current champion becomes previous)",
        description="Make VERSION champion: previous moves to the current champion first; the version is tagged "
        f"{TAG_BY} and {TAG_AT}.",
    )
    _common(promote)
    promote.add_argument("version", type=_version, metavar="VERSION", help="the model version to make champion")
    _changing(promote)
    promote.set_defaults(run=run_promote)

    rollback = actions.add_parser(
        "rollback",
        help="swap champion and previous (or --to VERSION)",
        description="Swap aliases champion and previous, so that a second rollback undoes the first. With --to "
        "VERSION: that version becomes champion and the current champion previous.",
    )
    _common(rollback)
    rollback.add_argument("--to", type=_version, metavar="VERSION", help="make this version champion instead")
    _changing(rollback)
    rollback.set_defaults(run=run_rollback)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="registered model name")
    parser.add_argument("--tracking-uri", help="MLflow tracking server (default: MLFLOW_TRACKING_URI)")


def _changing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--actor", help="who is promoting (default: GITHUB_ACTOR, else the login name)")
    parser.add_argument(
        "--redeploy",
        action="store_true",
        help=f"then force a new deployment of ECS service {aws.INFERENCE_SERVICE} (needs --env)",
    )
    parser.add_argument("--env", type=aws.env_name, help="environment of --redeploy (cluster mlops-<env>)")
    aws.add_aws_arguments(parser)


def _version(value: str) -> str:
    """MLflow model versions are strings of digits."""
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a model version (a number from 1)")
    return str(int(value))


@dataclass
class Registry:
    """The MLflow client of one tracking server, with its failures as OpsErrors."""

    client: MlflowClient
    uri: str

    @classmethod
    def connect(cls, args: argparse.Namespace) -> Registry:
        uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise UsageError("No MLflow tracking server: pass --tracking-uri or set MLFLOW_TRACKING_URI.")
        if not _is_http_url(uri):
            raise UsageError(
                f"MLflow tracking URI {uri!r} is not an http:// or https:// URL with a host (the tracking server, "
                "e.g. http://mlflow.internal:5000): pass another --tracking-uri or MLFLOW_TRACKING_URI."
            )
        try:
            from mlflow import MlflowClient
        except ImportError as error:
            raise MissingExtra.of(error) from None

        return cls(MlflowClient(tracking_uri=uri, registry_uri=uri), uri)

    @contextlib.contextmanager
    def errors(self, not_found: Callable[[], OpsError] | None = None) -> Iterator[None]:
        from mlflow.exceptions import MlflowException

        try:
            yield
        except MlflowException as error:
            raise self._translate(error, not_found) from None
        except OSError as error:  # requests' errors are OSErrors too
            raise ServerUnreachable(
                f"Cannot reach the MLflow server at {self.uri}: {_unreachable(error) or error}."
            ) from None

    def _translate(self, error: Any, not_found: Callable[[], OpsError] | None) -> OpsError:
        code = str(getattr(error, "error_code", ""))
        if code == "RESOURCE_DOES_NOT_EXIST" and not_found is not None:
            return not_found()
        reason = _unreachable(error)
        if reason:
            return ServerUnreachable(f"Cannot reach the MLflow server at {self.uri}: {reason}.")
        if code in ("UNAUTHENTICATED", "PERMISSION_DENIED", "CUSTOMER_UNAUTHORIZED"):
            return CredentialsMissing(
                f"The MLflow server at {self.uri} refused the request ({code}): set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD to an account allowed to manage the model."
            )
        if code == "ENDPOINT_NOT_FOUND":
            return ServerUnreachable(
                f"{self.uri} does not answer the MLflow REST API (HTTP 404): is it an MLflow tracking server?"
            )
        message = str(getattr(error, "message", error)).strip().rstrip(".")
        return OpsError(f"The MLflow server at {self.uri} refused the request: {message}.")

    def model(self, name: str) -> Any:
        with self.errors(lambda: UnknownModel(f"Model {name!r} is not registered at {self.uri}.")):
            return self.client.get_registered_model(name)

    def version(self, name: str, version: str) -> Any:
        with self.errors(lambda: UnknownVersion(f"Model {name!r} has no version {version}.")):
            return self.client.get_model_version(name, version)

    def ready_version(self, name: str, version: str) -> Any:
        found = self.version(name, version)
        if found.status != READY:
            raise UnknownVersion(
                f"Version {version} of model {name!r} is {found.status}, not {READY}: it cannot be champion."
            )
        return found

    def versions(self, name: str) -> list[Any]:
        escaped = name.replace("\\", "\\\\").replace("'", "\\'")
        found: list[Any] = []
        token: str | None = None
        with self.errors(lambda: UnknownModel(f"Model {name!r} is not registered at {self.uri}.")):
            while True:
                page = self.client.search_model_versions(f"name = '{escaped}'", page_token=token)
                found.extend(page)
                token = page.token
                if not token:
                    break
        return sorted(found, key=lambda version: int(version.version), reverse=True)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        with self.errors(lambda: UnknownVersion(f"Model {name!r} has no version {version}.")):
            self.client.set_registered_model_alias(name, alias, version)

    def delete_alias(self, name: str, alias: str) -> None:
        with self.errors():
            self.client.delete_registered_model_alias(name, alias)

    def tag(self, name: str, version: str, tags: dict[str, str]) -> None:
        with self.errors(lambda: UnknownVersion(f"Model {name!r} has no version {version}.")):
            for key, value in tags.items():
                self.client.set_model_version_tag(name, version, key, value)


def _is_http_url(uri: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(uri)
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a bad IPv6 address or port
        return False


def _unreachable(error: BaseException) -> str | None:
    """Why the server could not be reached (DNS, refused, timeout), from the exception's chain; None if it was."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen and len(seen) < 20:
        seen.append(current)
        current = current.__cause__ or current.__context__
    names = {type(exception).__name__ for exception in seen}
    text = " ".join(str(exception) for exception in seen)
    if any(isinstance(exception, socket.gaierror) for exception in seen) or "NameResolutionError" in names:
        return "its host name does not resolve"
    if any(isinstance(exception, ConnectionRefusedError) for exception in seen):
        return "connection refused"
    if any(isinstance(exception, TimeoutError) for exception in seen) or names & {
        "Timeout",
        "ReadTimeout",
        "ConnectTimeout",
        "ReadTimeoutError",
        "ConnectTimeoutError",
    }:
        timeout = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")
        return f"no answer within {timeout} s (MLFLOW_HTTP_REQUEST_TIMEOUT)"
    if "RetryError" in names or "too many" in text:
        status = re.search(r"too many (\d+) error responses", text)
        return f"it answers {f'HTTP {status.group(1)}' if status else 'HTTP errors'} again and again"
    if names & {"ConnectionError", "ProtocolError", "NewConnectionError", "MaxRetryError", "SSLError"} or any(
        isinstance(exception, ConnectionError) for exception in seen
    ):
        return f"connection failed ({type(seen[-1]).__name__})"
    return None


def actor(args: argparse.Namespace) -> str:
    if args.actor:
        return str(args.actor)
    if os.environ.get("GITHUB_ACTOR"):
        return os.environ["GITHUB_ACTOR"]
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def run_status(args: argparse.Namespace) -> int:
    registry = Registry.connect(args)
    model = registry.model(args.name)
    versions = registry.versions(args.name)
    aliases: dict[str, list[str]] = {}
    for alias, version in sorted(dict(model.aliases or {}).items()):
        aliases.setdefault(str(version), []).append(alias)

    model_aliases = dict(model.aliases or {})
    summary = ", ".join(f"{alias} {model_aliases[alias]}" for alias in (CHAMPION, PREVIOUS) if alias in model_aliases)
    print(f"Model {args.name} at {registry.uri}: {summary or 'no champion'}")
    if not versions:
        print("No versions.")
        return 0
    rows = [("VERSION", "STATUS", "ALIASES", "CREATED (UTC)", "PROMOTED BY", "PROMOTED AT")]
    for version in versions:
        tags = dict(version.tags or {})
        rows.append(
            (
                str(version.version),
                str(version.status),
                ",".join(aliases.get(str(version.version), [])) or "-",
                _time(version.creation_timestamp),
                tags.get(TAG_BY, "-"),
                tags.get(TAG_AT, "-"),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _time(milliseconds: int | None) -> str:
    if not milliseconds:
        return "-"
    return datetime.fromtimestamp(milliseconds / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def run_promote(args: argparse.Namespace) -> int:
    registry = Registry.connect(args)
    ecs = _redeploy_target(args)
    name, version = args.name, args.version
    aliases = dict(registry.model(name).aliases or {})
    registry.ready_version(name, version)

    champion = aliases.get(CHAMPION)
    if champion == version:
        print(f"Version {version} of {name} is champion already: aliases unchanged.")
    else:
        who, when = actor(args), _now()
        previous = f"previous {aliases.get(PREVIOUS, '-')} -> {champion}" if champion else "previous unchanged"
        print(f"{name}: champion {champion or '-'} -> {version}, {previous} (by {who} at {when}).", flush=True)
        # previous first: should the second write fail, champion is unchanged and the same promote completes it.
        writes: list[AliasWrite] = [(PREVIOUS, champion)] if champion is not None else []
        repair = _command(args, "promote", version)
        _move_aliases(registry, name, [*writes, (CHAMPION, version)], repair)
        _tag(args, registry, name, version, {TAG_BY: who, TAG_AT: when, TAG_HOW: "promote"}, repair)
    _redeploy(args, ecs, name, version)
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    registry = Registry.connect(args)
    ecs = _redeploy_target(args)
    name = args.name
    aliases = dict(registry.model(name).aliases or {})
    champion, previous = aliases.get(CHAMPION), aliases.get(PREVIOUS)

    if args.to is not None:
        target, how = args.to, "rollback --to"
    elif previous is None:
        raise NothingToRollBackTo(
            f"Model {name!r} has no alias {PREVIOUS!r} (champion: {champion or 'none'}): nothing to roll back to; "
            "use `rollback --to VERSION` or `promote`."
        )
    else:
        target, how = previous, "rollback"
    registry.ready_version(name, target)

    if target == champion:
        print(f"Version {target} of {name} is champion already: aliases unchanged.")
    else:
        who, when = actor(args), _now()
        now_previous = champion if champion is not None else (None if previous == target else previous)
        print(
            f"{name}: champion {champion or '-'} -> {target}, previous {previous or '-'} -> {now_previous or '-'} "
            f"(by {who} at {when}).",
            flush=True,
        )
        # previous first: should the second write fail, `rollback --to TARGET` completes the change.
        writes: list[AliasWrite] = []
        if champion is not None:
            writes.append((PREVIOUS, champion))
        elif previous == target:
            writes.append((PREVIOUS, None))  # it becomes champion, and there was none before it
        repair = _command(args, "rollback", "--to", target)
        _move_aliases(registry, name, [*writes, (CHAMPION, target)], repair)
        _tag(args, registry, name, target, {TAG_BY: who, TAG_AT: when, TAG_HOW: how}, repair)
    _redeploy(args, ecs, name, target)
    return 0


AliasWrite = tuple[str, str | None]  # (alias, version); None deletes the alias


def _move_aliases(registry: Registry, name: str, writes: Sequence[AliasWrite], repair: str) -> None:
    """The alias writes, in order. A failure after the first says which are done and the command completing them."""
    for index, (alias, version) in enumerate(writes):
        try:
            if version is None:
                registry.delete_alias(name, alias)
            else:
                registry.set_alias(name, alias, version)
        except OpsError as failure:
            if index == 0:
                raise type(failure)(f"{failure} No alias was changed.") from None
            done, missing = ", ".join(map(_written, writes[:index])), ", ".join(map(_written, writes[index:]))
            raise OpsError(
                f"{failure} The alias change of {name} is half made: done {done}; not done {missing}. "
                f"Complete it with `{repair}`."
            ) from None


def _written(write: AliasWrite) -> str:
    alias, version = write
    return f"{alias} deleted" if version is None else f"{alias} -> {version}"


def _tag(
    args: argparse.Namespace, registry: Registry, name: str, version: str, tags: dict[str, str], repair: str
) -> None:
    try:
        registry.tag(name, version, tags)
    except OpsError as failure:
        redeploy = f" {aws.INFERENCE_SERVICE} was not redeployed: `{repair}` does it." if args.redeploy else ""
        raise OpsError(
            f"{failure} The aliases are moved as printed; the tags {', '.join(tags)} of version {version} are not all "
            f"set.{redeploy}"
        ) from None


def _command(args: argparse.Namespace, action: str, *extra: str) -> str:
    """The `mlops-ops model` command line of `action` on this model, with this invocation's settings."""
    words = ["mlops-ops", "model", action, args.name, *extra]
    options = {
        "--tracking-uri": args.tracking_uri,
        "--env": args.env,
        "--region": args.region,
        "--profile": args.profile,
    }
    words += ["--redeploy"] if args.redeploy else []
    for option, value in options.items():
        words += [option, value] if value else []
    return shlex.join(words)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _redeploy_target(args: argparse.Namespace) -> Any:
    """With --redeploy: an ECS client, after checking the service exists (before any alias changes)."""
    if args.env and not args.redeploy:
        raise UsageError("--env is for --redeploy: add --redeploy, or leave --env out.")
    if not args.redeploy:
        return None
    if not args.env:
        raise UsageError("--redeploy needs --env ENV (the cluster mlops-<env> of the inference service).")
    ecs = aws.client("ecs", args)
    aws.describe_service(ecs, aws.cluster_name(args.env), aws.INFERENCE_SERVICE)
    return ecs


def _redeploy(args: argparse.Namespace, ecs: Any, name: str, champion: str) -> None:
    if ecs is None:
        return
    cluster = aws.cluster_name(args.env)
    try:
        deployment = aws.force_new_deployment(ecs, cluster, aws.INFERENCE_SERVICE)
    except AwsFailure as failure:
        raise AwsFailure(
            f"{failure} The aliases are set (champion of {name} = {champion}): retry with "
            f"`aws ecs update-service --cluster {cluster} --service {aws.INFERENCE_SERVICE} --force-new-deployment`."
        ) from None
    print(
        f"Forced a new deployment of {aws.INFERENCE_SERVICE} in cluster {cluster} ({deployment}): its new tasks "
        f"load champion {champion} of {name}."
    )
