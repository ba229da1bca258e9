"""`mlops-ops` itself: what every command shares (standard output closed under it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.test_cost import FIXTURE


def test_a_closed_standard_output_ends_the_command_quietly(tmp_path: Path) -> None:
    """`mlops-ops cost | head -1`: the reader is gone before the report is written; 141, as after SIGPIPE."""
    config = tmp_path / "config"
    config.mkdir()
    shutil.copy(ROOT / "config" / "dev.toml", config / "dev.toml")
    (tmp_path / "MlopsDev.template.json").write_text(json.dumps(FIXTURE), encoding="utf-8")
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("mlops-ops")),
                "cost",
                "--assembly",
                str(tmp_path),
                "--config-dir",
                str(config),
            ],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert result.returncode == 141, result.stderr
    assert result.stderr == ""
