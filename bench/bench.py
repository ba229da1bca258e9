#!/usr/bin/env python3
"""Synth and test-suite benchmark: `make bench` (run from the repository root with the .venv python).

Measures, as medians of `--runs` runs, wall-clock and CPU time (user + sys of the command and its children):
  * the floor: an empty CDK app (one empty Stack, same cdk.json context) synthesized by the CLI, validation off;
  * the full synth as a user runs it: `cdk synth --quiet` in the repository root;
  * the whole test suite (`--skip-tests` skips it and its breakdown).
Then, once each, where the synth's time goes: an in-process profile (import / construction / `app.synth()`), the
same with cdk-nag disabled, and the CLI synth with CDK's built-in CloudFormation validation turned on; and where
the test suite's time goes: cfn-lint alone over the full synth's templates, one bad-config run of `python app.py`
(times the number of such runs the suite makes) and the in-process synth, against the machine's cores; and the
suite split up: the local deploy check alone (`make deploy-local`), the local MLflow server's start-up alone, and
the rest of the suite (without the deploy check, whose background process then never starts), and that rest
without the MLflow tests too (no server at all).

Prints a plain-text table and writes the same numbers to bench/results/latest.json (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
CFN_LINT = ROOT / ".venv" / "bin" / "cfn-lint"
CDK = ROOT / "node_modules" / ".bin" / "cdk"
RESULTS = ROOT / "bench" / "results" / "latest.json"
DEPLOY_CHECK = ROOT / "tests" / "test_deploy_local.py"
MLFLOW_TESTS = ROOT / "tests" / "test_ops_model.py"  # the only tests that need the local MLflow server
FULL_OVER_FLOOR_TARGET = 5.0
TESTS_OVER_FULL_TARGET = 1.5
# The bad-config run: one value out of range in a copy of config/*.toml; app.py must exit 2 before importing the CDK.
BAD_CONFIG_FILE = "dev.toml"
BAD_CONFIG_OLD = "backup_retention_days = 7"
BAD_CONFIG_NEW = "backup_retention_days = 90"
BAD_CONFIG_EXIT = 2
EMPTY_APP = '''\
"""The floor: one empty stack, nothing else."""

from aws_cdk import App, Stack

app = App()
Stack(app, "Empty")
app.synth()
'''


@dataclass(frozen=True)
class Sample:
    """One run of a command: wall-clock seconds, CPU seconds (user + sys of it and its children), exit code."""

    wall: float
    cpu: float
    returncode: int
    ok: bool
    stdout: str = field(default="", repr=False)


@dataclass
class Timing:
    """Wall-clock and CPU seconds of repeated runs of one command, and whether every run succeeded."""

    runs: list[float] = field(default_factory=list)
    cpu_runs: list[float] = field(default_factory=list)
    ok: bool = True

    @property
    def median(self) -> float:
        """Median wall-clock time of the runs (seconds)."""
        return statistics.median(self.runs)

    @property
    def cpu_median(self) -> float:
        """Median CPU time of the runs (seconds)."""
        return statistics.median(self.cpu_runs)


@dataclass
class Profile:
    """One in-process synth, split into phases (seconds), and the resource count of each stack."""

    import_s: float
    construct_s: float
    synth_s: float
    process_wall_s: float = 0.0
    process_cpu_s: float = 0.0
    resources: dict[str, int] = field(default_factory=dict)

    @property
    def in_process_s(self) -> float:
        """Import + construction + synth: everything measured inside the process."""
        return self.import_s + self.construct_s + self.synth_s


def bench_env(**overrides: str) -> dict[str, str]:
    """The environment of `make bench`, plus overrides; CDK_VALIDATION is dropped unless overridden."""
    env = {key: value for key, value in os.environ.items() if key != "CDK_VALIDATION"}
    env["CDK_DISABLE_CLI_TELEMETRY"] = "true"
    env["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
    env.update(overrides)
    return env


Command = Sequence[str | Path]


def children_cpu() -> float:
    """CPU seconds (user + sys) used so far by the waited-for children of this process, and their children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(cmd: Command, *, cwd: Path, env: dict[str, str], expect: int = 0, allow_failure: bool = False) -> Sample:
    """Run a command with captured output; return its wall and CPU time and whether it exited with `expect`.

    Any other exit code prints the command's output and exits non-zero, unless `allow_failure` is set.
    """
    args = [str(part) for part in cmd]
    cpu_start = children_cpu()
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, check=False, capture_output=True, text=True)
    sample = Sample(
        wall=time.perf_counter() - start,
        cpu=children_cpu() - cpu_start,
        returncode=done.returncode,
        ok=done.returncode == expect,
        stdout=done.stdout,
    )
    if not sample.ok and not allow_failure:
        print(f"bench: command failed (exit {done.returncode}, expected {expect}): {' '.join(args)}", file=sys.stderr)
        print(done.stdout, file=sys.stderr)
        print(done.stderr, file=sys.stderr)
        sys.exit(1)
    return sample


