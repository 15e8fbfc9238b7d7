"""nfreplay command line. One module per command; each registers itself on `app`.

`main()` is the console entry point: a NfreplayError (bad input, unsupported feature) becomes one
line on stderr and exit code 1, never a traceback; usage errors exit 2 (Typer/Click).
"""

from __future__ import annotations

import os
import sys

# The CLI does no linear algebra; numpy's OpenBLAS would start a thread per CPU at import, which spins
# ~0.13 s of CPU right away (measured 2026-11-27: import numpy 0.22 s CPU, 0.09 s with one BLAS thread).
# Only when numpy is not loaded yet (the variable is read at its import) and the user did not choose.
if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

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
