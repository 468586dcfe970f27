"""The dashboard: server-rendered pages under ``/ui`` for admin keys.

Jinja2 templates (autoescaped: stored records are hostile input) and one CSS
file, all shipped in the package; no JavaScript, no build step, no CDN.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import RedirectResponse, Response

from .views import build_router

__all__ = ["install"]


def install(app: FastAPI) -> None:
    """Serve the dashboard at ``/ui`` on a server app (idempotent).

    Args:
        app: an app from :func:`logos_shift.server.create_app`.
    """
    if getattr(app.state, "ui_installed", False):
        return
    app.state.ui_installed = True
    css = resources.files(__name__).joinpath("static/ui.css").read_bytes()

    @app.get("/ui/static/ui.css", include_in_schema=False)
    def stylesheet() -> Response:
        """The dashboard's stylesheet."""
        return Response(css, media_type="text/css", headers={"Cache-Control": "max-age=3600"})

    @app.get("/ui", include_in_schema=False)
    def ui_root() -> Response:
        """``/ui`` → ``/ui/``."""
        return RedirectResponse("/ui/", status_code=307)

    app.include_router(build_router())
