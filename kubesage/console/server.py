"""``kubesage ui``: the console served by uvicorn.

It binds 127.0.0.1 unless told otherwise, and refuses another host unless a token is set
(``$KUBESAGE_CONSOLE_TOKEN``, or the file named by ``console_token_file:`` in the local config):
beyond loopback every request needs the token. On loopback, pages need none and actions (POSTs)
need the token, which is made up at start when none is set and printed in the login link.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Callable
from typing import Any

from kubesage.console.app import Console, create_app, secret_values
from kubesage.dsl.errors import KubesageError
from kubesage.runs.workspace import Workspace

TOKEN_ENV = "KUBESAGE_CONSOLE_TOKEN"
DEFAULT_PORT = 8484


class ConsoleError(KubesageError):
    """The console cannot start as asked (another host without a token, an unreadable token)."""


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def configured_token(token_file: str = "") -> str:
    """The token set for the console: ``$KUBESAGE_CONSOLE_TOKEN``, else the content of
    ``token_file``; "" when none is."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    if token_file:
        try:
            with open(os.path.expanduser(token_file)) as f:
                token = f.read().strip()
        except OSError as e:
            raise ConsoleError(f"console_token_file {token_file}: {e.strerror}; create it with "
                               "one line, the token") from None
        if len(token) < 16:
            raise ConsoleError(f"console_token_file {token_file}: the token is shorter than 16 "
                               "characters; use a longer one (e.g. 'openssl rand -hex 24')")
        return token
    return ""


def console_for(workspace: Workspace, host: str, config: str | None,
                token_file: str = "") -> Console:
    """The console of ``workspace`` bound to ``host``: its token (set, or made up on
    loopback), refused beyond loopback without one."""
    token = configured_token(token_file)
    public = not loopback(host)
    if public and not token:
        raise ConsoleError(f"--host {host} serves the console beyond this machine, which needs a "
                           f"token: set {TOKEN_ENV} or console_token_file: in the local config "
                           "(or keep the default --host 127.0.0.1)")
    token = token or secrets.token_urlsafe(24)
    local = workspace.local
    return Console(workspace=workspace, token=token, config=config, public=public,
                   secrets=secret_values(token, local.webhooks, local.store_url))


def serve(console: Console, host: str, port: int, say: Callable[[str], None],
          ready: Callable[[Any], None] | None = None) -> None:
    """Serve ``console`` until stopped (SIGINT, SIGTERM)."""
    import uvicorn

    app = create_app(console)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    say(f"kubesage console on http://{shown}:{port}/  (store: {console.workspace.store.location})")
    say(f"actions (rerun, cancel) need the token; log in with "
        f"http://{shown}:{port}/login?token={console.token}")
    if ready is not None:
        ready(server)
    server.run()
