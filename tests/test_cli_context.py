"""The app synthesized in-process (tests, `python app.py`) gets the same context `cdk synth` gives it.

That is what makes the tests' templates, their snapshots and the figures in the README equal the CLI's byte for byte.
The CLI passes its context in the environment variable CDK_CONTEXT_JSON: a stand-in app records it. (The offline
diff, mlops_infra/ops/diff.py, builds its synths' context with the same `cli_settings_context`.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mlops_infra.cdk_app import project_context

ROOT = Path(__file__).resolve().parent.parent
CDK = ROOT / "node_modules" / ".bin" / "cdk"


def test_project_context_is_the_context_the_cli_passes(tmp_path: Path) -> None:
    assert CDK.is_file(), f"{CDK} missing: run `make install` (npm ci)"
    record = tmp_path / "context.json"
    recorder = tmp_path / "recorder.py"
    recorder.write_text(
        f"import os, pathlib\npathlib.Path({str(record)!r}).write_text(os.environ['CDK_CONTEXT_JSON'])\n"
    )
    env = {**os.environ, "CDK_DISABLE_CLI_TELEMETRY": "true", "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    # The recorder writes no cloud assembly, so the CLI then fails: only the recorded context matters.
    run = subprocess.run(
        [str(CDK), "synth", "--app", f"{sys.executable} {recorder}", "-o", str(tmp_path / "cdk.out")],
        cwd=ROOT,  # cdk.json: its context and settings
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert record.is_file(), f"the CLI did not run the app:\n{run.stdout}\n{run.stderr}"
    assert json.loads(record.read_text()) == project_context()
