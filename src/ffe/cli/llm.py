"""``ffe llm``: ask an LLM for its view of a symbol at a date (needs an LLM server)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer

from ffe.cli.common import console, user_errors

if TYPE_CHECKING:
    from ffe.config import Settings
    from ffe.decide.llm import Consultation, LlmForecaster
    from ffe.forecast.base import Series

llm_app = typer.Typer(
    help="Ask an LLM (Ollama or an OpenAI-compatible server) for its view.", no_args_is_help=True
)


@llm_app.command("vote")
def vote(
    symbol: str = typer.Option("SP500", "--symbol", help="Symbol to ask about."),
    at: str = typer.Option(
        ..., "--at", help="Origin date (YYYY-MM-DD); the prompt sees bars up to it only."
    ),
    horizon: int = typer.Option(5, "--horizon", help="Bars ahead to forecast.", min=1),
    provider: str | None = typer.Option(
        None, "--provider", help="ollama or openai (config: llm.provider)."
    ),
    base_url: str | None = typer.Option(
        None, "--base-url", help="Server URL, e.g. http://localhost:11434 (config: llm.base_url)."
    ),
    model: str | None = typer.Option(
        None, "--model", help="Model name, e.g. llama3.1:8b (config: llm.model)."
    ),
    mode: str | None = typer.Option(None, "--mode", help="single or debate (config: llm.mode)."),
    anonymize: bool | None = typer.Option(
        None, "--anonymize/--no-anonymize", help="Hide symbol and dates (config: llm.anonymize)."
    ),
    cache_mode: str | None = typer.Option(
        None, "--cache-mode", help="read_write, read_only or off (config: llm.cache_mode)."
    ),
    max_retries: int | None = typer.Option(
        None,
        "--max-retries",
        help="Retries on timeouts, 429 and 5xx (config: llm.max_retries).",
        min=0,
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", help="Seconds per request (config: llm.timeout_s)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the view as JSON."),
) -> None:
    """Ask the configured LLM for its view of SYMBOL over HORIZON bars from the date AT."""
    with user_errors():
        from ffe.config import load_settings

        settings = load_settings()
        forecaster = _forecaster(
            settings,
            provider=provider,
            base_url=base_url,
            model=model,
            mode=mode,
            anonymize=anonymize,
            cache_mode=cache_mode,
            max_retries=max_retries,
            timeout_s=timeout,
        )
        series = _series(settings, symbol, at)
        try:
            consultation = forecaster.consult(series, horizon)
        finally:
            forecaster.close()
        shown = _as_dict(forecaster, series, horizon, consultation)
        if as_json:
            typer.echo(json.dumps(shown, indent=2))
        else:
            _print(shown)


def _forecaster(settings: Settings, **flags: Any) -> LlmForecaster:
    """The LLM voter from the ``llm`` settings, with command-line flags (None = keep)."""
    from ffe.decide.llm import make_llm_forecaster
    from ffe.domain.errors import ConfigError

    values: dict[str, Any] = settings.llm.model_dump(exclude={"cache_dir", "api_key"})
    values.update({name: value for name, value in flags.items() if value is not None})
    key = settings.llm.api_key
    forecaster = make_llm_forecaster(
        values.pop("provider"),
        api_key=key.get_secret_value() if key is not None else None,
        cache_dir=settings.llm_cache_dir(),
        **values,
    )
    if forecaster is None:
        raise ConfigError(
            "no LLM provider is configured: pass --provider ollama --model <name> "
            "(or set llm.provider and llm.model; see docs/llm.md)"
        )
    return forecaster


def _series(settings: Settings, symbol: str, at: str) -> Series:
    """Log closes of ``symbol`` up to and including the date ``at``."""
    import numpy as np

    from ffe import bootstrap
    from ffe.data import load_market
    from ffe.forecast.base import Series

    market = load_market(bootstrap.data_catalog(settings), [symbol], end=at)
    return Series(symbol, np.log(market.mark[:, 0]), market.times)


def _as_dict(
    forecaster: LlmForecaster, series: Series, horizon: int, consultation: Consultation
) -> dict[str, Any]:
    import numpy as np

    from ffe.decide.llm import view_to_forecast
    from ffe.forecast.base import LEVELS

    forecast = view_to_forecast(consultation.view, horizon)
    debate = consultation.debate
    return {
        "symbol": series.symbol,
        "origin": str(np.datetime_as_string(series.times[-1], unit="D")),
        "horizon": horizon,
        "provider": forecaster.provider.kind,
        "model": forecaster.provider.model,
        "mode": forecaster.mode,
        "anonymize": forecaster.anonymize,
        "view": consultation.view.model_dump(),
        "debate": None
        if debate is None
        else {"bull": debate.bull.model_dump(), "bear": debate.bear.model_dump()},
        "interval_pct": {
            str(level): [
                float(np.expm1(forecast.lower[i][-1]) * 100),
                float(np.expm1(forecast.upper[i][-1]) * 100),
            ]
            for i, level in enumerate(LEVELS)
        },
        "stats": forecaster.provider.stats.as_dict(),
    }


def _print(shown: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    view = shown["view"]
    title = (
        f"{shown['symbol']} at {shown['origin']}, {shown['horizon']} bars ahead: "
        f"{shown['provider']} {shown['model']} ({shown['mode']})"
    )
    table = Table(title=Text(title), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = [
        ("direction", view["direction"]),
        ("expected change", f"{view['expected_return_pct']:+.2f}%"),
        ("uncertainty (1 sd)", f"{view['uncertainty_pct']:.2f}%"),
        ("confidence", f"{view['confidence']:.2f}"),
        *[
            (f"{level}% interval", f"{low:+.2f}% .. {high:+.2f}%")
            for level, (low, high) in shown["interval_pct"].items()
        ],
        ("rationale", view["rationale"]),
    ]
    if shown["debate"] is not None:
        for side in ("bull", "bear"):
            argued = shown["debate"][side]
            rows.append((side, f"{argued['expected_return_pct']:+.2f}%: {argued['rationale']}"))
    for name, value in rows:
        table.add_row(name, Text(str(value)))  # model text is never markup
    console.print(table)
    stats = shown["stats"]
    latency = stats["latency_p50_s"]
    console.print(
        Text(
            f"requests {stats['requests']}, cache hits {stats['cache_hits']}, tokens "
            f"{stats['prompt_tokens']}+{stats['completion_tokens']}"
            + (f", latency {latency:.2f}s" if latency is not None else "")
        )
    )
