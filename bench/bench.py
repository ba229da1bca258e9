#!/usr/bin/env python3
"""Synth and test-suite benchmark: `make bench` (run from the repository root with the .venv python).

Measures, as medians of `--runs` runs:
  * the floor: an empty CDK app (one empty Stack, same cdk.json context) synthesized by the CLI, validation off;
  * the full synth as a user runs it: `cdk synth --quiet` in the repository root;
  * the whole test suite (`--skip-tests` skips it).
Then, once each, where the time goes: an in-process profile (import / construction / `app.synth()`), the same
with cdk-nag disabled, and the CLI synth with CDK's built-in CloudFormation validation turned on.

Prints a plain-text table and writes the same numbers to bench/results/latest.json (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
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
CDK = ROOT / "node_modules" / ".bin" / "cdk"
RESULTS = ROOT / "bench" / "results" / "latest.json"
FULL_OVER_FLOOR_TARGET = 5.0
TESTS_OVER_FULL_TARGET = 1.5
EMPTY_APP = '''\
"""The floor: one empty stack, nothing else."""

from aws_cdk import App, Stack

app = App()
Stack(app, "Empty")
app.synth()
'''


@dataclass
class Timing:
    """Wall-clock seconds of repeated runs of one command, and whether every run succeeded."""

    runs: list[float] = field(default_factory=list)
    ok: bool = True

    @property
    def median(self) -> float:
        """Median of the runs (seconds)."""
        return statistics.median(self.runs)


@dataclass
class Profile:
    """One in-process synth, split into phases (seconds), and the resource count of each stack."""

    import_s: float
    construct_s: float
    synth_s: float
    process_wall_s: float = 0.0
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


def run(cmd: Command, *, cwd: Path, env: dict[str, str], allow_failure: bool = False) -> tuple[float, bool]:
    """Run a command with captured output; return (seconds, succeeded).

    A failure prints the command's output and exits non-zero, unless `allow_failure` is set.
    """
    args = [str(part) for part in cmd]
    start = time.perf_counter()
    try:
        subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as error:
        elapsed = time.perf_counter() - start
        if allow_failure:
            return elapsed, False
        print(f"bench: command failed (exit {error.returncode}): {' '.join(args)}", file=sys.stderr)
        print(error.stdout, file=sys.stderr)
        print(error.stderr, file=sys.stderr)
        sys.exit(1)
    return time.perf_counter() - start, True


def repeat(runs: int, once: Callable[[], tuple[float, bool]]) -> Timing:
    """Call `once` `runs` times and collect the timings."""
    timing = Timing()
    for _ in range(runs):
        seconds, ok = once()
        timing.runs.append(seconds)
        timing.ok = timing.ok and ok
    return timing


def make_empty_app(workdir: Path) -> None:
    """Write the floor app into `workdir`: empty_app.py and a cdk.json carrying the repository's context."""
    context = json.loads((ROOT / "cdk.json").read_text(encoding="utf-8")).get("context", {})
    (workdir / "empty_app.py").write_text(EMPTY_APP, encoding="utf-8")
    cdk_json = {"app": f"{PYTHON} {workdir / 'empty_app.py'}", "context": context}
    (workdir / "cdk.json").write_text(json.dumps(cdk_json, indent=2), encoding="utf-8")


def floor_once(workdir: Path) -> tuple[float, bool]:
    """One CLI synth of the empty app, built-in validation off, into a fresh output folder."""
    outdir = workdir / "cdk.out"
    shutil.rmtree(outdir, ignore_errors=True)
    cmd = [CDK, "synth", "--quiet", "--output", outdir]
    return run(cmd, cwd=workdir, env=bench_env(CDK_VALIDATION="false"))


def full_synth_once(outdir: Path, **env: str) -> tuple[float, bool]:
    """One CLI synth of the whole app from the repository root, as `make synth` runs it, into `outdir`."""
    shutil.rmtree(outdir, ignore_errors=True)
    cmd = [CDK, "synth", "--quiet", "--output", outdir]
    return run(cmd, cwd=ROOT, env=bench_env(**env))