def repeat(runs: int, once: Callable[[], Sample]) -> Timing:
    """Call `once` `runs` times and collect the timings."""
    timing = Timing()
    for _ in range(runs):
        sample = once()
        timing.runs.append(sample.wall)
        timing.cpu_runs.append(sample.cpu)
        timing.ok = timing.ok and sample.ok
    return timing


def make_empty_app(workdir: Path) -> None:
    """Write the floor app into `workdir`: empty_app.py and a cdk.json carrying the repository's context."""
    context = json.loads((ROOT / "cdk.json").read_text(encoding="utf-8")).get("context", {})
    (workdir / "empty_app.py").write_text(EMPTY_APP, encoding="utf-8")
    cdk_json = {"app": f"{PYTHON} {workdir / 'empty_app.py'}", "context": context}
    (workdir / "cdk.json").write_text(json.dumps(cdk_json, indent=2), encoding="utf-8")


def floor_once(workdir: Path) -> Sample:
    """One CLI synth of the empty app, built-in validation off, into a fresh output folder."""
    outdir = workdir / "cdk.out"
    shutil.rmtree(outdir, ignore_errors=True)
    cmd: list[str | Path] = [CDK, "synth", "--quiet", "--output", outdir]
    return run(cmd, cwd=workdir, env=bench_env(CDK_VALIDATION="false"))


def full_synth_once(outdir: Path, **env: str) -> Sample:
    """One CLI synth of the whole app from the repository root, as `make synth` runs it, into `outdir`."""
    shutil.rmtree(outdir, ignore_errors=True)
    cmd: list[str | Path] = [CDK, "synth", "--quiet", "--output", outdir]
    return run(cmd, cwd=ROOT, env=bench_env(**env))


