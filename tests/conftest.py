"""Test session set-up: background work first, then one synth of the whole app, as `cdk synth` makes it.

The CDK is imported lazily (in the `synth` fixture and by the test modules), so the processes that
run beside the tests (bad-config runs of app.py, a cfn-lint worker, the local MLflow server, the local
deploy with its moto server) start before it, in `pytest_configure`, and use the second core while this
process imports the CDK and synthesizes. Each starts only when the session may run the tests that need it
(judged from the command line's paths), and is stopped again when collection leaves none of them.
"""

from __future__ import annotations

import gc
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
from tests.local_deploy import LocalDeploy
from tests.mlflow_server import MlflowServerProcess
from tests.test_config_errors import Run, start_all, stop_all

if TYPE_CHECKING:
    from aws_cdk.assertions import Template

    from mlops_infra.stacks import EnvironmentStacks

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
# Before `import mlflow` (collection): no usage telemetry from the tests, in this process or the ones it starts.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("dev", "staging", "prod")
# Every stack the shipped config makes: per environment the entry stack, its foundation (and prod's DR-region
# stack), and the stacks the environments share: the container registry and the CI identity.
STACKS = (
    "MlopsDev",
    "MlopsDevFoundation",
    "MlopsStaging",
    "MlopsStagingFoundation",
    "MlopsProd",
    "MlopsProdFoundation",
    "MlopsProdDr",
    "MlopsRegistryUsEast1",
    "MlopsCi",
)
BACKGROUND = pytest.StashKey["Background"]()
REMAINING = pytest.StashKey[dict[str, int]]()  # per background part: how many of its tests have not run yet
# Of the local deploy and the cfn-lint worker, whose tests run last: they yield a core to this process and what it
# waits for (measured: the suite 2-3 s faster; lowering the MLflow server's priority too made it no faster).
BACKGROUND_NICENESS = 10
CFN_LINT_WORKERS = 1  # measured: a second worker costs more CPU (its own start-up) than it saves on 2 cores


TESTS = ROOT / "tests"
# The background work, by the test module that needs it; started in this order (the longest first).
NEEDED_BY = {
    "deploy": TESTS / "test_deploy_local.py",
    "mlflow": TESTS / "test_ops_model.py",
    "app_py_runs": TESTS / "test_config_errors.py",
    "cfn_lint": TESTS / "test_cfn_lint.py",
}


