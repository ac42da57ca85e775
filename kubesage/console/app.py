"""The console's web application: FastAPI, pages rendered on the server with Jinja2, live parts
streamed as server-sent events and swapped in by htmx.

``create_app(console)`` builds it around one ``Console``: the workspace (its run store and
artifact store, opened once), the token that actions need, and the values that must never be
shown. Every page is scrubbed of those values as it renders; every response carries headers
that keep it from being framed, sniffed or running script from elsewhere.
"""

from __future__ import annotations

import hmac
import os
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubesage.runs.workspace import Workspace

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.responses import Response

HERE = os.path.dirname(os.path.abspath(__file__))
COOKIE = "kubesage_console"
TOKEN_HEADER = "X-Kubesage-Token"
SHOWN_INSTEAD = "********"
# environment variables whose values are secrets wherever they appear
SECRET_NAMES = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|PRIVATE|_KEY$|^PGPASS|WEBHOOK",
                          re.IGNORECASE)
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self' 'unsafe-inline'; script-src 'self'; "
                               "object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer"}


@dataclass
class Console:
    """What the console serves: the workspace, the actions' token, who may read (``public``:
    bound beyond loopback, so every request needs the token) and the secret values."""

    workspace: Workspace
    token: str
    config: str | None = None  # the local config the console was started with (for actions)
    public: bool = False
    poll_s: float = 1.0  # how often live pages read the store
    secrets: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def allowed(self, given: str) -> bool:
        return bool(self.token) and bool(given) and hmac.compare_digest(given.encode(),
                                                                       self.token.encode())

    def scrub(self, text: str) -> str:
        """``text`` with every secret value replaced."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, SHOWN_INSTEAD)
        return text


def secret_values(console_token: str, webhooks: list[str], store_url: str) -> list[str]:
    """Values that are never shown: secret-looking environment variables, webhook URLs, the
    store URL's password and the console's own token (longest first, so none is left half)."""
    from urllib.parse import urlsplit

    found = {v for k, v in os.environ.items() if SECRET_NAMES.search(k) and len(v) >= 4}
    found.update(w for w in webhooks if w)
    password = urlsplit(store_url).password if "://" in store_url else None
    if password:
        found.add(password)
    if console_token:
        found.add(console_token)
    return sorted(found, key=len, reverse=True)


def token_of(request: Request) -> str:
    """The token a request carries: its header, its cookie, or ``?token=``."""
    return (request.headers.get(TOKEN_HEADER) or request.cookies.get(COOKIE)
            or request.query_params.get("token") or "")


def create_app(console: Console) -> FastAPI:
    """The console's application."""
    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from kubesage import __version__
    from kubesage.console import actions, files, live, pages
    from kubesage.console.render import templates

    app = FastAPI(title="kubesage console", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.console = console
    app.state.templates = templates(console)
    app.mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static")
    for module in (pages, live, files, actions):
        app.include_router(module.router)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        if console.public and not request.url.path.startswith(("/static/", "/login")) \
                and not console.allowed(token_of(request)):
            response = error_page(request, 401, "This console needs its token: open the link it "
                                  "printed when it started (…/login?token=…).")
        else:
            response = await call_next(request)
        for key, value in HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_page(request, exc.status_code, str(exc.detail))

    return app


def error_page(request: Request, status: int, message: str) -> Response:
    """A page that says what went wrong, with the status code it means."""
    titles = {400: "Bad request", 401: "Token needed", 403: "Refused", 404: "Not found",
              409: "Not now"}
    return request.app.state.templates.TemplateResponse(
        request, "error.html", {"status": status, "title": titles.get(status, "Error"),
                                "message": message}, status_code=status)