def tests_once(*args: str) -> Sample:
    """One run of the test suite (or of what `args` select); a failing suite is timed, not fatal."""
    cmd: list[str | Path] = [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    return run(cmd, cwd=ROOT, env=bench_env(), allow_failure=True)


def mlflow_start_once(workdir: Path) -> Sample:
    """Start the tests' local MLflow server (tests/mlflow_server.py) until /health answers, then stop it.

    Wall: from the start to healthy. CPU: the server's processes until stopped right after (its start-up).
    """
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.mlflow_server import MlflowServerProcess

    cpu_start = children_cpu()
    server = MlflowServerProcess(workdir)
    try:
        ready = server.wait()
    except RuntimeError as error:
        print(f"bench: the MLflow server did not start: {error}", file=sys.stderr)
        server.stop()
        return Sample(wall=0.0, cpu=children_cpu() - cpu_start, returncode=1, ok=False)
    server.stop()
    return Sample(wall=ready.start_seconds, cpu=children_cpu() - cpu_start, returncode=0, ok=True)


def suite_parts(workdir: Path) -> dict[str, Sample]:
    """Once each: the deploy check, the MLflow start-up, the suite without the check (then without MLflow too)."""
    print("bench: local deploy check alone (pytest tests/test_deploy_local.py) x1 ...", file=sys.stderr)
    deploy = tests_once(str(DEPLOY_CHECK))
    print("bench: the local MLflow server's start-up x1 ...", file=sys.stderr)
    mlflow = mlflow_start_once(workdir / "mlflow-server")
    print("bench: the test suite without the deploy check x1 ...", file=sys.stderr)
    rest = tests_once("--ignore", str(DEPLOY_CHECK))
    print("bench: the test suite without the deploy check and the MLflow tests x1 ...", file=sys.stderr)
    serverless = tests_once("--ignore", str(DEPLOY_CHECK), "--ignore", str(MLFLOW_TESTS))
    return {"local_deploy_check": deploy, "mlflow_server_start": mlflow, "rest": rest, "serverless": serverless}


def cfn_lint_once(outdir: Path) -> Sample:
    """cfn-lint alone over every template of a cloud assembly, from the repository root (so .cfnlintrc.yaml applies)."""
    cmd: list[str | Path] = [CFN_LINT, "--", *sorted(outdir.glob("*.template.json"))]
    return run(cmd, cwd=ROOT, env=bench_env(), allow_failure=True)


def make_bad_config(workdir: Path) -> Path:
    """Copy config/*.toml into `workdir`/config with one value out of range; return that folder."""
    folder = workdir / "config"
    folder.mkdir()
    for path in sorted((ROOT / "config").glob("*.toml")):
        shutil.copy(path, folder / path.name)
    target = folder / BAD_CONFIG_FILE
    text = target.read_text(encoding="utf-8")
    if text.count(BAD_CONFIG_OLD) != 1:
        print(f"bench: config/{BAD_CONFIG_FILE} should contain {BAD_CONFIG_OLD!r} exactly once", file=sys.stderr)
        sys.exit(1)
    target.write_text(text.replace(BAD_CONFIG_OLD, BAD_CONFIG_NEW), encoding="utf-8")
    return folder


def bad_config_once(workdir: Path) -> Sample:
    """One `python app.py` with a bad config and an empty CDK_OUTDIR, as the test suite runs it (must exit 2)."""
    config_dir = make_bad_config(workdir)
    outdir = workdir / "cdk.out"
    outdir.mkdir()
    env = bench_env(MLOPS_CONFIG_DIR=str(config_dir), CDK_OUTDIR=str(outdir))
    return run([PYTHON, "app.py"], cwd=ROOT, env=env, expect=BAD_CONFIG_EXIT, allow_failure=True)


def suite_app_py_runs() -> int:
    """How many `python app.py` processes the test suite starts: one per packed bad-config run, plus the probe."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.test_config_errors import RUNS

    return len(RUNS) + 1


def count_resources(outdir: Path) -> dict[str, int]:
    """Stack name -> number of Resources, for every *.template.json in a cloud assembly."""
    counts = {}
    for path in sorted(outdir.glob("*.template.json")):
        template = json.loads(path.read_text(encoding="utf-8"))
        counts[path.name.removesuffix(".template.json")] = len(template.get("Resources", {}))
    return counts


def differing_stacks(cli: dict[str, int], in_process: dict[str, int]) -> list[str]:
    """The stacks whose resource count differs between two synths (missing from one counts as differing)."""
    return sorted(stack for stack in cli.keys() | in_process.keys() if cli.get(stack) != in_process.get(stack))


def profile_in_child(*, nag: bool) -> Profile:
    """Run `profile_here` in a fresh python process (cold imports, like the CLI's app process) and read its result."""
    cmd: list[str | Path] = [PYTHON, Path(__file__).resolve(), "--profile-child", *([] if nag else ["--no-nag"])]
    sample = run(cmd, cwd=ROOT, env=bench_env())
    data = json.loads(sample.stdout.strip().splitlines()[-1])
    data["process_wall_s"] = sample.wall
    data["process_cpu_s"] = sample.cpu
    return Profile(**data)


def profile_here(*, nag: bool) -> Profile:
    """Time import, construction and `app.synth()` of the whole app in this process (the child side)."""
    start = time.perf_counter()
    import aws_cdk  # noqa: F401

    from mlops_infra import cdk_app, compliance

    imported = time.perf_counter()
    if not nag:
        compliance.enable_checks = lambda app: None
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        app, _ = cdk_app.create_app(context=cdk_app.project_context(), outdir=tmp)
        constructed = time.perf_counter()
        app.synth()
        synthesized = time.perf_counter()
        resources = count_resources(Path(tmp))
    return Profile(
        import_s=imported - start,
        construct_s=constructed - imported,
        synth_s=synthesized - constructed,
        resources=resources,
    )


def ratio(value: float, base: float, target: float) -> dict[str, Any]:
    """A ratio against its target (lower is better)."""
    result = value / base
    return {"value": round(result, 2), "target": target, "pass": result <= target}


def collect(runs: int, skip_tests: bool) -> dict[str, Any]:
    """Run every measurement and return the results (the JSON document)."""
    app_py_runs = suite_app_py_runs()  # first: a broken tests module fails the bench at once, not after a minute
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp_name:
        tmp = Path(tmp_name)
        floor_dir = tmp / "empty-app"
        floor_dir.mkdir()
        make_empty_app(floor_dir)
        print(f"bench: floor (empty app) x{runs} ...", file=sys.stderr)
        floor = repeat(runs, lambda: floor_once(floor_dir))
        print(f"bench: full synth x{runs} ...", file=sys.stderr)
        full = repeat(runs, lambda: full_synth_once(tmp / "full.out"))
        resources = count_resources(tmp / "full.out")
        print("bench: cfn-lint over the full synth's templates x1 ...", file=sys.stderr)
        lint = cfn_lint_once(tmp / "full.out")
        print("bench: full synth with CDK_VALIDATION=true x1 ...", file=sys.stderr)
        validated = full_synth_once(tmp / "validated.out", CDK_VALIDATION="true")
        print("bench: one bad-config run of app.py x1 ...", file=sys.stderr)
        bad_dir = tmp / "bad-config"
        bad_dir.mkdir()
        bad_config = bad_config_once(bad_dir)
    tests = None
    parts: dict[str, Sample] | None = None
    if not skip_tests:
        print(f"bench: test suite x{runs} ...", file=sys.stderr)
        tests = repeat(runs, tests_once)
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp_name:
            parts = suite_parts(Path(tmp_name))
    print("bench: in-process profile, with and without cdk-nag ...", file=sys.stderr)
    with_nag = profile_in_child(nag=True)
    without_nag = profile_in_child(nag=False)
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "runs": runs,
        "cpu_count": os.cpu_count(),
        "floor_s": timing_json(floor),
        "full_synth_s": timing_json(full),
        "test_suite_s": None if tests is None else timing_json(tests),
        "resources": {
            "total": sum(resources.values()),
            "per_stack": resources,
            "differing_from_in_process": differing_stacks(resources, with_nag.resources),
        },
        "ratios": {
            "full_synth_over_floor": ratio(full.median, floor.median, FULL_OVER_FLOOR_TARGET),
            "test_suite_over_full_synth": None
            if tests is None
            else ratio(tests.median, full.median, TESTS_OVER_FULL_TARGET),
        },
        "breakdown": {
            "in_process": profile_json(with_nag),
            "in_process_without_cdk_nag": profile_json(without_nag),
            "cli_full_synth_with_builtin_validation_s": round(validated.wall, 3),
        },
        "test_suite_work": suite_work_json(lint, len(resources), bad_config, app_py_runs, with_nag),
        "test_suite_parts": None if tests is None or parts is None else suite_parts_json(tests, parts),
    }


def suite_parts_json(tests: Timing, parts: dict[str, Sample]) -> dict[str, Any]:
    """The suite split up (single runs), and how much of the deploy check the whole suite hides behind the rest.

    The deploy check runs in a background process from the start of the session, so in the whole suite it costs
    about its CPU, not its wall time: hidden = (rest + deploy check alone) - whole suite (median).
    """
    deploy, rest = parts["local_deploy_check"], parts["rest"]
    return {
        **{name: sample_json(sample) for name, sample in parts.items()},
        "whole_suite_median_s": round(tests.median, 3),
        "deploy_check_hidden_s": round(rest.wall + deploy.wall - tests.median, 3),
    }


def suite_work_json(
    lint: Sample, templates: int, bad_config: Sample, app_py_runs: int, synth: Profile
) -> dict[str, Any]:
    """The work the test suite does besides its own tests (wall and CPU seconds), and the floor it sets on this machine.

    The in-process synth's wall time is the profile's import + construction + synth; its CPU time is the whole
    profile process's (python start and exit included, and the jsii node process).
    """
    cores = os.cpu_count() or 1
    total_wall = lint.wall + bad_config.wall * app_py_runs + synth.in_process_s
    total_cpu = lint.cpu + bad_config.cpu * app_py_runs + synth.process_cpu_s
    return {
        "cfn_lint": {**sample_json(lint), "templates": templates},
        "bad_config_app_py": {
            **sample_json(bad_config),
            "runs_in_suite": app_py_runs,
            "total_wall_s": round(bad_config.wall * app_py_runs, 3),
            "total_cpu_s": round(bad_config.cpu * app_py_runs, 3),
        },
        "in_process_synth": {"wall_s": round(synth.in_process_s, 3), "cpu_s": round(synth.process_cpu_s, 3)},
        "total_wall_s": round(total_wall, 3),
        "total_cpu_s": round(total_cpu, 3),
        "cpu_count": cores,
        "floor_s": round(total_cpu / cores, 3),
    }


def sample_json(sample: Sample) -> dict[str, Any]:
    """A single Sample as JSON: wall and CPU seconds, exit code, success."""
    return {
        "wall_s": round(sample.wall, 3),
        "cpu_s": round(sample.cpu, 3),
        "exit_code": sample.returncode,
        "ok": sample.ok,
    }


def timing_json(timing: Timing) -> dict[str, Any]:
    """A Timing as JSON: wall and CPU medians, every run, success."""
    return {
        "median": round(timing.median, 3),
        "runs": [round(run, 3) for run in timing.runs],
        "cpu_median": round(timing.cpu_median, 3),
        "cpu_runs": [round(run, 3) for run in timing.cpu_runs],
        "ok": timing.ok,
    }


def profile_json(profile: Profile) -> dict[str, Any]:
    """A Profile as JSON, with rounded seconds and the in-process total."""
    data = asdict(profile)
    for key, value in data.items():
        if isinstance(value, float):
            data[key] = round(value, 3)
    data["in_process_s"] = round(profile.in_process_s, 3)
    return data


def git_commit() -> str | None:
    """The checked-out commit (with '+dirty' if the tree has changes), or None outside git."""
    try:
        head = git("rev-parse", "--short", "HEAD")
        status = git("status", "--porcelain")
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if status else "")


