"""`mlops-ops diff`: what a change does to the stacks, offline, as one Markdown report for the pull request.

The base ref is checked out in a temporary `git worktree` and synthesized next to the working tree (two
processes at once, each tree importing its own code, cdk.json context passed as `cdk synth` passes it).
Every stack whose template differs goes through `cdk diff --app <new assembly> --template <base template>`,
which needs no AWS credentials; its per-resource markers (`replace`, `may be replaced`, `destroy`,
`orphan`) decide replacements, so no table of replacement-requiring properties is kept here. A stateful
resource that would be replaced or deleted fails the command (DestructiveChange) unless --allow-destroy.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_infra.cli_context import cli_settings_context
from mlops_infra.config import ConfigError, environment_names, load_config
from mlops_infra.ops.changes import ResourceChange, StackDiff, Status, apply_markers, compare_templates, parse_cdk_diff
from mlops_infra.ops.cost import compare as compare_costs
from mlops_infra.ops.cost import cost_of
from mlops_infra.ops.diff_report import render
from mlops_infra.ops.errors import DestructiveChange, OpsError

SYNTH_TIMEOUT_SECONDS = 900
CDK_DIFF_TIMEOUT_SECONDS = 300
TAIL_LINES = 25


class DiffFailed(OpsError):
    """The diff could not be made: unknown ref, no CDK app, a synth or `cdk diff` that failed."""


@dataclass(frozen=True)
class Options:
    repo: Path
    base: str
    output: Path | None
    allow_destroy: bool
    stacks: tuple[str, ...]
    cdk: str | None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "diff",
        help="offline diff of the CDK stacks against a base git ref, as a Markdown report",
        description=(
            "Synthesize the base ref (in a temporary git worktree) and the working tree, run `cdk diff --template` "
            "per changed stack, and write one Markdown report. Exits 8 when a stateful resource (database, bucket, "
            "repository, key, log group, VPC, table, vault, secret) would be replaced or deleted."
        ),
    )
    parser.add_argument("--base", required=True, help="git ref to compare against, e.g. origin/main or HEAD~1")
    parser.add_argument("--repo", default=".", help="folder of the CDK app (its cdk.json) in a git repository")
    parser.add_argument("--output", help="write the report to this file (default: standard output)")
    parser.add_argument(
        "--allow-destroy",
        action="store_true",
        help="exit 0 even when stateful resources would be replaced or deleted (the report still flags them)",
    )
    parser.add_argument("--stacks", nargs="+", default=[], metavar="STACK", help="only these stacks (glob patterns)")
    parser.add_argument("--cdk", help="the CDK CLI (default: <repo>/node_modules/.bin/cdk, else cdk on PATH)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    options = Options(
        repo=Path(args.repo),
        base=args.base,
        output=Path(args.output) if args.output else None,
        allow_destroy=args.allow_destroy,
        stacks=tuple(args.stacks),
        cdk=args.cdk,
    )
    started = time.monotonic()
    diffs, header, cost = compute(options)
    destructive = [(diff.name, change) for diff in diffs for change in diff.destructive]
    report = render(diffs, header=header, destructive=destructive, allow_destroy=options.allow_destroy, cost=cost)
    report += f"\n_Made by `mlops-ops diff` in {time.monotonic() - started:.1f} s._\n"
    if options.output is None:
        sys.stdout.write(report)
    else:
        try:
            options.output.write_text(report, encoding="utf-8")
        except OSError as error:
            raise DiffFailed(f"cannot write the report to {options.output}: {error.strerror}") from None
        changed = [diff.name for diff in diffs if diff.status != "unchanged"]
        print(f"{options.output}: {len(changed)} of {len(diffs)} stacks differ from {options.base}")
    if destructive and not options.allow_destroy:
        names = "; ".join(
            f"{stack}/{change.logical_id} ({change.type}, {change.verb()})" for stack, change in destructive
        )
        where = f" (see {options.output})" if options.output else ""
        raise DestructiveChange(
            f"{len(destructive)} stateful resource(s) would be replaced or deleted against {options.base}: "
            f"{names}{where}. Keep their logical IDs, or pass --allow-destroy if the data loss is planned."
        )
    return 0


# ---------------------------------------------------------------------------------------------- orchestration


def compute(options: Options) -> tuple[list[StackDiff], str, list[str]]:
    """Synthesize both trees, compare every stack; returns the stack diffs, the report's header lines and the
    monthly cost change per environment (Markdown lines; none for an app without a config/ folder)."""
    toplevel, app_dir = _locate(options.repo)
    base_commit = _resolve_ref(toplevel, options.base)
    cdk = _cdk_cli(app_dir, options.cdk)
    python = _python(app_dir)
    with tempfile.TemporaryDirectory(prefix="mlops-ops-diff-") as scratch:
        root = Path(scratch)
        base_out, new_out = root / "base.out", root / "new.out"
        with _worktree(toplevel, base_commit, root / "base-tree") as base_tree:
            base_app_dir = base_tree / app_dir.relative_to(toplevel)
            _synthesize_both(
                [(f"{options.base} ({base_commit[:12]})", base_app_dir, base_out), ("working tree", app_dir, new_out)],
                python,
            )
            cost = cost_change(base_app_dir / "config", base_out, app_dir / "config", new_out)
        base_stacks, new_stacks = _stacks(base_out), _stacks(new_out)
        names = _select(sorted(base_stacks.keys() | new_stacks.keys()), options.stacks)
        empty = root / "empty.template.json"
        empty.write_text("{}", encoding="utf-8")
        diffs = [_compare(name, base_stacks.get(name), new_stacks.get(name)) for name in names]
        to_run = [diff for diff in diffs if diff.status in ("changed", "new")]
        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            raws = list(
                pool.map(
                    lambda diff: _cdk_diff(
                        cdk, new_out, _template_or(base_stacks.get(diff.name), empty), diff.name, root
                    ),
                    to_run,
                )
            )
        for diff, raw in zip(to_run, raws, strict=True):
            diff.raw = raw
            apply_markers(diff, parse_cdk_diff(raw))
    header = _header(toplevel, app_dir, options.base, base_commit)
    return diffs, header, cost


def cost_change(base_config: Path, base_out: Path, new_config: Path, new_out: Path) -> list[str]:
    """The monthly cost estimate of each environment before and after (`mlops-ops cost`), as Markdown lines.

    The estimate informs the review; it never fails the diff: what cannot be estimated is said instead.
    """
    if not new_config.is_dir():
        return []
    lines = ["## Monthly cost", ""]
    for name in environment_names(new_config):
        try:
            head = cost_of(new_out, load_config(name, new_config))
        except (ConfigError, OpsError) as error:
            lines.append(f"- **{name}**: no estimate ({str(error).splitlines()[0]})")
            continue
        try:
            base = cost_of(base_out, load_config(name, base_config))
        except (ConfigError, OpsError):
            lines.append(f"- **{name}**: new or not estimable at the base; now {head.total:,.2f} {head.currency}")
            continue
        lines.append(compare_costs(base, head))
    return lines


def _locate(repo: Path) -> tuple[Path, Path]:
    app_dir = repo.resolve()
    if not (app_dir / "cdk.json").is_file():
        raise DiffFailed(f"{repo}: no cdk.json there; pass --repo the folder of the CDK app")
    result = _git(app_dir, "rev-parse", "--show-toplevel", check=False)
    if result.returncode != 0:
        raise DiffFailed(f"{repo} is not in a git repository: {result.stderr.strip()}")
    return Path(result.stdout.strip()).resolve(), app_dir


def _resolve_ref(toplevel: Path, ref: str) -> str:
    result = _git(toplevel, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", check=False)
    if result.returncode != 0 or not result.stdout.strip():
        raise DiffFailed(
            f"unknown git ref {ref!r} in {toplevel}: no such branch, tag or commit (for origin/main, `git fetch` first)"
        )
    return result.stdout.strip()


def _cdk_cli(app_dir: Path, given: str | None) -> str:
    if given:
        if shutil.which(given) is None:
            raise DiffFailed(f"--cdk {given}: not an executable")
        return given
    for candidate in (app_dir / "node_modules" / ".bin" / "cdk", Path.cwd() / "node_modules" / ".bin" / "cdk"):
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("cdk")
    if found is None:
        raise DiffFailed(f"the CDK CLI was not found: run `npm ci` in {app_dir} or pass --cdk PATH")
    return found


def _python(app_dir: Path) -> str:
    venv = app_dir / ".venv" / "bin" / "python"
    return str(venv) if venv.is_file() else sys.executable


def _git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise DiffFailed(f"git {' '.join(args)} failed in {cwd}: {_tail(result.stderr or result.stdout)}")
    return result


@contextmanager
def _worktree(toplevel: Path, commit: str, path: Path) -> Iterator[Path]:
    """A detached checkout of `commit`, removed again whatever happens."""
    _git(toplevel, "worktree", "add", "--detach", str(path), commit)
    try:
        yield path
    finally:
        if _git(toplevel, "worktree", "remove", "--force", str(path), check=False).returncode != 0:
            shutil.rmtree(path, ignore_errors=True)
            _git(toplevel, "worktree", "prune", check=False)


def _header(toplevel: Path, app_dir: Path, base: str, base_commit: str) -> str:
    subject = _git(toplevel, "log", "-1", "--format=%s", base_commit, check=False).stdout.strip()
    head = _git(toplevel, "rev-parse", "--short=12", "HEAD", check=False).stdout.strip() or "(no commit)"
    dirty = _git(toplevel, "status", "--porcelain", "--", str(app_dir), check=False).stdout.strip()
    state = " with uncommitted changes" if dirty else ""
    return (
        f"Base: `{base}` = `{base_commit[:12]}` {subject}  \n"
        f"New: the working tree of `{app_dir}` (HEAD `{head}`{state})  \n"
        "Both synthesized offline with the context of their own cdk.json; resources compared by logical ID, "
        "replacements as `cdk diff` marks them."
    )


# ---------------------------------------------------------------------------------------------- synthesis


@dataclass
class _Synth:
    label: str
    app_dir: Path
    outdir: Path
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path


def _synthesize_both(trees: Sequence[tuple[str, Path, Path]], python: str) -> None:
    """Run each tree's app at once; the first failure stops the others and raises with its stderr."""
    running: list[_Synth] = []
    try:
        for label, app_dir, outdir in trees:
            running.append(_start_synth(label, app_dir, outdir, python))
        deadline = time.monotonic() + SYNTH_TIMEOUT_SECONDS
        pending = list(running)
        while pending:
            for synth in list(pending):
                code = synth.process.poll()
                if code is None:
                    continue
                pending.remove(synth)
                if code != 0:
                    output = synth.stderr.read_text(errors="replace") or synth.stdout.read_text(errors="replace")
                    raise DiffFailed(
                        f"synthesizing {synth.label} failed (exit {code}) in {synth.app_dir}:\n{_tail(output)}"
                    )
                _check_assembly(synth)
            if pending and time.monotonic() > deadline:
                raise DiffFailed(f"synthesizing {pending[0].label} took more than {SYNTH_TIMEOUT_SECONDS} s")
            time.sleep(0.05)
    finally:
        for synth in running:
            _stop(synth.process)