def tests_once() -> tuple[float, bool]:
    """One run of the whole test suite; a failing suite is timed, not fatal."""
    cmd = [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    return run(cmd, cwd=ROOT, env=bench_env(), allow_failure=True)


def count_resources(outdir: Path) -> dict[str, int]:
    """Stack name -> number of Resources, for every *.template.json in a cloud assembly."""
    counts = {}
    for path in sorted(outdir.glob("*.template.json")):
        template = json.loads(path.read_text(encoding="utf-8"))
        counts[path.name.removesuffix(".template.json")] = len(template.get("Resources", {}))
    return counts


def profile_in_child(*, nag: bool) -> Profile:
    """Run `profile_here` in a fresh python process (cold imports, like the CLI's app process) and read its result."""
    cmd = [PYTHON, Path(__file__).resolve(), "--profile-child"] + ([] if nag else ["--no-nag"])
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [str(part) for part in cmd], cwd=ROOT, env=bench_env(), check=True, capture_output=True, text=True
        )
    except subprocess.CalledProcessError as error:
        print(f"bench: in-process profile failed (exit {error.returncode})", file=sys.stderr)
        print(error.stderr, file=sys.stderr)
        sys.exit(1)
    wall = time.perf_counter() - start
    data = json.loads(done.stdout.strip().splitlines()[-1])
    data["process_wall_s"] = wall
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
        print("bench: full synth with CDK_VALIDATION=true x1 ...", file=sys.stderr)
        validated = repeat(1, lambda: full_synth_once(tmp / "validated.out", CDK_VALIDATION="true"))
    tests = None
    if not skip_tests:
        print(f"bench: test suite x{runs} ...", file=sys.stderr)
        tests = repeat(runs, tests_once)
    print("bench: in-process profile, with and without cdk-nag ...", file=sys.stderr)
    with_nag = profile_in_child(nag=True)
    without_nag = profile_in_child(nag=False)
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "runs": runs,
        "floor_s": timing_json(floor),
        "full_synth_s": timing_json(full),
        "test_suite_s": None if tests is None else timing_json(tests),
        "resources": {"total": sum(resources.values()), "per_stack": resources},
        "ratios": {
            "full_synth_over_floor": ratio(full.median, floor.median, FULL_OVER_FLOOR_TARGET),
            "test_suite_over_full_synth": None
            if tests is None
            else ratio(tests.median, full.median, TESTS_OVER_FULL_TARGET),
        },
        "breakdown": {
            "in_process": profile_json(with_nag),
            "in_process_without_cdk_nag": profile_json(without_nag),
            "cli_full_synth_with_builtin_validation_s": round(validated.runs[0], 3),
        },
    }


def timing_json(timing: Timing) -> dict[str, Any]:
    """A Timing as JSON: median, every run, success."""
    return {"median": round(timing.median, 3), "runs": [round(run, 3) for run in timing.runs], "ok": timing.ok}


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
    lines.append(f"{'measurement':<52}{'median s':>10}   runs")
    lines.append(row("empty-app floor (CLI synth, CDK_VALIDATION=false)", floor))
    lines.append(row("full synth (cdk synth --quiet, repo root)", full))
    if tests is None:
        lines.append(f"{'test suite (pytest -q)':<52}{'skipped':>10}")
    else:
        label = "test suite (pytest -q)" + ("" if tests["ok"] else " (tests failed)")
        lines.append(row(label, tests))
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
    lines += ["", *breakdown_lines(results), "", *resource_lines(results)]
    return "\n".join(lines)


def row(label: str, timing: dict[str, Any]) -> str:
    """One timing line of the table."""
    runs = " ".join(f"{value:.2f}" for value in timing["runs"])
    return f"{label:<52}{timing['median']:>10.2f}   {runs}"


def breakdown_lines(results: dict[str, Any]) -> list[str]:
    """Where the time goes: the in-process phases with and without cdk-nag, and the built-in validation's cost."""
    breakdown = results["breakdown"]
    nag, no_nag = breakdown["in_process"], breakdown["in_process_without_cdk_nag"]
    full = results["full_synth_s"]["median"]
    validated = breakdown["cli_full_synth_with_builtin_validation_s"]
    lines = [
        "where the time goes (single runs, fresh python process each)",
        f"  {'phase':<50}{'with nag':>10}{'no nag':>10}",
    ]
    for key, label in (
        ("import_s", "import aws_cdk + mlops_infra"),
        ("construct_s", "create_app() (construction)"),
        ("synth_s", "app.synth() (incl. cdk-nag when on)"),
        ("in_process_s", "in-process total"),
        ("process_wall_s", "python process wall (incl. start/exit)"),
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


def resource_lines(results: dict[str, Any]) -> list[str]:
    """Resources per stack: the CLI's full synth, and the in-process synth of the profile."""
    per_stack = results["resources"]["per_stack"]
    in_process = results["breakdown"]["in_process"]["resources"]
    lines = [
        f"resources per stack  total {results['resources']['total']} (CLI full synth)",
        f"  {'stack':<50}{'CLI':>10}{'in-proc':>10}",
    ]
    for stack, count in per_stack.items():
        lines.append(f"  {stack:<50}{count:>10}{in_process.get(stack, '-'):>10}")
    lines.append("  (the CLI turns on version reporting: one AWS::CDK::Metadata per stack, absent in-process)")
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