def git(*args: str) -> str:
    """The stripped output of a git command run in the repository."""
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def report(results: dict[str, Any]) -> str:
    """The results as a plain-text table."""
    runs = results["runs"]
    floor, full, tests = results["floor_s"], results["full_synth_s"], results["test_suite_s"]
    lines = [f"mlops-infra bench  commit {results['commit']}  {results['timestamp']}  median of {runs} run(s)", ""]
    lines.append(f"{'measurement':<52}{'median s':>10}{'CPU s':>10}   runs (wall s)")
    lines.append(row("empty-app floor (CLI synth, CDK_VALIDATION=false)", floor))
    lines.append(row("full synth (cdk synth --quiet, repo root)", full))
    if tests is None:
        lines.append(f"{'test suite (pytest -q)':<52}{'skipped':>10}")
    else:
        label = "test suite (pytest -q)" + ("" if tests["ok"] else " (tests failed)")
        lines.append(row(label, tests))
    lines.append(f"{'machine cores (os.cpu_count())':<52}{results['cpu_count']:>10}")
    lines += ["", "ratios (lower is better)"]
    for name, label in (
        ("full_synth_over_floor", "full synth / floor"),
        ("test_suite_over_full_synth", "test suite / full synth"),
    ):
        item = results["ratios"][name]
        if item is None:
            lines.append(f"  {label:<50}{'skipped':>10}")
            continue
        verdict = "PASS" if item["pass"] else "MISS"
        lines.append(f"  {label:<50}{item['value']:>9.2f}x   target <= {item['target']}x  {verdict}")
    lines += ["", *breakdown_lines(results), "", *suite_work_lines(results), "", *suite_parts_lines(results)]
    lines += ["", *resource_lines(results)]
    return "\n".join(lines)


