"""`nfreplay diff`: not built yet (see the open issues)."""

from __future__ import annotations

from ..errors import NfreplayError
from ._app import app


@app.command("diff", hidden=True)
def diff_command():
    """Not built yet."""
    raise NfreplayError("'diff' is not available in this build yet")
