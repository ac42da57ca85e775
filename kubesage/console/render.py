"""The Jinja2 environment of the console's templates: HTML-escaped everywhere, every value
scrubbed of secrets as it is written, and a few filters the pages share."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from fastapi.templating import Jinja2Templates

    from kubesage.console.app import Console

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


def size(n: int | float | None) -> str:
    """``12.3 MB``, ``512 B``."""
    if n is None:
        return ""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def number(value: Any) -> str:
    """A metric for people: 4 significant digits, integers as they are."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.4g}"


def environment(console: Console) -> Any:
    """The Jinja2 environment: autoescape on, ``finalize`` scrubbing every written value."""
    import jinja2
    from markupsafe import Markup

    def finalize(value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, Markup):
            return Markup(console.scrub(str(value)))
        return console.scrub(str(value)) if isinstance(value, str) else value

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             finalize=finalize, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(size=size, number=number, url=lambda v: quote(str(v), safe=""),
                       pretty=lambda v: json.dumps(v, indent=2, sort_keys=True, default=str),
                       short=lambda v, n=12: str(v)[:n])
    return env


def templates(console: Console) -> Jinja2Templates:
    """Starlette's template responses over ``environment``."""
    from fastapi.templating import Jinja2Templates

    return Jinja2Templates(env=environment(console))


def fragment(request: Any, name: str, context: dict[str, Any]) -> str:
    """A template rendered to a string (a live update's HTML)."""
    env = request.app.state.templates.env
    return str(env.get_template(name).render({"request": request, **context}))
