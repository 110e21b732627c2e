"""Dashboard pages as HTML: one Jinja environment over the templates shipped in this package.

Pages are thin shells: the server renders the layout, navigation and what the user may do;
each page's script then fetches the JSON API and draws tables and charts in the browser.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable

from jinja2 import Environment, PackageLoader, StrictUndefined

# (route and template name, label); the order of the navigation bar.
PAGES: tuple[tuple[str, str], ...] = (
    ("overview", "Overview"),
    ("agent", "Agent"),
    ("decisions", "Decisions"),
    ("backtests", "Backtests"),
    ("optimization", "Optimization"),
    ("analysis", "Analysis"),
    ("health", "Health"),
)
CHART_LIBRARY = "vendor/lightweight-charts.standalone.production.js"


def static_root() -> Traversable:
    """The package's ``static`` directory, served at ``/static``."""
    return files("ffe.web").joinpath("static")


@cache
def static_url(path: str) -> str:
    """``/static/<path>?v=<content hash>``: browsers may cache it for good, since a changed file
    gets a new URL. A missing file raises, so a typo in a template fails its test."""
    digest = hashlib.sha256(static_root().joinpath(path).read_bytes()).hexdigest()[:12]
    return f"/static/{path}?v={digest}"


@cache
def environment() -> Environment:
    """The one Jinja environment: autoescaped, and strict about undefined names."""
    env = Environment(
        loader=PackageLoader("ffe.web", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(static=static_url, nav_pages=PAGES, chart_library=CHART_LIBRARY)
    return env


def render(template: str, **context: object) -> str:
    """The HTML of ``template`` with ``context`` (pages take ``user`` and ``page``)."""
    return environment().get_template(template).render(**context)
