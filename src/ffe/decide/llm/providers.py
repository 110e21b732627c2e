"""LLM servers over HTTP: Ollama's native API and any OpenAI-compatible server.

Both ask for an answer that fits a JSON schema, with temperature 0 and a fixed seed, so a
server that honours them answers the same prompt the same way. Timeouts, connection errors,
429 and 5xx are retried with exponential backoff and jitter (a Retry-After header wins); other
4xx are not, since asking again would not help. A circuit breaker stops calling a server that
keeps failing, so a backtest does not wait on every bar for one that is down.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol, Self

import httpx

from ffe.decide.llm.schema import SCHEMA_NAME, LlmAnswerError, LlmError, Message
from ffe.domain.errors import ConfigError
from ffe.risk.breaker import CircuitBreaker, CircuitOpenError

log = logging.getLogger(__name__)

OLLAMA_URL = "http://localhost:11434"
_LATENCIES_KEPT = 10_000


class LlmUnavailableError(LlmError):
    """The LLM server did not answer, or kept failing: start it, or retry later."""


class LlmRequestError(LlmError):
    """The LLM server refused the request or does not speak the protocol: fix the base URL,
    the model name or the API key."""


@dataclass(slots=True)
class LlmStats:
    """What one provider did: HTTP requests (retries included), calls that failed, retries,
    answers served from the cache, tokens, and the latency of each answered call (its retries
    and waits included)."""

    requests: int = 0
    failures: int = 0
    retries: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=_LATENCIES_KEPT))

    def latency_s(self, percentile: float) -> float | None:
        """The latency at ``percentile`` (nearest rank), or None before any answer."""
        if not self.latencies_s:
            return None
        ranked = sorted(self.latencies_s)
        rank = max(1, math.ceil(percentile / 100 * len(ranked)))
        return ranked[rank - 1]

    def as_dict(self) -> dict[str, float | int | None]:
        """The counters and the p50 and p99 latencies, JSON-ready."""
        return {
            "requests": self.requests,
            "failures": self.failures,
            "retries": self.retries,
            "cache_hits": self.cache_hits,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_p50_s": self.latency_s(50),
            "latency_p99_s": self.latency_s(99),
        }


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to wait before asking a failing server again."""

    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 60.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float | None:
        """Seconds to wait after failed attempt ``attempt`` (0-based); None to give up because
        the server asks for a longer wait than ``max_retry_after_s``."""
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after_s else None
        ceiling = min(self.max_backoff_s, self.backoff_s * 2.0**attempt)
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


class LlmProvider(Protocol):
    """A chat model that answers in JSON fitting a schema."""

    kind: ClassVar[str]
    model: str
    stats: LlmStats

    def complete(self, messages: Sequence[Message], schema: Mapping[str, Any], *, seed: int) -> str:
        """The model's answer (text that should be JSON fitting ``schema``)."""
        ...

    def close(self) -> None:
        """Release connections (the provider may still be used afterwards)."""
        ...


@dataclass(frozen=True, slots=True)
class _Reply:
    content: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class _Failure:
    problem: str
    reason: str  # LlmError.reason: timeout, unreachable or http_error
    brief: str  # the problem without the server's own words
    retry_after: float | None = None


