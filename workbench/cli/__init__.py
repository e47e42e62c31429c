"""The ``workbench`` command line.

Every command resolves the workspace, calls the engine, and prints. Errors the user can fix
(:class:`engine.errors.WorkbenchError`) become one line on stderr and exit code 1; anything else
is a bug and keeps its traceback. One module per group of commands; importing them registers
their commands on :data:`app`.
"""

from __future__ import annotations

import sys

from workbench.cli import data, demo, jobs, review, runs  # noqa: F401  (register the commands)
from workbench.cli.common import app


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # `workbench ... | head`
        sys.stderr.close()


__all__ = ["app", "main"]
