"""What the composition root decides from settings: how many processes a pool may start."""

from __future__ import annotations

import pytest

from ffe import bootstrap
from ffe.config import Settings
from ffe.domain import StrategyError


def capped(n: int) -> Settings:
    return Settings(compute={"max_workers": n})  # type: ignore[arg-type]


def test_pool_size_when_asked_for_more_than_the_cap_then_the_cap() -> None:
    assert bootstrap.pool_size(capped(2), 100_000) == 2


def test_pool_size_when_asked_for_less_or_nothing_then_that_or_the_cap() -> None:
    assert bootstrap.pool_size(capped(4), 3) == 3
    assert bootstrap.pool_size(capped(4), 0) == 4
    assert bootstrap.pool_size(capped(4), None) == 4


def test_max_workers_when_not_set_then_the_machines_cores() -> None:
    import os

    assert bootstrap.max_workers(Settings(compute={"max_workers": None})) == (os.cpu_count() or 1)  # type: ignore[arg-type]


def test_strategy_when_workers_above_the_cap_then_the_cap() -> None:
    made = bootstrap.strategy(capped(2), "ensemble", {"workers": "100000"})

    assert made.workers == 2  # type: ignore[attr-defined]


def test_strategy_when_workers_not_given_then_the_cap() -> None:
    made = bootstrap.strategy(capped(3), "ensemble", {"window": 200})

    assert (made.workers, made.window) == (3, 200)  # type: ignore[attr-defined]


def test_strategy_params_when_not_filling_then_only_given_pool_sizes_capped() -> None:
    settings = capped(2)

    assert bootstrap.strategy_params(settings, "ensemble", {"window": 9}, fill=False) == {
        "window": 9
    }
    assert bootstrap.strategy_params(settings, "ensemble", {"workers": 7}, fill=False) == {
        "workers": 2
    }


def test_strategy_params_when_strategy_has_no_pool_then_unchanged() -> None:
    assert bootstrap.strategy_params(capped(1), "sma_cross", {"fast": "5"}) == {"fast": "5"}


def test_strategy_params_when_workers_not_a_number_then_error_names_it() -> None:
    with pytest.raises(StrategyError, match="workers"):
        bootstrap.strategy_params(capped(2), "ensemble", {"workers": "many"})


def on(executor: str, address: str | None = None) -> Settings:
    return Settings(compute={"executor": executor, "ray_address": address})  # type: ignore[arg-type]


def test_executor_when_local_then_a_pool_of_the_requested_size() -> None:
    from ffe.compute import LocalExecutor

    built = bootstrap.executor(on("local"), 1)

    assert isinstance(built, LocalExecutor)
    assert built.workers == 1


def test_executor_when_ray_without_address_then_config_error_says_what_to_set() -> None:
    from ffe.domain import ConfigError

    with pytest.raises(ConfigError, match=r"compute\.ray_address.*ray start --head"):
        bootstrap.executor(on("ray"))


def test_executor_when_ray_not_installed_then_config_error_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from ffe.domain import ConfigError

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError

    with pytest.raises(ConfigError, match=r"pip install 'ffe\[ray\]'"):
        bootstrap.executor(on("ray", "127.0.0.1:46999"))


def test_executor_when_ray_address_unreachable_then_config_error_naming_it() -> None:
    import socket

    from ffe.domain import ConfigError

    pytest.importorskip("ray")
    with socket.socket() as free:  # a port of this machine with nothing listening
        free.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{free.getsockname()[1]}"

    with pytest.raises(ConfigError, match=f"no Ray cluster answers at '{address}'"):
        bootstrap.executor(on("ray", address))


def test_tune_options_when_nothing_configured_then_sqlite_beside_the_journal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data={"dir": tmp_path}, tune={"batch_size": 4})  # type: ignore[arg-type]

    options = bootstrap.tune_options(settings)

    assert options.storage_url == f"sqlite:///{(tmp_path / 'tune.db').as_posix()}"
    assert (options.batch_size, options.max_trials) == (4, 500)


def test_tune_options_when_postgres_journal_then_psycopg_in_a_schema_of_its_own() -> None:
    settings = Settings(database={"url": "postgresql+asyncpg://ffe:pw@db:5432/ffe"})  # type: ignore[arg-type]

    url = bootstrap.tune_options(settings).storage_url

    assert url == "postgresql+psycopg://ffe:pw@db:5432/ffe?options=-csearch_path%3Dffe_tune"


def test_tune_options_when_storage_url_set_then_used_as_given() -> None:
    settings = Settings(tune={"storage_url": "sqlite:////srv/studies.db"})  # type: ignore[arg-type]

    assert bootstrap.tune_options(settings).storage_url == "sqlite:////srv/studies.db"