@dataclass
class Background:
    """Work in other processes, started at configure time, each part only when the tests that need it may run."""

    folder: Path
    parts: set[str] = field(default_factory=set)  # the parts running
    deploy: LocalDeploy | None = None  # moto server, bootstrap, deploy, redeploy for tests/test_deploy_local.py
    mlflow: MlflowServerProcess | None = None  # a local MLflow server for tests/test_ops_model.py (starts in seconds)
    app_py_runs: dict[str, Run] = field(default_factory=dict)  # bad-config runs of `python app.py`
    cfn_lint: list[subprocess.Popen[str]] = field(default_factory=list)  # cfn-lint workers waiting for template paths

    def need(self, parts: set[str]) -> None:
        """Start the parts of `parts` not running yet; stop the others (all at once: a server takes a second)."""
        for part in NEEDED_BY:
            if part in parts and part not in self.parts:
                self._start(part)
        unneeded = [part for part in NEEDED_BY if part in self.parts and part not in parts]
        for part in unneeded:
            self.release(part)
        for part in unneeded:
            self._stop(part)

    def mlflow_server(self) -> MlflowServerProcess:
        self.need(self.parts | {"mlflow"})
        assert self.mlflow is not None
        return self.mlflow

    def local_deploy(self) -> LocalDeploy:
        self.need(self.parts | {"deploy"})
        assert self.deploy is not None
        return self.deploy

    def release(self, part: str) -> None:
        """Its tests are done: start stopping it (the server processes), without waiting; stop() waits."""
        if part == "deploy" and self.deploy is not None:
            self.deploy.terminate()
        elif part == "mlflow" and self.mlflow is not None:
            self.mlflow.terminate()

    def stop(self) -> None:
        try:
            self.need(set())
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _start(self, part: str) -> None:
        self.parts.add(part)
        folder = Path(tempfile.mkdtemp(prefix=f"{part}-", dir=self.folder))
        if part == "deploy":
            self.deploy = LocalDeploy(folder)
            _lower_priority(self.deploy.process.pid)
        elif part == "mlflow":
            self.mlflow = MlflowServerProcess(folder)
        elif part == "app_py_runs":
            self.app_py_runs = start_all(folder)
        elif part == "cfn_lint":
            self.cfn_lint = [
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
            for process in self.cfn_lint:
                _lower_priority(process.pid)

    def _stop(self, part: str) -> None:
        self.parts.discard(part)
        if part == "deploy" and self.deploy is not None:
            self.deploy.stop()
            self.deploy = None
        elif part == "mlflow" and self.mlflow is not None:
            self.mlflow.stop()
            self.mlflow = None
        elif part == "app_py_runs":
            stop_all(self.app_py_runs)
            self.app_py_runs = {}
        elif part == "cfn_lint":
            for process in self.cfn_lint:
                if process.poll() is None:
                    process.kill()
                process.wait()
                for stream in (process.stdin, process.stdout):
                    if stream is not None:
                        stream.close()
            self.cfn_lint = []


def _lower_priority(pid: int) -> None:
    """Background work that nothing waits for soon yields the CPU to this process (and what it waits for)."""
    os.setpriority(os.PRIO_PROCESS, pid, BACKGROUND_NICENESS)


def _may_run(config: pytest.Config, module: Path) -> bool:
    """Whether the command line's paths (or testpaths) include `module`: a -k or -m may still deselect it."""
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::")[0]).resolve()
        if path == module or path in module.parents:
            return True
    return False


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "background: waits on work started in the background; runs last")
    background = Background(folder=Path(tempfile.mkdtemp(prefix="mlops-infra-tests-")))
    config.stash[BACKGROUND] = background
    background.need({part for part, module in NEEDED_BY.items() if _may_run(config, module)})


def pytest_unconfigure(config: pytest.Config) -> None:
    if BACKGROUND in config.stash:
        config.stash[BACKGROUND].stop()
    # This process ends soon: spare its shutdown the garbage collections over the whole heap (CDK, moto, MLflow
    # objects), 1-2 s; objects made from now on are still collected.
    gc.freeze()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests that wait on background work (cfn-lint, the local deploy) last: the work overlaps other tests."""
    items.sort(key=lambda item: item.get_closest_marker("background") is not None)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Now that the tests are known: stop the background work none of them needs (-k, -m, --collect-only), start
    what the command line's paths did not show, and count the tests of each part (see pytest_runtest_teardown)."""
    if BACKGROUND not in session.config.stash:
        return
    items = [] if session.config.option.collectonly else session.items
    paths = [Path(item.path).resolve() for item in items]
    session.config.stash[BACKGROUND].need({part for part, module in NEEDED_BY.items() if module in paths})
    session.config.stash[REMAINING] = {part: paths.count(module) for part, module in NEEDED_BY.items()}


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """After the last test of a server's module (its fixtures torn down): let the server shut down meanwhile."""
    remaining = item.config.stash.get(REMAINING, {})
    path = Path(item.path).resolve()
    for part, module in NEEDED_BY.items():
        if path == module and remaining.get(part, 0) > 0:
            remaining[part] -= 1
            if remaining[part] == 0:
                item.config.stash[BACKGROUND].release(part)


@pytest.fixture(scope="session")
def app_py_runs(pytestconfig: pytest.Config) -> dict[str, Run]:
    background = pytestconfig.stash[BACKGROUND]
    background.need(background.parts | {"app_py_runs"})
    return background.app_py_runs


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
