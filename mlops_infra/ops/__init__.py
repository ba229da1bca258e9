"""Operator commands (`mlops-ops`): models, services, smoke checks, offline diffs. No CDK import here."""
