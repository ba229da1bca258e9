"""cfn-lint over every synthesized template: zero findings beyond those ignored in .cfnlintrc.yaml."""

import pytest

from tests.conftest import Synth


@pytest.mark.background
def test_every_template_passes_cfn_lint(synth: Synth) -> None:
    for process in synth.cfn_lint:
        assert process.stdout is not None
        output = process.stdout.read()  # its stdin is closed already: communicate() would trip over it
        assert process.wait(timeout=300) == 0, f"cfn-lint found problems:\n{output}"
    linted = sorted(path for share in synth.linted for path in share)
    assert linted == sorted(synth.outdir.glob("*.template.json")), "every template, once"
    assert len(linted) >= 7, "cfn-lint must see every stack of every environment"