def row(label: str, timing: dict[str, Any]) -> str:
    """One timing line of the table: wall median, CPU median, every run's wall time."""
    runs = " ".join(f"{value:.2f}" for value in timing["runs"])
    return f"{label:<52}{timing['median']:>10.2f}{timing['cpu_median']:>10.2f}   {runs}"


def breakdown_lines(results: dict[str, Any]) -> list[str]:
    """Where the synth's time goes: in-process phases with and without cdk-nag, and the built-in validation's cost."""
    breakdown = results["breakdown"]
    nag, no_nag = breakdown["in_process"], breakdown["in_process_without_cdk_nag"]
    full = results["full_synth_s"]["median"]
    validated = breakdown["cli_full_synth_with_builtin_validation_s"]
    lines = [
        "where the synth's time goes (single runs, fresh python process each)",
        f"  {'phase':<50}{'with nag':>10}{'no nag':>10}",
    ]
    for key, label in (
        ("import_s", "import aws_cdk + mlops_infra"),
        ("construct_s", "create_app() (construction)"),
        ("synth_s", "app.synth() (incl. cdk-nag when on)"),
        ("in_process_s", "in-process total"),
        ("process_wall_s", "python process wall (incl. start/exit)"),
        ("process_cpu_s", "python process CPU (incl. jsii node process)"),
    ):
        lines.append(f"  {label:<50}{nag[key]:>10.2f}{no_nag[key]:>10.2f}")
    nag_cost = nag["in_process_s"] - no_nag["in_process_s"]
    lines += [
        f"  {'cdk-nag cost (in-process total, with - without)':<50}{nag_cost:>10.2f}",
        f"  {'CLI overhead (full synth median - python wall)':<50}{full - nag['process_wall_s']:>10.2f}",
        f"  {'full CLI synth with CDK_VALIDATION=true (1 run)':<50}{validated:>10.2f}",
        f"  {'built-in validation cost (that - full median)':<50}{validated - full:>10.2f}",
    ]
    return lines


