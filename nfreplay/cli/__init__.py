"""nfreplay command line. One module per command; each registers itself on `app`.

`main()` is the console entry point: a NfreplayError (bad input, unsupported feature) becomes one
line on stderr and exit code 1, never a traceback; usage errors exit 2 (Typer/Click).
"""

from __future__ import annotations

import sys

from . import check, diff, explain, info, run, verify  # noqa: F401  (registers the commands)
from ._app import app

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script passes it to sys.exit)."""
    from ..errors import NfreplayError

    try:
        app(args=argv, standalone_mode=True)
    except NfreplayError as e:
        sys.stderr.write(f"nfreplay: error: {e}\n")
        return 1
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0
