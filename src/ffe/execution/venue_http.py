"""What the venue adapters that speak HTTP share: an attempt worth repeating, the wait a
venue asks for, and reading its answers with errors that say which answer was malformed."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from ffe.domain.errors import BrokerError

MAX_RETRY_AFTER_S = 60.0  # a longer Retry-After is capped: the agent's loop must not stall


class RetryableError(Exception):
    """One attempt failed in a way that another attempt may not."""

    def __init__(self, failure: str, retry_after: float | None = None) -> None:
        super().__init__(failure)
        self.failure = failure
        self.retry_after = retry_after


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header given in seconds (HTTP dates are ignored), capped at
    ``MAX_RETRY_AFTER_S``."""
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else None


@contextlib.contextmanager
def reading(venue: str, api: str, what: str) -> Iterator[None]:
    """Turn a missing or malformed field in ``venue``'s answer to ``what`` into a BrokerError
    naming the ``api`` it should follow."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BrokerError(
            f"{venue}'s answer to {what} is not shaped as the {api} describes "
            f"({type(exc).__name__}: {exc})"
        ) from exc


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    venue: str,
    what: str,
    refused: Callable[[httpx.Response], str],
    **request: Any,
) -> httpx.Response:
    """One request to ``venue``: timeouts, unreachable hosts, 429 and 5xx become a
    ``RetryableError`` (with the venue's Retry-After); 401/403 a BrokerError that says what to
    check (``refused`` writes it from the answer); any other answer is returned."""
    try:
        response = await client.request(method, url, **request)
    except httpx.TimeoutException as exc:
        raise RetryableError(f"{what} timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise RetryableError(
            f"{what} could not reach {venue} ({type(exc).__name__}: {exc})"
        ) from exc
    status = response.status_code
    if status in (401, 403):
        raise BrokerError(f"{venue} refused {what} (HTTP {status}: {refused(response)}")
    if status == 429 or status >= 500:
        raise RetryableError(f"{what} answered HTTP {status}", retry_after(response))
    return response
