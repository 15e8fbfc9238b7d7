"""Reports: the HTML report (Jinja2 + matplotlib SVG) and the table files. Presentation only.

    write_html(result, "report.html", diff=None, verify=None)
    write_tables(result, "out/", fmt="parquet")     # re-exported from nfreplay.analysis
"""

from __future__ import annotations

from ..analysis.export import write_tables
from .render import render_html, write_html

__all__ = ["write_html", "render_html", "write_tables"]
