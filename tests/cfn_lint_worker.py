"""A cfn-lint process that starts before the templates exist.

conftest.py starts it at the beginning of the test session, so cfn-lint's imports (about a
second) overlap the synth; it then reads the template paths, one per line, from stdin and
runs cfn-lint on them as the `cfn-lint` command would (same options, same exit code).
"""

import sys

from cfnlint.runner import main

if __name__ == "__main__":
    paths = [line for line in sys.stdin.read().splitlines() if line]
    sys.argv = ["cfn-lint", "--", *paths]
    main()