def suite_work_lines(results: dict[str, Any]) -> list[str]:
    """Where the test suite's time goes: the work it must do besides its own tests, against the machine's cores."""
    work = results["test_suite_work"]
    lint, bad, synth = work["cfn_lint"], work["bad_config_app_py"], work["in_process_synth"]
    runs = bad["runs_in_suite"]
    lines = [
        "where the test suite's time goes (single runs; CPU = user + sys of the process and its children)",
        f"  {'work':<50}{'wall s':>10}{'CPU s':>10}",
        work_line(f"(a) cfn-lint alone, {lint['templates']} templates{failed(lint)}", lint["wall_s"], lint["cpu_s"]),
        work_line(f"    one bad-config app.py, must exit 2{failed(bad)}", bad["wall_s"], bad["cpu_s"]),
        work_line(f"(b) that x {runs} (len(RUNS) + import probe)", bad["total_wall_s"], bad["total_cpu_s"]),
        work_line("(c) in-process synth (profile, with nag)", synth["wall_s"], synth["cpu_s"]),
        work_line("CPU work the suite must do besides its own tests", work["total_wall_s"], work["total_cpu_s"]),
    ]
    tests = results["test_suite_s"]
    if tests is not None:
        lines.append(work_line("(d) test suite (pytest -q), median", tests["median"], tests["cpu_median"]))
    lines += [
        f"  {'floor: that CPU work / ' + str(work['cpu_count']) + ' cores':<50}{work['floor_s']:>10.2f}",
        "  (the suite overlaps that work on the machine's cores: its background processes start before the CDK",
        "   import, so its floor is about that CPU total divided by the effective core count)",
    ]
    if not bad["ok"]:
        lines.append(
            f"  WARNING: the bad-config run exited {bad['exit_code']}, not {BAD_CONFIG_EXIT}; (b) is not a config error"
        )
    return lines