def _start_synth(label: str, app_dir: Path, outdir: Path, python: str) -> _Synth:
    command = _app_command(app_dir, python)
    outdir.mkdir(parents=True)
    env = {key: value for key, value in os.environ.items() if key not in _SYNTH_ENV_DROPPED}
    env.update(
        CDK_OUTDIR=str(outdir),
        CDK_CONTEXT_JSON=json.dumps(_context(app_dir)),
        PYTHONPATH=os.pathsep.join([str(app_dir), *filter(None, [os.environ.get("PYTHONPATH")])]),
        CDK_DISABLE_CLI_TELEMETRY="true",
        # aws-cdk-lib's built-in template validation costs ~4.5 s a synth and leaves the templates unchanged.
        CDK_VALIDATION="false",
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=env.get("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20"),
    )
    stdout, stderr = outdir.with_suffix(".stdout"), outdir.with_suffix(".stderr")
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            command, cwd=app_dir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
        )
    return _Synth(label, app_dir, outdir, process, stdout, stderr)


# A config folder or context from the caller's shell would make both trees synthesize the same settings.
_SYNTH_ENV_DROPPED = frozenset({"MLOPS_CONFIG_DIR", "CDK_CONTEXT_JSON", "CONTEXT_OVERFLOW_LOCATION_ENV", "CDK_OUTDIR"})


