"""`nfreplay explain`: not built yet (see the open issues)."""

from __future__ import annotations

from ..errors import NfreplayError
from ._app import app


@app.command("explain", hidden=True)
def explain_command():
    """Not built yet."""
    raise NfreplayError("'explain' is not available in this build yet")
