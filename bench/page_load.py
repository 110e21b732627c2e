"""The dashboard's first load, timed: ``/overview`` with a session cookie, then every
``/static/`` asset the page references, and the modules and CSS URLs those reference in turn,
one after another over one keep-alive connection (a browser fetches them in parallel, so this
is the slower bound). The page's own API calls are not included."""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

DASHBOARD_TARGET_MS = 1000.0
PAGE_TIMEOUT_S = 10.0
PAGE = "/overview"


_REFERENCE = {
    ".html": re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']"""),
    ".js": re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*)["']([^"']+\.m?js[^"']*)["']"""),
    ".css": re.compile(r"""url\(\s*["']?([^"')]+)["']?\s*\)"""),
}


def references(page: str, kind: str, body: str) -> list[str]:
    """The ``/static/`` paths (with query) that ``body``, served at ``page``, refers to."""
    found = []
    for ref in _REFERENCE[kind].findall(body):
        parts = urlsplit(urljoin(page, ref))
        if not parts.netloc and parts.path.startswith("/static/"):
            found.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    return found


def _load_page(base: str, cookies: httpx.Cookies) -> dict[str, Any]:
    """One first load of the page and its assets on a new keep-alive connection."""
    with httpx.Client(base_url=base, cookies=cookies, timeout=PAGE_TIMEOUT_S) as client:
        started = time.perf_counter()
        page = client.get(PAGE)
        if page.status_code != 200:
            return {"reason": f"{PAGE} answered {page.status_code}"}
        queue = references(PAGE, ".html", page.text)
        seen, failed, size = set(queue), [], len(page.content)
        while queue:
            path = queue.pop(0)
            asset = client.get(path)
            size += len(asset.content)
            if asset.status_code != 200:
                failed.append(f"{path} {asset.status_code}")
            elif (kind := Path(urlsplit(path).path).suffix) in _REFERENCE:
                new = [r for r in references(path, kind, asset.text) if r not in seen]
                seen.update(new)
                queue += new
        elapsed = (time.perf_counter() - started) * 1e3
    return {"ms": elapsed, "assets": sorted(seen), "failed": failed, "bytes": size}


def first_load(base: str, login: tuple[str, str], repeats: int) -> dict[str, Any]:
    """The first load of the dashboard after logging in as ``login`` (user, password), and the
    median of ``repeats`` more; ``{"measured": False, "reason": ...}`` when the page is not
    there (yet), ``passed`` False with a reason when it timed out."""
    try:
        session = httpx.post(
            f"{base}/api/v1/auth/login",
            json={"username": login[0], "password": login[1]},
            timeout=PAGE_TIMEOUT_S,
        )
        if session.status_code != 200:
            return {"measured": False, "reason": f"login answered {session.status_code}"}
        loads = [_load_page(base, session.cookies) for _ in range(1 + repeats)]
    except httpx.TimeoutException as exc:
        reason = f"timed out ({type(exc).__name__}) after {PAGE_TIMEOUT_S:.0f} s"
        return {"measured": True, "passed": False, "first_ms": None, "reason": reason}
    except httpx.HTTPError as exc:
        return {"measured": False, "reason": f"{type(exc).__name__}: {exc}"}
    first = loads[0]
    if "reason" in first:
        return {"measured": False, "reason": first["reason"]}
    return {
        "measured": True,
        "first_ms": first["ms"],
        "repeat_median_ms": statistics.median(load["ms"] for load in loads[1:]),
        "assets": first["assets"],
        "failed": first["failed"],
        "bytes": first["bytes"],
        "target_ms": DASHBOARD_TARGET_MS,
        "passed": first["ms"] < DASHBOARD_TARGET_MS and not first["failed"],
    }
