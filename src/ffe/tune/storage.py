"""Where studies live: Optuna's own RDB storage, its tables and its synchronous driver.

A storage is an SQLAlchemy URL: a SQLite file (``sqlite:///path/tune.db``) or PostgreSQL
through psycopg 3 (``postgresql+psycopg://user@host/db``; Optuna's storage is synchronous,
so asyncpg cannot serve it). Optuna keeps an ``alembic_version`` table of its own, as the
journal does, so the two cannot share one schema: a PostgreSQL URL may name a schema of its
own in libpq's ``options`` (``?options=-csearch_path%3Dffe_tune``), which is created here if
it is missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ffe.backtest.objective import Direction
from ffe.domain.errors import ConfigError, NotFoundError
from ffe.tune.lease import StudyLease

if TYPE_CHECKING:
    import optuna

_SEARCH_PATH = re.compile(r"search_path\s*=\s*([A-Za-z_][A-Za-z0-9_]*)")
RESULT_ATTR = "ffe_result"  # the study's user attribute holding its last outcome
SETUP_ATTR = "ffe_setup"  # ... holding what it was made with
INTERRUPTED_ATTR = "ffe_interrupted"  # ... listing the trials an interruption failed


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's storage at ``url`` (its tables are made on first use)."""
    import optuna
    import sqlalchemy.exc

    try:
        _create_place(url)
        storage = optuna.storages.RDBStorage(url)
        if storage.engine.dialect.name == "sqlite":
            _relax_sqlite(storage)
        return storage
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        raise ConfigError(f"cannot open the study storage {_redacted(url)}: {exc}") from None


@contextmanager
def _opened(url: str) -> Iterator[optuna.storages.RDBStorage]:
    """``open_storage(url)``, its engine disposed on leaving: Optuna never disposes one, so
    its pooled connections stay open until a garbage collection finds the storage (the API
    opens a storage per request)."""
    storage = open_storage(url)
    try:
        yield storage
    finally:
        storage.engine.dispose()


def _relax_sqlite(storage: optuna.storages.RDBStorage) -> None:
    """WAL, and no fsync on each commit: a study writes a row per trial and segment, and a
    synced commit costs milliseconds (most of a 200-trial study's time, measured). A crash
    of the process loses nothing committed; a power cut may lose the last commits, which a
    resume runs again."""
    import sqlalchemy

    def pragmas(connection: Any, _: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    sqlalchemy.event.listen(storage.engine, "connect", pragmas)
    storage.engine.dispose()  # the connections Optuna opened already get them too


def _create_place(url: str) -> None:
    """Create the folder of a SQLite file, or the PostgreSQL schema ``url``'s search_path
    option names, when missing."""
    import sqlalchemy

    parsed = sqlalchemy.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        return
    options = parsed.query.get("options")
    text = " ".join(options) if isinstance(options, tuple) else (options or "")
    found = _SEARCH_PATH.search(text)
    if not parsed.drivername.startswith("postgresql") or found is None:
        return
    engine = sqlalchemy.create_engine(parsed)
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f'CREATE SCHEMA IF NOT EXISTS "{found.group(1)}"'))
    finally:
        engine.dispose()


def _redacted(url: str) -> str:
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return "(an unreadable URL)"


class StudyRecord:
    """A study as its storage holds it, written by the process driving the study.

    The driver samples and prunes on a copy of the study in memory (a pruner reads every
    trial at every segment: from the database that took most of a study's time) and writes
    each trial here when it starts (RUNNING, with its parameters) and when it ends."""

    def __init__(self, url: str, name: str, direction: Direction) -> None:
        import optuna

        self.storage = open_storage(url)
        try:
            # Before anything is read: trials another run has RUNNING are not interrupted.
            self._lease = StudyLease(self.storage.engine, name)
        except BaseException:
            self.storage.engine.dispose()
            raise
        try:
            self.study = optuna.create_study(
                storage=self.storage, study_name=name, direction=direction, load_if_exists=True
            )
            self._id = self.storage.get_study_id_from_name(name)
        except BaseException:
            self.close()  # the lease goes back now, not when the traceback is collected
            raise
        self._running: dict[int, int] = {}  # trial number -> the storage's trial id

    def close(self) -> None:
        """Give the study's lease back and close the storage's connections (``_opened``)."""
        self._lease.release()
        self.storage.engine.dispose()

    def check_setup(self, wanted: dict[str, Any]) -> None:
        """Record what a new study is made with; refuse to resume one made otherwise."""
        stored = self.study.user_attrs.get(SETUP_ATTR)
        if stored is None:
            self.study.set_user_attr(SETUP_ATTR, wanted)
            return
        if stored != wanted:
            changed = sorted(k for k in {*stored, *wanted} if stored.get(k) != wanted.get(k))
            hints = {
                "bars": "bars: the market now has other bars than it was tuned on",
                "strategy_file": "strategy_file: the strategy file's text or class changed "
                "since (its SHA-256 differs)",
            }
            said = "; ".join(hints[k] for k in changed if k in hints)
            raise ConfigError(
                f"study {self.study.study_name!r} cannot be resumed: its "
                f"{', '.join(changed)} differ from this run's{f' ({said})' if said else ''}. "
                "Run it with the same options on the same bars, or give a new --study name"
            )

    def fail_interrupted(self) -> list[dict[str, Any]]:
        """Fail the trials a run that stopped mid-batch left RUNNING; their parameters."""
        from optuna.trial import TrialState

        left = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        interrupted = list(self.study.user_attrs.get(INTERRUPTED_ATTR, []))
        for trial in left:
            self.study.tell(trial.number, state=TrialState.FAIL)
            interrupted.append(trial.number)
        if left:
            self.study.set_user_attr(INTERRUPTED_ATTR, interrupted)
        return [dict(trial.params) for trial in left]

    def started(self, trial: optuna.trial.FrozenTrial) -> None:
        """Write a trial as it starts: RUNNING, with its parameters (or whole, when it
        ended before it started: its parameters were refused)."""
        trial_id = self.storage.create_new_trial(self._id, trial)
        if not trial.state.is_finished():
            self._running[trial.number] = trial_id

    def ended(self, trial: optuna.trial.FrozenTrial) -> None:
        """Write what a started trial came to: its reports, attributes, state and value."""
        trial_id = self._running.pop(trial.number, None)
        if trial_id is None:
            return  # written whole when it started
        for step, value in sorted(trial.intermediate_values.items()):
            self.storage.set_trial_intermediate_value(trial_id, step, value)
        for key, value in trial.system_attrs.items():
            self.storage.set_trial_system_attr(trial_id, key, value)
        for key, value in trial.user_attrs.items():
            self.storage.set_trial_user_attr(trial_id, key, value)
        self.storage.set_trial_state_values(trial_id, trial.state, trial.values)


