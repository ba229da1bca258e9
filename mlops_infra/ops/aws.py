"""Shared AWS helpers of the operator commands: clients, names, and AWS errors as sentences with exit codes.

Credentials and region come from boto3's usual chain (environment, `~/.aws`, SSO, instance or task role);
`--profile` and `--region` pick others. The region is `--region`, else AWS_REGION (which botocore itself ignores),
else boto3's (AWS_DEFAULT_REGION, the profile's).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
from collections.abc import Iterator
from typing import Any

from mlops_infra.ops.errors import AwsFailure, CredentialsMissing, MissingExtra

ENV_NAME = re.compile(r"^[a-z][a-z0-9]{1,15}$")  # as config/<env>.toml names allow (mlops_infra.config)
INFERENCE_SERVICE = "mlops-inference"
MAX_SECONDS = 86_400.0  # a day: the longest wait or timeout an option takes


def env_name(value: str) -> str:
    """argparse type of `--env`: an environment name as `config/<env>.toml` allows."""
    if not ENV_NAME.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not an environment name (lower-case letters and digits)")
    return value


def positive_seconds(value: str) -> float:
    """argparse type of the `--timeout`-like options: a finite number of seconds, more than 0 and at most a day."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and 0 < number <= MAX_SECONDS):
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds above 0 and up to {MAX_SECONDS:.0f}")
    return number


def cluster_name(env: str) -> str:
    return f"mlops-{env}"


def stack_name(env: str) -> str:
    """The entry stack of an environment, as `mlops_infra.stacks.environment` names it."""
    return f"Mlops{env.capitalize()}"


def add_aws_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("AWS")
    group.add_argument("--region", help="AWS region (default: AWS_REGION, else AWS_DEFAULT_REGION or the profile's)")
    group.add_argument("--profile", help="AWS profile of ~/.aws/config (default: boto3's, e.g. AWS_PROFILE)")


def client(service: str, args: argparse.Namespace) -> Any:
    """A boto3 client for `service` with the region and profile of `args` (from `add_aws_arguments`)."""
    try:
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]
    except ImportError as error:
        raise MissingExtra.of(error) from None

    config = Config(connect_timeout=10, read_timeout=30, retries={"max_attempts": 4, "mode": "standard"})
    # botocore reads AWS_DEFAULT_REGION only; the AWS CLI and most SDKs read AWS_REGION first, and so does this CLI.
    region = getattr(args, "region", None) or os.environ.get("AWS_REGION") or None
    with aws_errors(f"creating the {service} client"):
        session = boto3.Session(profile_name=getattr(args, "profile", None), region_name=region)
        return session.client(service, config=config)


def error_code(error: Exception) -> str:
    """The AWS error code of a ClientError (`ServiceNotFoundException`), else ""."""
    response = getattr(error, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def error_message(error: Exception) -> str:
    """The AWS message of a ClientError (`Message (Code)`), or the exception's text."""
    from botocore.exceptions import ClientError  # type: ignore[import-untyped]

    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        message = str(details.get("Message") or error).rstrip(".")
        code = details.get("Code")
        return f"{message} ({code})" if code else message
    return str(error).rstrip(".")


@contextlib.contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Turn botocore failures while doing `action` into sentences: missing credentials -> CredentialsMissing (7),
    the rest (AWS errors, unreachable endpoints, no region) -> AwsFailure (9)."""
    from botocore import exceptions as boto  # type: ignore[import-untyped]

    credentials_errors: tuple[type[Exception], ...] = (
        boto.NoCredentialsError,
        boto.PartialCredentialsError,
        boto.ProfileNotFound,
        boto.TokenRetrievalError,
        boto.SSOTokenLoadError,
        boto.UnauthorizedSSOTokenError,
    )
    try:
        yield
    except credentials_errors as error:
        raise CredentialsMissing(
            f"No usable AWS credentials while {action}: {str(error).rstrip('.')}. "
            "Set AWS_PROFILE (or --profile), log in with `aws sso login`, or export AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY."
        ) from None
    except boto.NoRegionError:
        raise AwsFailure(
            f"No AWS region while {action}: pass --region or set AWS_REGION (or AWS_DEFAULT_REGION)."
        ) from None
    except boto.ClientError as error:
        raise AwsFailure(f"AWS refused {action}: {error_message(error)}.") from None
    except boto.WaiterError as error:
        raise AwsFailure(f"AWS failed while {action}: {error_message(error)}.") from None
    except boto.BotoCoreError as error:  # endpoint unreachable, timeouts, bad parameters
        raise AwsFailure(f"AWS call failed while {action}: {error_message(error)}.") from None


def force_new_deployment(ecs: Any, cluster: str, service: str) -> str:
    """`ecs.update_service(forceNewDeployment=True)`; returns the new primary deployment's id."""
    with aws_errors(f"forcing a new deployment of ECS service {service} in cluster {cluster}"):
        response = ecs.update_service(cluster=cluster, service=service, forceNewDeployment=True)
    deployments = response["service"].get("deployments", [])
    primary = [d for d in deployments if d.get("status") == "PRIMARY"] or deployments
    return str(primary[0]["id"]) if primary else "?"


def describe_service(ecs: Any, cluster: str, service: str) -> dict[str, Any]:
    """The ECS service, or AwsFailure with a sentence when it or its cluster does not exist."""
    with aws_errors(f"describing ECS service {service} in cluster {cluster}"):
        response = ecs.describe_services(cluster=cluster, services=[service])
    services = [s for s in response.get("services", []) if s.get("status") != "INACTIVE"]
    if not services:
        failures = response.get("failures") or [{}]
        reason = failures[0].get("reason", "MISSING")
        raise AwsFailure(f"ECS service {service} does not exist in cluster {cluster} ({reason}).")
    found: dict[str, Any] = services[0]
    return found
