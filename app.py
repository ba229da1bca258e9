#!/usr/bin/env python3
"""CDK entry point (see cdk.json): one `Mlops<Env>` stack, and the stacks it needs, per config file.

The config is validated before the CDK is even imported, so a bad value is reported in a
fraction of a second, as one message, with exit code 2 and no template written.
"""

import os
import sys

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
# No pydantic plugins are used; not scanning the installed packages for them saves ~20 ms a run.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from mlops_infra.config import ConfigError, load_all


def main() -> int:
    try:
        configs = load_all()
        from mlops_infra.cdk_app import create_app

        app, _ = create_app(configs=configs)
    except ConfigError as error:
        print(f"mlops-infra: invalid configuration\n{error}", file=sys.stderr)
        return 2
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
