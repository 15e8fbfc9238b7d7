"""`nfreplay run`: not built yet (see the open issues)."""

from __future__ import annotations

from ..errors import NfreplayError
from ._app import app


@app.command("run", hidden=True)
def run_command():
    """Not built yet."""
    raise NfreplayError("'run' is not available in this build yet")
