"""Errors of the operator commands: each a sentence for the operator and a distinct exit code."""

from __future__ import annotations


class OpsError(Exception):
    """A failure the operator can act on; `exit_code` tells scripts which one."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)


class UnknownModel(OpsError):
    exit_code = 3


class UnknownVersion(OpsError):
    exit_code = 4


class NothingToRollBackTo(OpsError):
    exit_code = 5


class ServerUnreachable(OpsError):
    exit_code = 6


class CredentialsMissing(OpsError):
    exit_code = 7


class DestructiveChange(OpsError):
    exit_code = 8


class AwsFailure(OpsError):
    exit_code = 9


class CheckFailed(OpsError):
    exit_code = 10


class MissingExtra(OpsError):
    """boto3 or mlflow is not installed: the operator commands that talk to AWS or MLflow need the `[ops]` extra."""

    @classmethod
    def of(cls, error: ImportError) -> MissingExtra:
        return cls(
            f"Python package {error.name or 'boto3 or mlflow'} is not installed: the operator commands need the "
            '`ops` extra: pip install "mlops-infra[ops]".'
        )
