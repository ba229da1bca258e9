"""Test session set-up: background work first, then one synth of the whole app, as `cdk synth` makes it.

The CDK is imported lazily (in the `synth` fixture and by the test modules), so the processes that
run beside the tests (bad-config runs of app.py, a cfn-lint worker, the local MLflow server) start
before it, in `pytest_configure`, and use the second core while this process imports the CDK and
synthesizes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mlops_infra.config import EnvironmentConfig, load_all
from tests.mlflow_server import MlflowServerProcess
from tests.test_config_errors import Run, start_all, stop_all

if TYPE_CHECKING:
    from aws_cdk.assertions import Template

    from mlops_infra.stacks import EnvironmentStacks

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("dev", "staging", "prod")
# Every stack the shipped config makes: per environment the entry stack, its foundation (and prod's DR-region
# stack), and the CI identity stack.
STACKS = (
    "MlopsDev",
    "MlopsDevFoundation",
    "MlopsStaging",
    "MlopsStagingFoundation",
    "MlopsProd",
    "MlopsProdFoundation",
    "MlopsProdDr",
    "MlopsCi",
)
BACKGROUND = pytest.StashKey["Background"]()
CFN_LINT_WORKERS = 1  # measured: a second worker costs more CPU (its own start-up) than it saves on 2 cores


@dataclass
class Background:
    """Work in other processes, started at configure time."""

    folder: Path
    app_py_runs: dict[str, Run]  # bad-config runs of `python app.py` (tests/test_config_errors.py)
    cfn_lint: list[subprocess.Popen[str]]  # cfn-lint workers waiting for template paths (tests/test_cfn_lint.py)
    mlflow: MlflowServerProcess  # a local MLflow server for tests/test_ops_model.py (its start takes seconds)

    @classmethod
    def start(cls) -> Background:
        folder = Path(tempfile.mkdtemp(prefix="mlops-infra-tests-"))
        cfn_lint = [
            subprocess.Popen(
                [sys.executable, str(ROOT / "tests" / "cfn_lint_worker.py")],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(CFN_LINT_WORKERS)
        ]
        return cls(
            folder=folder,
            app_py_runs=start_all(folder),
            cfn_lint=cfn_lint,
            mlflow=MlflowServerProcess(folder / "mlflow-server"),
        )

    def stop(self) -> None:
        self.mlflow.stop()
        stop_all(self.app_py_runs)
        for process in self.cfn_lint:
            if process.poll() is None:
                process.kill()
            process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "background: waits on work started in the background; runs last")
    config.stash[BACKGROUND] = Background.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    if BACKGROUND in config.stash:
        config.stash[BACKGROUND].stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests that wait on background work (cfn-lint) last, so the wait overlaps other tests."""
    items.sort(key=lambda item: item.get_closest_marker("background") is not None)


@pytest.fixture(scope="session")
def app_py_runs(pytestconfig: pytest.Config) -> dict[str, Run]:
    return pytestconfig.stash[BACKGROUND].app_py_runs


@dataclass
class Synth:
    """The synthesized app: templates by stack name, the stack objects, and the configs."""

    outdir: Path
    environments: dict[str, EnvironmentStacks]
    configs: dict[str, EnvironmentConfig]
    templates: dict[str, dict[str, Any]]
    cfn_lint: list[subprocess.Popen[str]]
    linted: list[list[Path]]  # the templates given to each cfn-lint worker
    _assertions: dict[str, Template] = field(default_factory=dict)

    def template(self, stack_name: str) -> Template:
        """aws_cdk.assertions view of one stack's template (built once)."""
        from aws_cdk.assertions import Template

        if stack_name not in self._assertions:
            self._assertions[stack_name] = Template.from_json(self.templates[stack_name])
        return self._assertions[stack_name]

    def resources(self, stack_name: str, resource_type: str) -> dict[str, dict[str, Any]]:
        """Logical ID -> resource, for every resource of a type in one stack."""
        return {
            logical_id: resource
            for logical_id, resource in self.templates[stack_name]["Resources"].items()
            if resource["Type"] == resource_type
        }


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Synth:
    """The whole app, synthesized once, with the cdk.json context (feature flags) the CLI would pass."""
    from mlops_infra.cdk_app import create_app, project_context

    outdir = tmp_path_factory.mktemp("cdk.out")
    app, environments = create_app(context=project_context(), outdir=str(outdir))
    app.synth()
    paths = sorted(outdir.glob("*.template.json"))
    # Largest templates first, dealt out in turn, so the workers finish together.
    by_size = sorted(paths, key=lambda path: path.stat().st_size, reverse=True)
    cfn_lint = pytestconfig.stash[BACKGROUND].cfn_lint
    shares = [by_size[index :: len(cfn_lint)] for index in range(len(cfn_lint))]
    for process, share in zip(cfn_lint, shares, strict=True):
        assert process.stdin is not None
        process.stdin.write("\n".join(map(str, share)))
        process.stdin.close()
    return Synth(
        outdir=outdir,
        environments=environments,
        configs={config.name: config for config in load_all()},
        templates={path.name.removesuffix(".template.json"): json.loads(path.read_text()) for path in paths},
        cfn_lint=cfn_lint,
        linted=shares,
    )
