"""Rewrite the template figures in README.md (Observability: size and resources per stack) from a fresh synth.

`make snapshots` runs it after the snapshots (`python -m tests.readme_figures`); tests/test_docs.py checks them.
The in-process synth writes the same bytes as `cdk synth` (tests/test_cli_context.py).
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

from mlops_infra.cdk_app import create_app, project_context

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# A row of the table: stack, size in kB, resources (tests/test_docs.py reads the figures with it too).
TEMPLATE_ROW = re.compile(r"^\| `(Mlops\w+)` \| ([\d.]+) kB \| (\d+) \|$", re.MULTILINE)


def row(stack: str, template: Path) -> str:
    resources = len(json.loads(template.read_text())["Resources"])
    return f"| `{stack}` | {template.stat().st_size / 1000:.1f} kB | {resources} |"


def main() -> int:
    with tempfile.TemporaryDirectory() as outdir:
        app, _ = create_app(context=project_context(), outdir=outdir)
        app.synth()
        templates = {path.name.removesuffix(".template.json"): path for path in Path(outdir).glob("*.template.json")}
        text = README.read_text()
        listed = [stack for stack, _, _ in TEMPLATE_ROW.findall(text)]
        if sorted(listed) != sorted(templates):
            print(f"README.md lists {sorted(listed)}, the app has {sorted(templates)}: edit the table", file=sys.stderr)
            return 1
        README.write_text(TEMPLATE_ROW.sub(lambda match: row(match.group(1), templates[match.group(1)]), text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
