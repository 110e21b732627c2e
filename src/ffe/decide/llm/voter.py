"""An LLM as a voter in the forecasting ensemble.

``LlmForecaster`` speaks the ``Forecaster`` protocol: at each origin it builds a point-in-time
prompt, asks the model (through the answer cache, so a backtest replays exactly) and turns the
view into a normal forecast of the cumulative log return. Any failure, from the server, the
cache or the answer, becomes a ForecastError, so the ensemble leaves this voter out at that
origin and renormalizes the weights of the others.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from ffe.decide.llm.cache import ResponseCache, cache_key
from ffe.decide.llm.debate import Debate, run_debate
from ffe.decide.llm.prompt import single_prompt
from ffe.decide.llm.providers import LlmProvider
from ffe.decide.llm.schema import VIEW_SCHEMA, LlmError, LlmView, Message, parse_view
from ffe.forecast.base import Forecast, ForecastError, Series

log = logging.getLogger(__name__)

Mode = Literal["single", "debate"]
MODES: tuple[Mode, ...] = ("single", "debate")


class LlmVoteError(ForecastError):
    """The LLM voter has no vote at an origin: ``reason`` (``LlmError.reason``) and ``brief``
    say why, in words fit for the decision it affected (no URL, no key)."""

    def __init__(self, message: str, reason: str, brief: str) -> None:
        super().__init__(message)
        self.reason, self.brief = reason, brief


@dataclass(frozen=True, slots=True)
class Consultation:
    """The view that votes, and the debate behind it in debate mode."""

    view: LlmView
    debate: Debate | None = None


def view_to_forecast(view: LlmView, horizon: int) -> Forecast:
    """A normal forecast from a view of the change over ``horizon`` bars: the log of the
    expected change at the horizon, reached linearly; the uncertainty (read as a log-return
    standard deviation) growing with the square root of the step."""
    fraction = np.arange(1, horizon + 1, dtype=np.float64) / horizon
    mean = math.log1p(view.expected_return_pct / 100) * fraction
    sd = view.uncertainty_pct / 100 * np.sqrt(fraction)
    return Forecast.normal(mean, sd)


class LlmForecaster:
    """A Forecaster that asks an LLM for its view at every origin (nothing to fit)."""

    name: ClassVar[str] = "llm"

    def __init__(
        self,
        provider: LlmProvider,
        *,
        cache: ResponseCache | None = None,
        mode: Mode = "single",
        anonymize: bool = True,
        seed: int = 0,
        label: str = "llm",
        history: int = 30,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if history < 2:
            raise ValueError(f"history must be at least 2 bars, got {history}")
        self.provider = provider
        self.cache = cache
        self.mode: Mode = mode
        self.anonymize = anonymize
        self.seed = seed
        self.label = label
        self._history = history

    def min_history(self) -> int:
        """Bars the prompt needs at least (it uses up to a year of them when there are)."""
        return self._history

    def fit(self, series: Series) -> None:
        """Nothing to estimate: the model is asked afresh at every origin."""

    def forecast(self, series: Series, horizon: int) -> Forecast:
        """The model's view as a forecast; ForecastError (cause chained) when it has none."""
        try:
            view = self.consult(series, horizon).view
        except LlmError as exc:
            log.warning("%s: no vote at %s: %s", self.label, _origin(series), exc)
            raise LlmVoteError(f"{self.label}: {exc}", exc.reason, exc.brief) from exc
        return view_to_forecast(view, horizon).check(self.label, horizon)

    def consult(self, series: Series, horizon: int) -> Consultation:
        """Ask the model (or hold the debate) about ``series`` at its last bar.

        Raises LlmError when the model cannot answer, ForecastError when the series is too
        short."""
        usable = int(np.isfinite(series.values).sum())
        if usable < self._history:
            raise ForecastError(
                f"{self.label}: needs {self._history} bars of history, got {usable}"
            )
        if self.mode == "debate":
            debate = run_debate(self._ask, series, horizon, anonymize=self.anonymize)
            consultation = Consultation(debate.judge, debate)
        else:
            prompt = single_prompt(series, horizon, anonymize=self.anonymize)
            consultation = Consultation(self._ask(prompt))
        view = consultation.view
        log.debug(
            "%s at %s: %s %+.2f%% sd %.2f%% confidence %.2f",
            self.label,
            _origin(series),
            view.direction,
            view.expected_return_pct,
            view.uncertainty_pct,
            view.confidence,
        )
        return consultation

    def close(self) -> None:
        """Release the provider's connections."""
        self.provider.close()

    def _ask(self, messages: Sequence[Message]) -> LlmView:
        """The view for ``messages``: from the cache, else from the model (then cached)."""
        provider = self.provider
        server = getattr(provider, "base_url", "")  # a stand-in provider may have none
        key = cache_key(provider.kind, server, provider.model, messages, VIEW_SCHEMA, self.seed)
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None:
            provider.stats.cache_hits += 1
            return parse_view(cached)
        answer = provider.complete(messages, VIEW_SCHEMA, seed=self.seed)
        view = parse_view(answer)  # only answers that parse are kept
        if self.cache is not None:
            about = {
                "kind": provider.kind,
                "base_url": server,
                "model": provider.model,
                "seed": self.seed,
                "messages": [dict(m) for m in messages],
            }
            self.cache.put(key, answer, about)
        return view


def _origin(series: Series) -> str:
    return str(series.times[-1]) if len(series) else "an empty series"
