"""`mlops-ops smoke`: check the health endpoints of a deployed environment.

The URLs come from the outputs of CloudFormation stack `Mlops<Env>`:

| check | URL |
|---|---|
| `frontend` | `FrontendUrl` + `/` (CloudFront) |
| `backend` | `FrontendUrl` + `/api/health` (CloudFront -> backend) |
| `mlflow` | `MlflowTrackingUri` + `/health` (internal load balancer, port 5000) |
| `inference` | `InferenceUrl` + `/ping` (internal load balancer, port 8080) |

`MlflowTrackingUri` and `InferenceUrl` point at the *internal* load balancer (`LoadBalancerDns`): only
reachable from inside the VPC (a bastion, a task, a VPN, CloudShell in the VPC). From anywhere else run
`--public-only`, the two checks through the public FrontendUrl. Checks run in parallel, each with
`--timeout`; any status from 200 to 399 (after redirects) is OK.
"""

from __future__ import annotations

import argparse
import http.client
import socket
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TextIO

from mlops_infra.ops import aws
from mlops_infra.ops.errors import CheckFailed


@dataclass(frozen=True)
class Check:
    name: str
    output: str  # the stack output holding the base URL
    path: str
    public: bool  # reachable from outside the VPC


CHECKS = (
    Check("frontend", "FrontendUrl", "/", public=True),
    Check("backend", "FrontendUrl", "/api/health", public=True),
    Check("mlflow", "MlflowTrackingUri", "/health", public=False),
    Check("inference", "InferenceUrl", "/ping", public=False),
)
DEFAULT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Result:
    check: Check
    url: str
    status: str  # the HTTP status, or what went wrong ("timeout", "refused", "DNS", "not HTTP", "no output")
    milliseconds: int | None
    ok: bool


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    names = [check.name for check in CHECKS]
    parser = subparsers.add_parser(
        "smoke",
        help="check the health endpoints of a deployed environment",
        description=(
            "Read the outputs of stack Mlops<Env> and check the health endpoints: "
            + ", ".join(f"{c.name} ({c.output} + {c.path})" for c in CHECKS)
            + ". mlflow and inference go through the internal load balancer: run from inside the VPC, "
            "or with --public-only for the checks through the public FrontendUrl."
        ),
    )
    parser.add_argument("--env", required=True, type=aws.env_name, help="environment (stack Mlops<Env>)")
    parser.add_argument(
        "--timeout",
        type=aws.positive_seconds,
        default=DEFAULT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"per check (default: {DEFAULT_TIMEOUT_SECONDS:.0f})",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--only",
        action="append",
        type=_check_names,
        metavar="CHECK[,CHECK]",
        help=f"run these checks only (of {', '.join(names)}); repeatable",
    )
    which.add_argument(
        "--public-only",
        action="store_true",
        help="only the checks through the public FrontendUrl (frontend, backend): for runs outside the VPC",
    )
    aws.add_aws_arguments(parser)
    parser.set_defaults(run=run_smoke)


def _check_names(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    known = {check.name for check in CHECKS}
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown check {', '.join(unknown) or value!r}; the checks are {', '.join(sorted(known))}"
        )
    return names


def run_smoke(args: argparse.Namespace) -> int:
    if args.only:
        chosen = {name for names in args.only for name in names}
        checks = [check for check in CHECKS if check.name in chosen]
    elif args.public_only:
        checks = [check for check in CHECKS if check.public]
    else:
        checks = list(CHECKS)

    stack = aws.stack_name(args.env)
    outputs = stack_outputs(aws.client("cloudformation", args), stack)
    print(f"Stack {stack}" + (f" (load balancer {outputs['LoadBalancerDns']})" if "LoadBalancerDns" in outputs else ""))
    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        results = list(pool.map(lambda check: probe(check, outputs, args.timeout), checks))
    print_table(results, sys.stdout)

    failed = [result.check.name for result in results if not result.ok]
    if failed:
        hint = ""
        if any(not check.public for check in checks):
            hint = " (mlflow and inference answer only inside the VPC: from outside, use --public-only)"
        raise CheckFailed(f"{len(failed)} of {len(results)} checks failed: {', '.join(failed)}{hint}.")
    print(f"All {len(results)} checks passed.")
    return 0


def stack_outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    with aws.aws_errors(f"reading the outputs of stack {stack}"):
        response = cloudformation.describe_stacks(StackName=stack)
    stacks = response.get("Stacks", [])
    outputs = stacks[0].get("Outputs", []) if stacks else []
    return {output["OutputKey"]: output["OutputValue"] for output in outputs}


def probe(check: Check, outputs: dict[str, str], timeout: float) -> Result:
    base = outputs.get(check.output)
    if not base:
        return Result(check, f"<{check.output}>", "no output", None, ok=False)
    url = base.rstrip("/") + check.path
    started = time.monotonic()
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "mlops-ops-smoke"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as error:
        status = error.code
    # OSError: no connection, timeout; HTTPException: an answer that is not HTTP, or (InvalidURL) a bad port;
    # ValueError: a URL without a scheme.
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
        return Result(check, url, _failure(error), _elapsed(started), ok=False)
    return Result(check, url, str(status), _elapsed(started), ok=200 <= status < 400)


def _failure(error: Exception) -> str:
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, TimeoutError):
        return "timeout"
    if isinstance(reason, socket.gaierror):
        return "DNS"
    if isinstance(reason, ConnectionRefusedError):
        return "refused"
    if isinstance(reason, ConnectionResetError):
        return "reset"
    if isinstance(reason, ValueError | http.client.InvalidURL):
        return "bad URL"
    if isinstance(reason, http.client.HTTPException):
        return "not HTTP"
    if isinstance(reason, str):
        return reason[:40]
    return type(reason).__name__


def _elapsed(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def print_table(results: list[Result], out: TextIO) -> None:
    rows = [("CHECK", "ENDPOINT", "STATUS", "MS", "RESULT")] + [
        (
            r.check.name,
            r.url,
            r.status,
            "-" if r.milliseconds is None else str(r.milliseconds),
            "OK" if r.ok else "FAIL",
        )
        for r in results
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        cells[3] = row[3].rjust(widths[3])
        print("  ".join(cells).rstrip(), file=out)
