"""Security headers on every answer: ``X-Content-Type-Options: nosniff`` (a JSON answer is never
run as a script or page), ``Referrer-Policy: no-referrer``, a Content-Security-Policy that
allows nothing unless the answer brings its own (the dashboard pages and ``/docs`` do), and
``Strict-Transport-Security`` when the client came over TLS, directly or through a trusted
proxy that says so in ``X-Forwarded-Proto``."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ffe.api.clients import TrustedProxies

# For JSON and anything else that is no page: nothing may load, nothing may frame it.
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# A stored run's HTML report: the page carries its charts' code inline (plotly), loads nothing
# from elsewhere, and the dashboard shows it in a frame of its own origin. Sandboxed, so that
# script runs in an origin of its own: it can draw the charts, never call the API as the user.
REPORT_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'; "
    "sandbox allow-scripts"
)
HSTS = "max-age=31536000"  # a year; no includeSubDomains: other hosts are not ours to decide


class SecurityHeaders:
    """Add the headers above to every HTTP answer that does not set them itself."""

    def __init__(self, app: ASGIApp, proxies: TrustedProxies) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = self.proxies.https(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                headers.setdefault("x-content-type-options", "nosniff")
                headers.setdefault("referrer-policy", "no-referrer")
                headers.setdefault("content-security-policy", DEFAULT_CSP)
                if https:
                    headers.setdefault("strict-transport-security", HSTS)
            await send(message)

        await self.app(scope, receive, send_with_headers)
