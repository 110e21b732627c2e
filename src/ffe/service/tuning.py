"""Tuning as use cases: run (or resume) a study, list, show and delete studies, render one's
report.

``ffe tune`` and the worker's tune jobs call these. A study is driven by the process calling
``run``, which alone writes it to Optuna's storage (``components.tune``); trials run on
the executor and report back to it. Like the backtest use cases, ``run`` is synchronous and
may start a process pool: call it from a command, a job's process or a thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ffe.service.backtests import Costs
from ffe.service.markets import MarketSpec, load_bars
from ffe.service.progress import ReportProgress

if TYPE_CHECKING:
    from ffe.backtest.walkforward import WalkForwardSpec
    from ffe.bootstrap import Components
    from ffe.tune.outcome import TuneOutcome
    from ffe.tune.storage import StudySummary
    from ffe.tune.study import Pruner, Sampler


@dataclass(frozen=True, slots=True)
class TuneRequest:
    """A study of ``strategy`` over ``params`` (``name=5..60``, ``name=5..60:5``,
    ``name=1,2,3``): ``trials`` finished trials ranked by ``metric`` over the walk-forward's
    out-of-sample bars, the last ``holdout`` of the bars (a fraction below 1, else bars) kept
    back for the best. ``study`` names it (resumed when it exists); ``batch_size`` None takes
    ``tune.batch_size``; ``workers`` None or 0: as many as allowed."""

    strategy: str
    params: Sequence[str]
    metric: str = "sharpe"
    market: MarketSpec = field(default_factory=MarketSpec)
    costs: Costs = field(default_factory=Costs)
    walk_forward: WalkForwardSpec | None = None  # None: train=750,test=250
    trials: int = 100
    sampler: Sampler = "tpe"
    pruner: Pruner = "median"
    seed: int = 0
    batch_size: int | None = None
    holdout: float = 0.2
    study: str | None = None
    workers: int | None = None


def run(
    components: Components, request: TuneRequest, progress: ReportProgress | None = None
) -> TuneOutcome:
    """Run or resume the study ``request`` describes. Bad input (an unknown strategy or
    metric, a malformed range, too few bars) is refused before any trial runs; ``progress``
    counts finished trials, those of an earlier run included."""
    from ffe.decide.plugins import recorded_by_name
    from ffe.decide.strategy import make_strategy
    from ffe.tune.study import run_study

    make_strategy(request.strategy)  # an unknown strategy fails before the bars load
    # The LLM voter's settings go to every trial, never into the stored study.
    fixed = components.llm_params(request.strategy)
    # A file strategy's path, class and SHA-256 go into the study's setup: stored with it,
    # and a resume with another text of the file is refused (another strategy).
    spec = _spec(request, components.tune.batch_size, fixed, recorded_by_name(request.strategy))
    market = load_bars(components, request.market)
    costs = request.costs
    config = components.backtest_config(
        cash=costs.cash, commission=costs.commission, slippage_bps=costs.slippage_bps,
        at=costs.fill,
    )  # fmt: skip
    return run_study(
        market, spec, components.executor(request.workers), components.tune.storage_url,
        request.study or default_name(request.strategy), config=config,
        risk=components.risk_engine(), progress=progress,
    )  # fmt: skip


def default_name(strategy: str) -> str:
    """A new study's name when none is given: the strategy and the time, to the second."""
    return f"{strategy}-{datetime.now(UTC):%Y%m%d-%H%M%S}"


def _spec(
    request: TuneRequest, default_batch: int, fixed: dict[str, Any], source: dict[str, Any]
) -> Any:
    from ffe.backtest.walkforward import WalkForwardSpec
    from ffe.tune.space import parse_space
    from ffe.tune.study import TuneSpec

    market = request.market
    context = {
        "symbols": list(market.symbols),
        "start": market.start,
        "end": market.end,
        **({"synthetic": [market.synthetic, market.bars, market.seed]} if market.synthetic else {}),
        "costs": [request.costs.cash, request.costs.commission, request.costs.slippage_bps,
                  request.costs.fill],
        **source,
    }  # fmt: skip
    return TuneSpec(
        request.strategy,
        parse_space(request.params),
        request.walk_forward or WalkForwardSpec(750, 250),
        request.metric,
        request.trials,
        request.sampler,
        request.pruner,
        request.seed,
        request.batch_size or default_batch,
        request.holdout,
        context,
        fixed,
    )


def studies(components: Components) -> list[StudySummary]:
    """Every stored study, the newest first."""
    from ffe.tune.storage import list_studies

    return list_studies(components.tune.storage_url)


def show(components: Components, name: str) -> tuple[StudySummary, list[dict[str, Any]]]:
    """Study ``name``'s summary and trials; a NotFoundError naming the studies if none."""
    from ffe.tune.storage import show_study

    return show_study(components.tune.storage_url, name)


def delete(components: Components, name: str) -> None:
    """Delete study ``name`` with its trials."""
    from ffe.tune.storage import delete_study

    delete_study(components.tune.storage_url, name)


def report(components: Components, name: str, *, standalone: bool = False) -> str:
    """Study ``name``'s HTML report; with ``standalone``, carrying plotly.js itself (see
    ``ffe.service.runs.report_html``)."""
    from ffe.backtest.html import with_inline_library
    from ffe.tune.report import render_tune_report
    from ffe.tune.storage import loaded_study

    with loaded_study(components.tune.storage_url, name) as study:
        html = render_tune_report(study)
    return with_inline_library(html) if standalone else html
