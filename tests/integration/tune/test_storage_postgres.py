"""Studies on PostgreSQL: Optuna's tables in a schema of their own beside the journal's."""

from __future__ import annotations

import dataclasses
import gc
import uuid

import optuna
import psycopg
import pytest
import sqlalchemy
from tests.conftest import POSTGRES_URL, require_postgres

from ffe import bootstrap
from ffe.backtest.walkforward import WalkForwardSpec
from ffe.compute import LocalExecutor
from ffe.config import Settings
from ffe.data import SyntheticMarket
from ffe.domain import ConfigError
from ffe.tune.lease import StudyLease
from ffe.tune.report import render_tune_report
from ffe.tune.space import parse_space
from ffe.tune.storage import delete_study, list_studies, loaded_study, show_study
from ffe.tune.study import TuneSpec, run_study


def test_study_when_journal_on_postgres_then_stored_beside_it_resumed_and_deleted() -> None:
    require_postgres()
    settings = Settings(database={"url": POSTGRES_URL})  # type: ignore[arg-type]
    url = bootstrap.tune_options(settings).storage_url
    name = f"test-{uuid.uuid4().hex[:12]}"  # the database is shared: a name of this test's own
    spec = TuneSpec(
        "sma_cross", parse_space(["fast=2..10", "slow=12..40"]), WalkForwardSpec(200, 100),
        trials=4, batch_size=2,
    )  # fmt: skip
    market = SyntheticMarket(1, 700, seed=11).to_market()
    try:
        run_study(market, spec, LocalExecutor(1), url, name)
        again = run_study(market, dataclasses.replace(spec, trials=6), LocalExecutor(1), url, name)

        assert again.resumed == 4
        assert again.trials == 6
        assert name in [s.name for s in list_studies(url)]
        summary, trials = show_study(url, name)
        assert len(trials) == 6
        assert summary.setup["strategy"] == "sma_cross"
    finally:
        if name in optuna.get_all_study_names(url):
            delete_study(url, name)
    assert name not in optuna.get_all_study_names(url)


def _connections(application: str) -> int:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        row = connection.execute(query, (application,)).fetchone()
    return int(row[0]) if row else 0


def test_storage_when_study_run_listed_shown_reported_and_deleted_then_no_connection_left() -> None:
    # The API opens a storage for every request on the Optimization page: one whose engine
    # is not disposed keeps its pooled connections until a garbage collection, and a page
    # polled a few times holds the server's connections. gc off: no collection hides it.
    require_postgres()
    application = f"ffe-test-{uuid.uuid4().hex[:12]}"
    settings = Settings(database={"url": POSTGRES_URL})  # type: ignore[arg-type]
    url = f"{bootstrap.tune_options(settings).storage_url}&application_name={application}"
    name = f"test-{uuid.uuid4().hex[:12]}"
    spec = TuneSpec(
        "sma_cross", parse_space(["fast=2..10", "slow=12..40"]), WalkForwardSpec(200, 100),
        trials=2, batch_size=2,
    )  # fmt: skip
    market = SyntheticMarket(1, 500, seed=3).to_market()
    gc.disable()
    try:
        run_study(market, spec, LocalExecutor(1), url, name)
        list_studies(url)
        show_study(url, name)
        with loaded_study(url, name) as study:
            render_tune_report(study)
        delete_study(url, name)

        assert _connections(application) == 0
    finally:
        gc.enable()


def test_lease_when_study_held_by_another_connection_then_refused_until_released() -> None:
    require_postgres()
    settings = Settings(database={"url": POSTGRES_URL})  # type: ignore[arg-type]
    engine = sqlalchemy.create_engine(bootstrap.tune_options(settings).storage_url)
    name = f"test-{uuid.uuid4().hex[:12]}"
    try:
        first = StudyLease(engine, name)
        with pytest.raises(ConfigError, match="being run by another process"):
            StudyLease(engine, name)
        other = StudyLease(engine, f"{name}-other")  # another study: its own lease
        first.release()
        again = StudyLease(engine, name)  # released: taken again, and held again
        with pytest.raises(ConfigError, match="being run by another process"):
            StudyLease(engine, name)
        again.release()
        other.release()
    finally:
        engine.dispose()