def suite_parts_lines(results: dict[str, Any]) -> list[str]:
    """The test suite split up: the deploy check alone, the MLflow server's start-up, the rest."""
    parts = results.get("test_suite_parts")
    if parts is None:
        return ["the test suite split up: skipped (--skip-tests)"]
    deploy, mlflow, rest = parts["local_deploy_check"], parts["mlflow_server_start"], parts["rest"]
    serverless = parts["serverless"]
    return [
        "the test suite split up (single runs; CPU = user + sys of the process and its children)",
        f"  {'part':<50}{'wall s':>10}{'CPU s':>10}",
        work_line(
            f"whole suite (pytest -q), median{'' if results['test_suite_s']['ok'] else ' (tests failed)'}",
            parts["whole_suite_median_s"],
            results["test_suite_s"]["cpu_median"],
        ),
        work_line(f"local deploy check alone (make deploy-local){failed(deploy)}", deploy["wall_s"], deploy["cpu_s"]),
        work_line(f"local MLflow server start-up, until healthy{failed(mlflow)}", mlflow["wall_s"], mlflow["cpu_s"]),
        work_line(f"the rest: suite without the deploy check{failed(rest)}", rest["wall_s"], rest["cpu_s"]),
        work_line(
            f"... and without the MLflow tests (no server){failed(serverless)}",
            serverless["wall_s"],
            serverless["cpu_s"],
        ),
        f"  {'deploy check hidden (rest + alone - whole)':<50}{parts['deploy_check_hidden_s']:>10.2f}",
        "  (the deploy check and the MLflow server start in background processes with the session and overlap the",
        "   rest; the MLflow start-up is part of the rest)",
    ]


def work_line(label: str, wall: float, cpu: float) -> str:
    """One line of the test suite's work: label, wall seconds, CPU seconds."""
    return f"  {label:<50}{wall:>10.2f}{cpu:>10.2f}"


def failed(sample: dict[str, Any]) -> str:
    """A label suffix for a single run that did not exit as it must."""
    return "" if sample["ok"] else f" (exit {sample['exit_code']})"


def resource_lines(results: dict[str, Any]) -> list[str]:
    """Resources per stack: the CLI's full synth, and the in-process synth of the profile (they must be equal)."""
    per_stack = results["resources"]["per_stack"]
    in_process = results["breakdown"]["in_process"]["resources"]
    lines = [
        f"resources per stack  total {results['resources']['total']} (CLI full synth)",
        f"  {'stack':<50}{'CLI':>10}{'in-proc':>10}",
    ]
    for stack in sorted(per_stack.keys() | in_process.keys()):
        lines.append(f"  {stack:<50}{per_stack.get(stack, '-'):>10}{in_process.get(stack, '-'):>10}")
    differing = results["resources"]["differing_from_in_process"]
    if differing:
        lines += [
            f"WARNING: resource counts of the CLI and the in-process synth differ for {', '.join(differing)};",
            "         they must be equal (the tests snapshot the in-process templates and claim they are the CLI's)",
        ]
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement; the median is reported (default 3)")
    parser.add_argument("--skip-tests", action="store_true", help="do not run the test suite (the slowest part)")
    parser.add_argument("--profile-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-nag", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, with the hidden --profile-child, one in-process profile printed as JSON)."""
    args = parse_args(argv)
    if args.profile_child:
        os.chdir(ROOT)
        sys.path.insert(0, str(ROOT))
        print(json.dumps(asdict(profile_here(nag=not args.no_nag))))
        return 0
    for tool in (PYTHON, CDK):
        if not tool.exists():
            print(f"bench: {tool} is missing; run `make install` first", file=sys.stderr)
            return 1
    results = collect(args.runs, args.skip_tests)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(report(results))
    print(f"\n(JSON: {RESULTS.relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
