"""`nfreplay check`: not built yet (see the open issues)."""

from __future__ import annotations

from ..errors import NfreplayError
from ._app import app


@app.command("check", hidden=True)
def check_command():
    """Not built yet."""
    raise NfreplayError("'check' is not available in this build yet")
