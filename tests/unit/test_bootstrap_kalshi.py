"""Wiring Kalshi from settings: the broker (demo unless production and the live switch), the
key pair, and the contract limits of the risk engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from ffe import bootstrap
from ffe.config import Settings
from ffe.domain.errors import ConfigError, DataError
from ffe.execution.kalshi_broker import DEMO_URL
from ffe.risk.contracts import ContractLimits


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("kalshi") / "demo.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def kalshi(key_file: Path, **fields: object) -> Settings:
    section = {"key_id": "key-1", "private_key_path": str(key_file), **fields}
    return Settings(agent={"broker": "kalshi"}, kalshi=section)


async def test_agent_broker_when_kalshi_then_demo_behind_breaker(key_file: Path) -> None:
    broker = bootstrap.agent_broker(kalshi(key_file), None, None)

    assert broker.name == "kalshi"
    assert broker.breaker.name == "kalshi"
    assert broker._broker.base_url == DEMO_URL
    await broker.close()


def test_agent_broker_when_production_without_live_switch_then_refused(key_file: Path) -> None:
    settings = kalshi(key_file, environment="production")

    assert bootstrap._real_money(settings)
    with pytest.raises(ConfigError, match="real money"):
        bootstrap.agent_broker(settings, None, None, live=False)


def test_settings_when_key_id_without_key_file_then_refused() -> None:
    with pytest.raises(ValidationError, match="go together"):
        Settings(kalshi={"key_id": "key-1"})


def test_agent_broker_when_key_file_missing_then_clear_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the Kalshi private key file"):
        bootstrap.agent_broker(kalshi(tmp_path / "absent.key"), None, None)


def test_risk_engine_when_contract_limits_set_then_checked() -> None:
    engine = bootstrap.risk_engine(
        Settings(risk={"max_contracts_per_market": 50, "max_contracts_per_event": 80})
    )

    limits = [c for c in engine.checks if isinstance(c, ContractLimits)]
    assert limits == [ContractLimits(50, 80)]
    assert not any(isinstance(c, ContractLimits) for c in bootstrap.risk_engine(Settings()).checks)


async def test_kalshi_feed_reads_public_data_or_configured_url() -> None:
    from ffe.bootstrap.venues import kalshi_feed
    from ffe.data.kalshi import PUBLIC_URL

    default = kalshi_feed(Settings())
    local = kalshi_feed(Settings(kalshi={"data_url": "http://127.0.0.1:9/trade-api/v2"}))

    assert (default.name, default.base_url) == ("kalshi", PUBLIC_URL)
    assert local.base_url == "http://127.0.0.1:9/trade-api/v2"
    await default.close()
    await local.close()


def test_recorded_contracts_when_recorded_beside_bars_then_given_to_the_agent(
    tmp_path: Path,
) -> None:
    from ffe.bootstrap.venues import recorded_contracts

    (tmp_path / "contracts").mkdir()
    record = {
        "symbol": "KX-E-A",
        "event": "KX-E",
        "expiry": "2026-12-08T00:00:00+00:00",
        "status": "finalized",
        "result": "no",
    }
    (tmp_path / "contracts" / "KX-E-A.json").write_text(json.dumps(record))
    (tmp_path / "contracts" / "KX-E-B.json").write_text("{not json")

    (found,) = recorded_contracts(tmp_path, ["KX-E-A", "SP500"])

    assert (found.symbol, found.event, found.settlement_price) == ("KX-E-A", "KX-E", 0.0)
    with pytest.raises(DataError, match="record the market again"):
        recorded_contracts(tmp_path, ["KX-E-B"])