def _app_command(app_dir: Path, python: str) -> list[str]:
    """cdk.json's `app`, with its Python interpreter swapped for ours (a worktree has no .venv)."""
    app = _cdk_json(app_dir).get("app")
    if not isinstance(app, str) or not app.strip():
        raise DiffFailed(f"{app_dir / 'cdk.json'}: no `app` command")
    command = shlex.split(app)
    if re.fullmatch(r"python(3(\.\d+)?)?", Path(command[0]).name):
        command[0] = python
    return command


def _cdk_json(app_dir: Path) -> dict[str, Any]:
    path = app_dir / "cdk.json"
    if not path.is_file():
        raise DiffFailed(f"{path}: not found (the base ref has no CDK app there)")
    return _read_json(path)


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file; unreadable or malformed: DiffFailed naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise DiffFailed(f"{path}: cannot read it ({error.strerror or error})") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise DiffFailed(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise DiffFailed(f"{path}: not a JSON object")
    return data


def _context(app_dir: Path) -> dict[str, Any]:
    """The context `cdk synth` gives the app: cdk.json's, cdk.context.json's, and the CLI's own settings."""
    settings = _cdk_json(app_dir)
    context: dict[str, Any] = dict(settings.get("context", {}))
    context_file = app_dir / "cdk.context.json"
    if context_file.is_file():
        context.update(_read_json(context_file))
    context.update(cli_settings_context(settings))
    return context


def _check_assembly(synth: _Synth) -> None:
    manifest = synth.outdir / "manifest.json"
    if not manifest.is_file():
        raise DiffFailed(f"synthesizing {synth.label} wrote no cloud assembly (no {manifest.name}) in {synth.outdir}")
    missing = _read_json(manifest).get("missing")
    if missing:
        keys = ", ".join(sorted(str(entry.get("key")) for entry in missing))
        raise DiffFailed(
            f"{synth.label} needs context looked up in AWS ({keys}); commit cdk.context.json (or pin the values) "
            "so it synthesizes offline"
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _tail(text: str) -> str:
    lines = text.rstrip().splitlines()
    shown = lines[-TAIL_LINES:]
    prefix = [f"... ({len(lines) - len(shown)} lines before)"] if len(lines) > len(shown) else []
    return "\n".join("  " + line for line in [*prefix, *shown])


# ---------------------------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class _Stack:
    name: str  # the CLI's selector: the stack's hierarchical ID
    template: Path


def _stacks(outdir: Path, prefix: Path = Path()) -> dict[str, _Stack]:
    """Every CloudFormation stack of an assembly, nested assemblies (stages) included."""
    manifest = _read_json(outdir / prefix / "manifest.json")
    found: dict[str, _Stack] = {}
    for artifact_id, artifact in manifest.get("artifacts", {}).items():
        properties = artifact.get("properties", {})
        if artifact.get("type") == "aws:cloudformation:stack":
            name = artifact.get("displayName", artifact_id)
            found[name] = _Stack(name, outdir / prefix / properties["templateFile"])
        elif artifact.get("type") == "cdk:cloud-assembly":
            found.update(_stacks(outdir, prefix / properties["directoryName"]))
    return found


def _select(names: list[str], patterns: Sequence[str]) -> list[str]:
    if not patterns:
        return names
    unmatched = [pattern for pattern in patterns if not fnmatch.filter(names, pattern)]
    if unmatched:
        raise DiffFailed(f"--stacks {' '.join(unmatched)} matches no stack; the stacks are: {', '.join(names)}")
    return [name for name in names if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)]


def _compare(name: str, base: _Stack | None, new: _Stack | None) -> StackDiff:
    base_template = _read_json(base.template) if base else {}
    new_template = _read_json(new.template) if new else {}
    status: Status = "new" if base is None else "removed" if new is None else "changed"
    changes, sections = compare_templates(base_template, new_template)
    if status == "removed":
        changes = [
            ResourceChange(
                change.logical_id, change.type, "removed", "stack removed from the app: deleted by `cdk destroy`"
            )
            for change in changes
        ]
    if status == "changed" and not changes and not sections:
        status = "unchanged"
    return StackDiff(name, status, changes, sections)


# ---------------------------------------------------------------------------------------------- cdk diff


def _template_or(stack: _Stack | None, empty: Path) -> Path:
    return stack.template if stack else empty


def _cdk_diff(cdk: str, new_out: Path, template: Path, stack: str, cwd: Path) -> str:
    """`cdk diff` of one stack of the new assembly against a template file: offline, no credentials needed."""
    command = [
        cdk,
        "diff",
        "--app",
        str(new_out),
        "--template",
        str(template),
        stack,
        "--exclusively",
        "--no-color",
        "--no-notices",
    ]
    env = dict(os.environ, CDK_DISABLE_CLI_TELEMETRY="true", AWS_EC2_METADATA_DISABLED="true")
    env.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    env.pop("FORCE_COLOR", None)
    try:
        result = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=CDK_DIFF_TIMEOUT_SECONDS, check=False
        )
    except FileNotFoundError:
        raise DiffFailed(f"the CDK CLI {cdk} could not be started") from None
    except subprocess.TimeoutExpired:
        raise DiffFailed(f"`cdk diff {stack}` took more than {CDK_DIFF_TIMEOUT_SECONDS} s") from None
    output = (result.stdout + result.stderr).strip("\n")
    if result.returncode != 0:
        raise DiffFailed(f"`cdk diff {stack}` failed (exit {result.returncode}):\n{_tail(output)}")
    return output
