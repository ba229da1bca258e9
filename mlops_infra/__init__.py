"""mlops-infra: the AWS platform of MLOps Studio as an AWS CDK v2 library."""

__version__ = "0.1.0"
