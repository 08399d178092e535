"""Command line: parse options, call the layers, map user errors to exit code 1.

One module per job: options.py (what every command shares), plan.py (validate, plan, schema),
apply.py, state.py (init, refresh, import, force-unlock, state ...), show.py, log.py, sandbox.py.
"""

from __future__ import annotations

import os
import sys

import click

from provisioner import __version__

# provisioner uses no pydantic plugins, and looking for installed ones (every package's entry
# points) costs 25 ms of each start-up.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from provisioner.cli.apply import apply  # noqa: E402
from provisioner.cli.log import log  # noqa: E402
from provisioner.cli.plan import plan, schema, validate  # noqa: E402
from provisioner.cli.sandbox import sandbox  # noqa: E402
from provisioner.cli.show import show  # noqa: E402
from provisioner.cli.spellings import TerraformSpellings  # noqa: E402
from provisioner.cli.state import force_unlock, import_command, init, refresh, state  # noqa: E402


class ProvisionerGroup(TerraformSpellings):
    """Exit codes are 0, 1 and (plan --detailed-exitcode) 2: a usage error is an error like any
    other, exit 1, so that 2 always means "changes present" to a pipeline. Terraform's one-dash
    spellings of long options are accepted (spellings.py)."""

    def main(self, *args, **kwargs):
        try:
            return super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.exceptions.Exit as exit_:
            sys.exit(exit_.exit_code)
        except click.ClickException as error:
            error.show()
            sys.exit(1)
        except (click.Abort, KeyboardInterrupt):
            click.echo("\nInterrupted; nothing more was done.", err=True)
            sys.exit(1)


@click.group(
    cls=ProvisionerGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="provisioner")
def main() -> None:
    """Declare Thought Industries credit batches in YAML; plan, review, apply.

    \b
    Typical flow:
      provisioner init                  once: an empty state (state/default.json)
      provisioner validate manifests/
      provisioner plan manifests/
      provisioner apply manifests/
    Environment: TI_BASE_URL (https://<instance>.thoughtindustries.com), TI_API_KEY;
    PROVISIONER_STATE (a state file, or postgresql://... for a shared state).
    """


for command in (init, validate, plan, apply, refresh, import_command, show, log, force_unlock, state, schema, sandbox):
    main.add_command(command)
