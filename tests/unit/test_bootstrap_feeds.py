"""How the composition root reaches each feed: ``data.*`` settings, ``--api-url`` over them."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ffe.bootstrap.feeds import feed_options, open_feed
from ffe.config import Settings, load_settings, masked
from ffe.domain import ConfigError


def test_feed_options_when_defaults_then_the_venues_public_urls() -> None:
    settings = Settings()

    assert feed_options(settings, "ccxt:binance").api_url == "https://api.binance.com/api/v3"
    assert feed_options(settings, "ccxt:coinbase").api_url == "https://api.coinbase.com"
    assert feed_options(settings, "ccxt:kraken").api_url is None  # ccxt's own
    assert feed_options(settings, "alphavantage").api_url == "https://www.alphavantage.co/query"
    assert feed_options(settings, "oanda").api_url == "https://api-fxpractice.oanda.com"
    assert feed_options(settings, "oanda").retries == 4


def test_feed_options_when_api_url_given_then_it_wins() -> None:
    chosen = feed_options(Settings(), "ccxt:binance", "http://127.0.0.1:9/api/v3")

    assert chosen.api_url == "http://127.0.0.1:9/api/v3"


def test_feed_options_when_keys_set_then_each_source_gets_its_own() -> None:
    settings = Settings(
        data={"alpha_vantage_key": "av-key", "alpha_vantage_full": True},  # type: ignore[arg-type]
        agent={"oanda_token": "agent-token"},  # type: ignore[arg-type]
    )

    assert feed_options(settings, "alphavantage").api_key == "av-key"
    assert feed_options(settings, "alphavantage").full_history
    assert feed_options(settings, "oanda").api_key == "agent-token"  # data.oanda_token unset
    assert feed_options(settings, "ccxt:binance").api_key is None
    assert "av-key" not in repr(feed_options(settings, "alphavantage"))


def test_feed_options_when_data_oanda_token_set_then_it_wins_over_the_agents() -> None:
    settings = Settings(
        data={"oanda_token": "data-token"},  # type: ignore[arg-type]
        agent={"oanda_token": "agent-token"},  # type: ignore[arg-type]
    )

    assert feed_options(settings, "oanda").api_key == "data-token"


@pytest.mark.parametrize("url", ["ftp://host/x", "127.0.0.1:8080", "http://", "http://a b"])
def test_open_feed_when_api_url_not_http_then_config_error_shows_the_form(url) -> None:
    with pytest.raises(ConfigError, match=r"is not an http\(s\) URL: write it like http://"):
        open_feed(Settings(), "ccxt:binance", url)


def test_settings_when_configured_url_not_http_then_refused(monkeypatch) -> None:
    monkeypatch.setenv("FFE__DATA__CCXT_URLS", '{"binance": "api.binance.com"}')

    with pytest.raises(ConfigError, match=r"data\.ccxt_urls\.binance"):
        load_settings()


def test_masked_when_oanda_token_set_then_hidden(monkeypatch) -> None:
    monkeypatch.setenv("FFE__DATA__OANDA_TOKEN", "TOKEN-123")

    shown = masked(load_settings())

    assert shown["data"]["oanda_token"] == "***"
    assert "TOKEN-123" not in str(shown)


def test_agent_run_when_api_url_given_then_in_the_launch(monkeypatch, tmp_path) -> None:
    import ffe.cli.agent as agent_cli
    from ffe.cli.app import app

    launches = []

    async def fake_run(settings, launch, probes, **kw):
        launches.append(launch)
        raise SystemExit(0)

    monkeypatch.setattr(agent_cli, "_run", fake_run)
    monkeypatch.setenv("FFE_CONFIG_DIR", str(tmp_path))
    runner = CliRunner()

    good = runner.invoke(app, ["agent", "run", "--poll", "--api-url", "http://127.0.0.1:9/api/v3"])
    bad = runner.invoke(app, ["agent", "run", "--poll", "--api-url", "nowhere"])

    assert good.exit_code == 0, good.output
    assert [launch.api_url for launch in launches] == ["http://127.0.0.1:9/api/v3"]
    assert bad.exit_code == 2
    assert "--api-url 'nowhere' is not an http(s) URL" in bad.stderr
