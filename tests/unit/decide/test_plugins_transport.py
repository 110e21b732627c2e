"""A strategy file travels to worker processes by its text, not its path: a spawned pool's
workers and a Ray task build the class the caller read, even once the file has changed."""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from tests.support.strategy_files import forgotten, write

from ffe.compute import LocalExecutor, in_order, ray_executor
from ffe.decide import plugins
from ffe.decide.strategy import make_strategy


@pytest.fixture(autouse=True)
def _forget() -> Iterator[None]:
    with forgotten():
        yield


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # A spawned worker starts with this process's sys.path, so it finds the module too.
    monkeypatch.syspath_prepend(str(Path(__file__).parents[2] / "support"))
    return importlib.import_module("executorwork")


def _read_then_changed(tmp_path: Path) -> tuple[str, str]:
    """A strategy file read here, then overwritten: ``spec`` and the SHA-256 of what was read."""
    path = write(tmp_path, name="travelling")
    read = hashlib.sha256(path.read_bytes()).hexdigest()
    make_strategy(f"{path}:Mine")
    path.write_text("raise RuntimeError('a worker read the file by its path')\n")
    return f"{path}:Mine", read


def test_pool_when_file_strategy_then_workers_build_the_text_read_here(
    work: ModuleType, tmp_path: Path
) -> None:
    spec, read = _read_then_changed(tmp_path)

    built = in_order(LocalExecutor(2).map(work.strategy_built, [spec] * 4, None), 4)

    assert {(name, sha) for name, sha, _ in built} == {("travelling", read)}
    assert any(pid != os.getpid() for _, _, pid in built)


class _Ref:
    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def hex(self) -> str:
        return hashlib.sha256(self.blob).hexdigest()


class _FakeRay:
    """``put`` and ``get`` through pickle, as the object store would."""

    def put(self, value: Any) -> _Ref:
        return _Ref(pickle.dumps(value))

    def get(self, ref: _Ref) -> Any:
        return pickle.loads(ref.blob)


def test_ray_batch_when_file_strategy_then_task_installs_its_text_first(
    work: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The task function itself, without a cluster: Ray's start costs many seconds.
    monkeypatch.setattr(ray_executor, "import_ray", _FakeRay)
    spec, read = _read_then_changed(tmp_path)
    box = pickle.loads(pickle.dumps(ray_executor._boxed(_FakeRay(), None)))
    for state in (plugins._SOURCES, plugins._CLASSES):
        state.clear()  # as in a fresh worker process

    results, _ = ray_executor._run_batch(work.strategy_built, box, [spec, spec])

    assert [(name, sha) for name, sha, _ in results] == [("travelling", read)] * 2