class _HttpProvider(ABC):
    """Retries, circuit breaker and statistics shared by the HTTP providers."""

    kind: ClassVar[str]
    endpoint: ClassVar[str]
    hint: ClassVar[str]

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.perf_counter,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"LLM base URL {base_url!r} must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.stats = LlmStats()
        self.breaker = breaker or CircuitBreaker(name=f"LLM server {self.base_url}")
        self._timeout_s = timeout_s
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._clock = clock
        self._headers = dict(headers or {})
        self._client: httpx.Client | None = None

    @property
    def url(self) -> str:
        """Where the requests go."""
        return f"{self.base_url}{self.endpoint}"

    def complete(self, messages: Sequence[Message], schema: Mapping[str, Any], *, seed: int) -> str:
        """Ask the model; LlmUnavailableError, LlmRequestError or LlmAnswerError if it fails."""
        try:
            self.breaker.check()
        except CircuitOpenError as exc:
            self.stats.failures += 1
            raise LlmUnavailableError(
                f"{exc}; is the server at {self.url} running?",
                reason="breaker_open",
                brief="circuit breaker open after repeated failures",
            ) from exc
        started = self._clock()
        try:
            response = self._send(self._body(messages, schema, seed))
            reply = self._read(response)
        except LlmError:
            self.stats.failures += 1
            raise
        latency = self._clock() - started
        self.stats.prompt_tokens += reply.prompt_tokens
        self.stats.completion_tokens += reply.completion_tokens
        self.stats.latencies_s.append(latency)
        log.debug("%s %s answered in %.2fs", self.kind, self.model, latency)
        return reply.content

    def close(self) -> None:
        """Close the connection pool (the provider opens a new one if used again)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, body: dict[str, Any]) -> httpx.Response:
        """POST ``body``, retrying what may pass on a second try; the breaker sees the outcome."""
        attempt = 0
        while True:
            outcome = self._post(body)
            if isinstance(outcome, httpx.Response):
                self.breaker.record_success()  # the server is up, whatever it answered
                return self._accepted(outcome)
            last = attempt == self._retry.max_retries
            delay = None if last else self._retry.delay(attempt, outcome.retry_after, self._rng)
            if delay is None:
                self.breaker.record_failure()
                raise LlmUnavailableError(
                    f"no answer from the LLM server at {self.url} after {attempt + 1} "
                    f"attempt{'s' if attempt else ''} ({outcome.problem}); {self.hint}",
                    reason=outcome.reason,
                    brief=f"{outcome.brief} after {attempt + 1} attempt{'s' if attempt else ''}",
                )
            attempt += 1
            log.warning(
                "LLM request to %s failed (%s); retry %d of %d in %.1fs",
                self.url,
                outcome.problem,
                attempt,
                self._retry.max_retries,
                delay,
            )
            self.stats.retries += 1
            self._sleep(delay)

    def _post(self, body: dict[str, Any]) -> httpx.Response | _Failure:
        """One request: the response, or why it failed in a way worth retrying."""
        self.stats.requests += 1
        try:
            response = self._http().post(self.url, json=body)
        except httpx.TimeoutException:
            waited = f"timed out after {self._timeout_s:g}s"
            return _Failure(waited, "timeout", waited)
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            kind = type(exc).__name__
            return _Failure(f"{kind}: {exc}", "unreachable", f"no connection ({kind})")
        except httpx.HTTPError as exc:
            raise LlmRequestError(
                f"cannot send to {self.url}: {exc}", reason="unreachable", brief="cannot send"
            ) from exc
        status = response.status_code
        if status == 429 or status >= 500:
            code = f"HTTP {status}"
            return _Failure(code, "http_error", code, _retry_after(response))
        return response

    def _accepted(self, response: httpx.Response) -> httpx.Response:
        """``response`` unless it is a refusal (4xx other than 429): asking again won't help."""
        status = response.status_code
        if status >= 400:
            raise LlmRequestError(
                f"the LLM server at {self.url} refused the request: HTTP {status} "
                f"({_error_detail(response)}); {_fix_for(status)}",
                reason="http_error",
                brief=f"HTTP {status}",
            )
        return response

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                timeout=httpx.Timeout(self._timeout_s), headers=self._headers
            )
        return self._client

    def _read(self, response: httpx.Response) -> _Reply:
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise self._foreign("the answer is not a JSON object")
        return self._reply(payload)

    def _foreign(self, problem: str) -> LlmRequestError:
        return LlmRequestError(
            f"{self.url} does not answer like an {self.kind} server ({problem}); "
            "check the base URL and the provider",
            reason="bad_answer",
            brief=f"not an {self.kind} answer ({problem})",
        )

    @abstractmethod
    def _body(
        self, messages: Sequence[Message], schema: Mapping[str, Any], seed: int
    ) -> dict[str, Any]:
        """The request body in this provider's protocol."""

    @abstractmethod
    def _reply(self, payload: dict[str, Any]) -> _Reply:
        """The answer and token counts in this provider's response."""


class OllamaProvider(_HttpProvider):
    """A model served by Ollama, through its native ``POST /api/chat``."""

    kind = "ollama"
    endpoint = "/api/chat"
    hint = "is Ollama running (`ollama serve`) and is the base URL right?"

    def _body(
        self, messages: Sequence[Message], schema: Mapping[str, Any], seed: int
    ) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [dict(m) for m in messages],
            "stream": False,
            "format": dict(schema),
            "options": {"temperature": 0, "seed": seed},
        }

    def _reply(self, payload: dict[str, Any]) -> _Reply:
        message = payload.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise self._foreign("no message.content")
        return _Reply(
            content, _count(payload.get("prompt_eval_count")), _count(payload.get("eval_count"))
        )


class OpenAICompatibleProvider(_HttpProvider):
    """A model behind ``POST {base_url}/chat/completions`` (OpenAI, vLLM, llama.cpp server,
    LM Studio, ...); ``base_url`` ends in ``/v1``."""

    kind = "openai"
    endpoint = "/chat/completions"
    hint = "is the server running, and does the base URL end in /v1?"

    def __init__(
        self, base_url: str, model: str, api_key: str | None = None, **options: Any
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        super().__init__(base_url, model, headers=headers, **options)

    def _body(
        self, messages: Sequence[Message], schema: Mapping[str, Any], seed: int
    ) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [dict(m) for m in messages],
            "temperature": 0,
            "seed": seed,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": SCHEMA_NAME, "schema": dict(schema), "strict": True},
            },
        }

    def _reply(self, payload: dict[str, Any]) -> _Reply:
        choices = payload.get("choices")
        first = choices[0] if isinstance(choices, list) and choices else None
        message = first.get("message") if isinstance(first, dict) else None
        if not isinstance(message, dict):
            raise self._foreign("no choices[0].message")
        if message.get("refusal"):
            raise LlmAnswerError(
                f"the model refused to answer: {message['refusal']}", brief="the model refused"
            )
        content = message.get("content")
        if not isinstance(content, str):
            raise self._foreign("no choices[0].message.content")
        usage = payload.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        return _Reply(
            content, _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
        )


def _count(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asks us to wait (Retry-After: seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _error_detail(response: httpx.Response, limit: int = 200) -> str:
    """The server's own error message: Ollama's ``error``, OpenAI's ``error.message``."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    detail: object = response.text
    if isinstance(payload, dict):
        error = payload.get("error", detail)
        detail = error.get("message", error) if isinstance(error, dict) else error
    text = " ".join(str(detail).split()) or response.reason_phrase
    return text if len(text) <= limit else text[:limit] + "..."


def _fix_for(status: int) -> str:
    if status in (401, 403):
        return "check the API key"
    if status == 404:
        return "check the model name and the base URL"
    return "check the model name and the server's documentation"
