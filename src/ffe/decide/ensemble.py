"""The decision engine: from the ensemble's forecast distribution to a sized, explained
decision, and the ``ensemble`` strategy that runs it over history.

At each decision bar ``t`` the models' forecasts of the cumulative log return over the next
``horizon`` bars are combined with Hedge weights learned from outcomes known by ``t``
(``ffe.forecast.ensemble``), giving a normal N(mu, sd). Then, with ``c`` the round-trip cost:

- expected return net of costs, long: ``exp(mu + sd^2 / 2) - 1 - c`` (short: the negative
  of the gross part, minus ``c``);
- probability of a profit, long: ``P(r > log(1 + c))``; short: ``P(r < log(1 - c))``;
- the side with the higher probability is the candidate; its probability is the raw
  confidence, recalibrated (isotonic, fitted only on outcomes known by ``t``) once enough
  outcomes exist and only while that has lowered the Brier score (``ffe.decide.trust``);
- size: the smallest of volatility targeting (``target_vol`` over the annualized one-bar
  volatility forecast), capped fractional Kelly (``kelly_fraction * |mu| / sd^2``) and
  ``max_weight``;
- with no positive expected net return, or below the confidence ``threshold`` once the
  confidence has shown skill on the outcomes known (``ffe.decide.trust``), it holds: no new
  instruction (``hold="keep"``) or flat (``hold="flat"``).

Every decision carries its rationale: each model's vote and weight and the numbers above.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from time import perf_counter  # decide() names a local `time`
from typing import Any, ClassVar

import numpy as np
from pydantic import SecretStr

from ffe.decide.policy import Call, DecisionPolicy, call, make_decision
from ffe.decide.strategy import Explained, register, server_setting
from ffe.decide.trust import MODES, ConfidenceRule, LiveConfidence, Trust
from ffe.decide.voting import ask_at, voter_failed
from ffe.domain.errors import StrategyError
from ffe.domain.market import FloatArray, History, utc_datetime
from ffe.domain.orders import Decision
from ffe.forecast.base import Forecaster, ForecastError, Series
from ffe.forecast.ensemble import HedgeConfig, combine, make_combiner, online_weights
from ffe.forecast.metrics import crps_normal
from ffe.forecast.models import DEFAULT_MODELS, make_forecaster, parse_models
from ffe.forecast.rolling import Panel, RollingSpec, rolling_forecasts

NO_KEY = SecretStr("")  # the LLM voter's API key when none is set


def _per_year(times: np.ndarray[Any, Any]) -> float:
    days = np.asarray(times, dtype="datetime64[D]").view(np.int64)
    weekend = ((days + 3) % 7 >= 5).any()  # 1970-01-01 was a Thursday
    return 365.0 if weekend else 252.0


@register
@dataclass(frozen=True)
class EnsembleStrategy:
    """Forecasting ensemble with feedback-weighted models and calibrated confidence.

    ``models``: comma-separated forecasters; ``window``: training bars; ``refit_every``:
    bars between refits; ``horizon``: bars each decision looks ahead (and is judged after);
    ``every``: bars between decisions; ``combiner``: how the models' forecasts are weighted
    from their past losses (``hedge``, ``leader``: follow the one with the best CRPS so far,
    ``equal``); ``eta``/``discount``: the Hedge weights; the
    decision policy's fields; ``calibrate``/``min_outcomes``: isotonic recalibration of the
    confidence once that many outcomes are known, trusted with weight n / (n +
    ``calibration_prior``) after n outcomes, and stated only while it lowers the Brier score;
    ``confidence_gate``: ``skill`` (the threshold applies only once the confidence has shown
    skill on the outcomes known) or ``always``; ``workers``: processes for the rolling
    forecasts (1: this process; 0: one per core; always 1 inside a pool's worker).
    ``llm_*``: an optional LLM voter (``ffe.decide.llm``), asked only on decision bars (its
    answers cached in ``llm_cache`` for deterministic replays); off by default. A decision
    the voter failed to vote on says so (``details["llm_failure"]`` and its rationale).
    ``workers`` and ``llm_*`` are server settings: API requests may not set them; the
    composition root fills them from the settings (``bootstrap.strategy_params``).
    """

    name: ClassVar[str] = "ensemble"
    models: str = ",".join(DEFAULT_MODELS)
    window: int = 500
    refit_every: int = 21
    horizon: int = 5
    every: int = 5
    combiner: str = "hedge"
    eta: float = 0.5  # chosen by nested walk-forward: see HedgeConfig
    discount: float = 1.0
    threshold: float = 0.55
    cost_bps: float = 10.0
    target_vol: float = 0.15
    kelly_fraction: float = 0.5
    max_weight: float = 1.0
    allow_short: bool = True
    hold: str = "keep"
    calibrate: bool = True
    min_outcomes: int = 50
    calibration_prior: float = 200.0
    confidence_gate: str = "skill"
    # Settings only (never from an API request): a number of processes, and the LLM voter,
    # which names a host to call, a folder to write, a time budget and what leaves the server.
    workers: int = server_setting(1, "compute.max_workers")
    llm_provider: str = server_setting("none", "llm.provider")
    llm_url: str = server_setting("", "llm.base_url")
    llm_model: str = server_setting("", "llm.model")
    llm_mode: str = server_setting("single", "llm.mode")
    llm_cache: str = server_setting("", "llm.cache_dir")
    llm_cache_mode: str = server_setting("read_write", "llm.cache_mode")
    llm_timeout: float = server_setting(60.0, "llm.timeout_s")
    llm_retries: int = server_setting(3, "llm.max_retries")
    llm_anonymize: bool = server_setting(True, "llm.anonymize")
    # A secret: not a plain value, so never among a run's recorded parameters (repr: ***).
    # SecretStr is immutable, so one default is safe to share.
    llm_api_key: SecretStr = server_setting(NO_KEY, "llm.api_key")  # noqa: RUF009
    _policy: DecisionPolicy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            parse_models(self.models)
            HedgeConfig(self.eta, self.discount)
            make_combiner(self.combiner, 1)
            RollingSpec(self.horizon, self.window, self.refit_every)
        except Exception as exc:
            raise StrategyError(f"ensemble: {exc}") from None
        if self.every < 1:
            raise StrategyError(f"ensemble: every must be at least 1, got {self.every}")
        # Checked here, not when the recalibration runs: 0 outcomes fails deep in a run, and
        # a prior <= 0 gives NaN (0 / 0) or out-of-range confidences.
        if self.min_outcomes < 1:
            raise StrategyError(
                f"ensemble: min_outcomes must be at least 1, got {self.min_outcomes}"
            )
        if not self.calibration_prior > 0:
            raise StrategyError(
                f"ensemble: calibration_prior must be positive, got {self.calibration_prior}"
            )
        if self.confidence_gate not in MODES:
            raise StrategyError(
                f"ensemble: confidence_gate must be one of {', '.join(MODES)}, "
                f"got {self.confidence_gate!r}"
            )
        if not isinstance(self.llm_api_key, SecretStr):  # given as text, from Python
            object.__setattr__(self, "llm_api_key", SecretStr(str(self.llm_api_key)))
        try:
            self.llm()  # checks the LLM settings; builds nothing when the provider is none
        except Exception as exc:
            raise StrategyError(f"ensemble: {exc}") from None
        policy = DecisionPolicy(
            self.threshold,
            self.cost_bps,
            self.target_vol,
            self.kelly_fraction,
            self.max_weight,
            self.allow_short,
            self.hold,
        )
        object.__setattr__(self, "_policy", policy)

    def confidence_rule(self) -> ConfidenceRule:
        """How these parameters state and use the confidence (``ffe.decide.trust``)."""
        return ConfidenceRule(
            self.horizon,
            self._policy.cost_bps / 1e4,
            self.calibrate,
            self.min_outcomes,
            self.calibration_prior,
            self.confidence_gate,
        )

    def warmup(self) -> int:
        return self.window

    def llm(self) -> Forecaster | None:
        """The LLM voter these parameters describe, or None."""
        if self.llm_provider == "none":
            return None
        from pathlib import Path

        from ffe.decide.llm import make_llm_forecaster

        return make_llm_forecaster(
            self.llm_provider,
            base_url=self.llm_url or None,
            model=self.llm_model or None,
            api_key=self.llm_api_key.get_secret_value() or None,
            timeout_s=self.llm_timeout,
            max_retries=self.llm_retries,
            anonymize=self.llm_anonymize,
            mode=self.llm_mode,  # type: ignore[arg-type]
            cache_dir=Path(self.llm_cache) if self.llm_cache else None,
            cache_mode=self.llm_cache_mode,  # type: ignore[arg-type]
        )

    def targets(self, history: History) -> FloatArray:
        return self.explain(history).targets

    def explain(self, history: History) -> Explained:
        targets = np.full((len(history), len(history.symbols)), np.nan)
        decisions: list[Decision] = []
        for j, symbol in enumerate(history.symbols):
            column = history.mark[:, j]
            known = np.flatnonzero(np.isfinite(column) & (column > 0))
            if known.size == 0 or len(column) - known[0] < self.window:
                continue
            first = int(known[0])
            series = Series(symbol, np.log(column[first:]), history.times[first:])
            for bar, decision in self._decide_series(series):
                targets[first + bar, j] = decision.target
                decisions.append(decision)
        decisions.sort(key=lambda d: (d.time, d.symbol))
        return Explained(targets, tuple(decisions))

    def _decide_series(self, series: Series) -> list[tuple[int, Decision]]:
        spec = RollingSpec(self.horizon, self.window, self.refit_every)
        names = parse_models(self.models)
        # Inside a pool's worker (a walk-forward segment, a sweep point) the executor runs in
        # that process: a pool in each worker of a pool would multiply the processes.
        panel = rolling_forecasts(series, names, spec, workers=self.workers)
        rows = list(range(0, len(panel.origins), self.every))
        voter = self.llm()
        failures: dict[int, ForecastError] = {}
        if voter is not None:
            panel = ask_at(voter, panel, series, rows, failures)
        h = self.horizon
        weights = online_weights(panel, h, self.combiner, HedgeConfig(self.eta, self.discount))
        mix_mean, mix_sd = combine(panel.mean[:, :, h - 1], panel.sd[:, :, h - 1], weights)
        vol_bar = _one_bar_volatility(panel, weights)
        per_year = _per_year(series.times[: panel.origins[0] + 1])
        rows = [i for i in rows if np.isfinite(mix_mean[i])]
        calls = [
            call(float(mix_mean[i]), float(mix_sd[i]), float(vol_bar[i]), self._policy, per_year)
            for i in rows
        ]
        trusts = self._trusts(panel, rows, calls)
        out = []
        for n, i in enumerate(rows):
            bar = int(panel.origins[i])
            decision = make_decision(
                series.symbol,
                utc_datetime(int(series.times[bar].astype("datetime64[ns]").astype(np.int64))),
                panel.models,
                weights[i],
                panel.mean[:, i, h - 1],
                panel.sd[:, i, h - 1],
                float(mix_mean[i]),
                float(mix_sd[i]),
                float(vol_bar[i]),
                h,
                calls[n],
                trusts[n],
                self._policy,
            )
            if i in failures:
                decision = voter_failed(decision, failures[i])
            out.append((bar, decision))
        return out

    def _trusts(self, panel: Panel, rows: list[int], calls: list[Call]) -> list[Trust]:
        if not rows:
            return []
        index = np.asarray(rows, dtype=np.int64)
        raw = np.array([c.prob_profit for c in calls])
        side = np.array([c.side for c in calls], dtype=np.float64)
        realized = panel.actual[index, self.horizon - 1]
        never = len(panel.origins) + self.horizon + 1  # outcomes past the data: never known
        return self.confidence_rule().batch(raw, side, index, realized, never)


def _one_bar_volatility(panel: Panel, weights: FloatArray) -> FloatArray:
    """GARCH's one-bar sd where it forecast, else the ensemble's one-bar sd."""
    _, mix_sd = combine(panel.mean[:, :, 0], panel.sd[:, :, 0], weights)
    if "garch" in panel.models:
        garch = panel.sd[panel.index("garch"), :, 0]
        return np.where(np.isfinite(garch), garch, mix_sd)
    return mix_sd


class EnsembleDecider:
    """The live decision step: fitted models, online Hedge weights, online recalibration.

    Called at every bar from the end of the first window, as the strategy's batch run
    forecasts from every origin: ``refit(series)`` on the refit bars fits every model on the
    window ending at the last bar; ``observe(series)`` on the other bars between decisions
    forecasts with the fitted parameters so the weights learn from every bar's outcome; and
    ``decide(series)`` on decision bars does the same, also asks the ``extra`` voters (an LLM),
    and returns the decision (None when no model could forecast). Each first feeds the weights
    every outcome that has arrived. A model whose fit failed sits out and is fitted again at
    each bar until a fit works. The same functions as the ``ensemble`` strategy's: the same
    numbers on the same bars, recalibrated confidence included.

    ``on_forecast``, when set, is told each model's name and the seconds its forecast took
    (failed forecasts included), for metrics; unset, nothing is timed. A decision an extra
    voter failed to vote on says so and why (``voter_failed``).
    """

    def __init__(self, strategy: EnsembleStrategy, extra: Sequence[Forecaster] = ()) -> None:
        self.strategy = strategy
        names = parse_models(strategy.models)
        self.models: list[Forecaster] = [
            make_forecaster(name, strategy.window, strategy.horizon) for name in names
        ]
        self._base = len(self.models)  # the extra voters, after them, are asked at decisions
        self.models.extend(extra)
        self.names = [model.name for model in self.models]
        config = HedgeConfig(strategy.eta, strategy.discount)
        self._hedge = make_combiner(strategy.combiner, len(self.models), config)
        self._pending: dict[int, tuple[FloatArray, FloatArray, float]] = {}
        self._fitted_on: list[int | None] = [None] * self._base  # bars each fit saw
        self._tried_on: list[int] = [0] * self._base  # bars the last fit tried saw
        self._per_year = 252.0
        self._confidence = LiveConfidence(strategy.confidence_rule())
        self.on_forecast: Callable[[str, float], None] | None = None
        self._failed: list[tuple[str, ForecastError]] = []  # the extra voters', this decision

    def refit(self, series: Series) -> list[str]:
        """Fit every model; the names of those that failed (they sit out until a fit works)."""
        return self._fit(series, range(self._base))

    def observe(self, series: Series) -> None:
        """A bar without a decision: learn from the outcomes that arrived and forecast, so
        this bar's outcome teaches the weights ``horizon`` bars later."""
        self._forecast(series, decision=False)

    def decide(self, series: Series) -> Decision | None:
        means, sds, one_mean, one_bar = self._forecast(series, decision=True)
        available = np.isfinite(means)
        if not available.any():
            return None  # as the batch run: no decision where no model forecast
        weights = self._hedge.weights(available)
        mix_mean, mix_sd = combine(means[:, None], sds[:, None], weights[None, :])
        mu, sd = float(mix_mean[0]), float(mix_sd[0])
        garch = self.names.index("garch") if "garch" in self.names else -1
        if garch >= 0 and np.isfinite(one_bar[garch]):
            vol_bar = float(one_bar[garch])
        else:
            vol_bar = float(combine(one_mean[:, None], one_bar[:, None], weights[None, :])[1][0])
        made = call(mu, sd, vol_bar, self.strategy._policy, self._per_year)
        time = utc_datetime(int(series.times[-1].astype("datetime64[ns]").astype(np.int64)))
        decision = make_decision(
            series.symbol,
            time,
            self.names,
            weights,
            means,
            sds,
            mu,
            sd,
            vol_bar,
            self.strategy.horizon,
            made,
            self._confidence.decide(series.values, made.prob_profit, made.side),
            self.strategy._policy,
        )
        for name, error in self._failed:
            decision = voter_failed(decision, error, name)
        return decision

    def _fit(self, series: Series, which: Iterable[int]) -> list[str]:
        # Bars a year from the first window, as the batch run reads it, whenever fitted.
        self._per_year = _per_year(series.times[: self.strategy.window])
        failed = []
        for k in which:
            self._tried_on[k] = len(series)
            try:
                self.models[k].fit(series)
                self._fitted_on[k] = len(series)
            except ForecastError:
                self._fitted_on[k] = None
                failed.append(self.names[k])
        return failed

    def _forecast(
        self, series: Series, *, decision: bool
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Learn, fit what has no fit, and forecast ``horizon`` bars ahead from the last bar:
        each model's mean and sd there and one bar ahead (NaN where it did not forecast)."""
        h, t = self.strategy.horizon, len(series) - 1
        self._learn(series, t)
        unfitted = [
            k
            for k in range(self._base)
            if self._fitted_on[k] is None and self._tried_on[k] != len(series)
        ]
        if unfitted:
            self._fit(series, unfitted)
        n = len(self.models)
        means, sds = np.full(n, np.nan), np.full(n, np.nan)
        one_mean, one_bar = np.full(n, np.nan), np.full(n, np.nan)
        timed = self.on_forecast
        self._failed = []
        for k, model in enumerate(self.models):
            if k < self._base and self._fitted_on[k] is None:
                continue
            if k >= self._base and not decision:
                continue  # the extra voters speak only at decisions, as in the batch run
            started = perf_counter() if timed is not None else 0.0
            try:
                if k >= self._base:
                    model.fit(series)
                forecast = model.forecast(series, h)
            except ForecastError as exc:
                if k >= self._base:
                    self._failed.append((model.name, exc))
                continue
            finally:
                if timed is not None:
                    timed(model.name, perf_counter() - started)
            means[k], sds[k] = forecast.mean[-1], forecast.sd[-1]
            one_mean[k], one_bar[k] = forecast.mean[0], forecast.sd[0]
        self._pending[t] = (means, sds, float(series.values[-1]))
        return means, sds, one_mean, one_bar

    def state(self) -> dict[str, Any]:
        """What a restart needs to decide as this decider would, as JSON (NaN as null): the
        weights' history, the forecasts waiting for their outcome, the bars each model's fit
        saw (``resume`` fits it on the same) and the recalibration's decisions and outcomes."""
        pending = {
            str(t): [_nan_free(means), _nan_free(sds), start]
            for t, (means, sds, start) in self._pending.items()
        }
        return {
            "combiner": self.strategy.combiner,
            "hedge": self._hedge.state(),
            "pending": pending,
            "fitted_on": list(self._fitted_on),
            **self._confidence.state(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take back a ``state()``'s weights, pending forecasts and recalibration (the models
        are fitted by ``resume``, or by the caller for a state without ``fitted_on``)."""
        saved = state.get("combiner", "hedge")
        if saved != self.strategy.combiner:
            raise StrategyError(
                f"ensemble: the run was saved with combiner {saved!r}, not "
                f"{self.strategy.combiner!r}: resume with it, or start a fresh run (`--fresh`)"
            )
        self._hedge.restore(state["hedge"])
        self._pending = {
            int(t): (_floats(means), _floats(sds), float(start))
            for t, (means, sds, start) in state["pending"].items()
        }
        self._confidence.restore(state)

    def resume(self, series: Series, state: Mapping[str, Any]) -> bool:
        """Restore ``state`` and fit each model on the bars its saved fit saw; False when
        the state does not say (written before it kept them): the caller fits."""
        self.restore(state)
        fitted_on = state.get("fitted_on")
        if fitted_on is None or len(fitted_on) != self._base:
            return False
        self._per_year = _per_year(series.times[: self.strategy.window])
        for k, n in enumerate(fitted_on):
            if n is not None:
                self._fit(series.upto(int(n)), [k])
        return True

    def _learn(self, series: Series, t: int) -> None:
        """Feed the weights every pending forecast whose outcome bar has arrived."""
        h = self.strategy.horizon
        for origin in sorted(o for o in self._pending if o + h <= t):
            means, sds, start = self._pending.pop(origin)
            outcome = float(series.values[origin + h] - start) if origin + h < len(series) else 0
            crps = np.full(len(means), np.nan)
            ok = np.isfinite(means) & np.isfinite(sds)
            if ok.any():  # none forecast there: nothing to learn, as in the batch run
                crps[ok] = crps_normal(np.full(ok.sum(), outcome), means[ok], sds[ok])
                self._hedge.observe(crps)


def _nan_free(values: FloatArray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values]


def _floats(values: Sequence[float | None]) -> FloatArray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