@dataclass(frozen=True, slots=True)
class StudySummary:
    """A study as ``ffe tune list`` shows it."""

    name: str
    created: str | None  # when its first trial started, ISO
    direction: str
    trials: dict[str, int]  # by state: complete, pruned, fail, running, waiting
    best_value: float | None
    best_params: dict[str, Any]
    setup: dict[str, Any]
    result: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created": self.created,
            "direction": self.direction,
            "trials": self.trials,
            "best_value": self.best_value,
            "best_params": self.best_params,
            "setup": self.setup,
            "result": self.result,
        }


def list_studies(url: str) -> list[StudySummary]:
    """Every study in the storage, the newest first."""
    import optuna

    with _opened(url) as storage:
        summaries = [
            _summary(optuna.load_study(study_name=name, storage=storage))
            for name in optuna.get_all_study_names(storage=storage)
        ]
    return sorted(summaries, key=lambda s: (s.created or "", s.name), reverse=True)


def load_study(url: str, name: str) -> optuna.Study:
    """Study ``name``; a NotFoundError naming the storage's studies when there is none. Its
    storage stays open: ``loaded_study`` closes it after use."""
    return _load(open_storage(url), name)


@contextmanager
def loaded_study(url: str, name: str) -> Iterator[optuna.Study]:
    """``load_study``, its storage's connections closed on leaving."""
    with _opened(url) as storage:
        yield _load(storage, name)


def _load(storage: optuna.storages.RDBStorage, name: str) -> optuna.Study:
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage=storage)
        known = ", ".join(names) if names else "none yet"
        raise NotFoundError(f"no study named {name!r}; studies: {known}") from None


def show_study(url: str, name: str) -> tuple[StudySummary, list[dict[str, Any]]]:
    """Study ``name``'s summary and its trials (number, state, value, parameters)."""
    with loaded_study(url, name) as study:
        return _summary(study), _trials(study)


def _trials(study: optuna.Study) -> list[dict[str, Any]]:
    return [
        {
            "number": t.number,
            "state": t.state.name.lower(),
            "value": t.value,
            "params": t.params,
            "segments": len(t.intermediate_values),
            **({"error": t.user_attrs["error"]} if "error" in t.user_attrs else {}),
        }
        for t in study.get_trials(deepcopy=False)
    ]


def delete_study(url: str, name: str) -> None:
    """Delete study ``name`` and its trials."""
    import optuna

    with _opened(url) as storage:
        _load(storage, name)  # a NotFoundError naming the studies there are, when absent
        optuna.delete_study(study_name=name, storage=storage)


def finished_trials(study: optuna.Study) -> int:
    """Trials that count towards the study's total: complete, pruned, or failed by their own
    error (not those an interruption failed, whose parameters were queued again)."""
    from optuna.trial import TrialState

    interrupted = set(study.user_attrs.get(INTERRUPTED_ATTR, []))
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    trials = study.get_trials(deepcopy=False, states=states)
    return sum(1 for trial in trials if trial.number not in interrupted)


def _summary(study: optuna.Study) -> StudySummary:
    trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for trial in trials:
        state = trial.state.name.lower()
        counts[state] = counts.get(state, 0) + 1
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    best = study.best_trial if complete else None
    return StudySummary(
        name=study.study_name,
        created=min(starts).isoformat() if starts else None,
        direction=study.direction.name.lower(),
        trials=counts,
        best_value=None if best is None else best.value,
        best_params={} if best is None else dict(best.params),
        setup=dict(study.user_attrs.get(SETUP_ATTR, {})),
        result=dict(study.user_attrs.get(RESULT_ATTR, {})),
    )
