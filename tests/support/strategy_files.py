"""User strategies for tests: a strategy file's text, and an installed distribution that
declares one through the ``ffe.strategies`` entry-point group."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ffe.decide import plugins

MINE = """
from dataclasses import dataclass
from typing import ClassVar

import numpy as np


@dataclass(frozen=True)
class Mine:
    name: ClassVar[str] = "{name}"
    lookback: int = 10
    scale: float = 1.0

    def warmup(self) -> int:
        return self.lookback

    def targets(self, history):
        out = np.full(history.close.shape, np.nan)
        out[self.lookback :] = self.scale
        return out


class NoTargets:
    name = "no_targets"

    def warmup(self) -> int:
        return 0
"""

ENTRY_POINTS = "[ffe.strategies]\nplugged = plugged_strategy:Mine\nbad = plugged_strategy:Nope\n"
_STATE = (plugins._SOURCES, plugins._CLASSES, plugins._NAMED, plugins._PLUGINS)


def write(folder: Path, text: str = MINE, name: str = "mine") -> Path:
    """``folder/name.py`` holding ``text``, whose class ``Mine`` is named ``name``."""
    path = folder / f"{name}.py"
    path.write_text(text.replace("{name}", name))
    return path


def install_dist(site: Path, points: str = ENTRY_POINTS, package: str = "plugged-strategy") -> Path:
    """A real distribution ``package`` in ``site`` (put it on sys.path): the module
    ``plugged_strategy`` (class Mine, named ``plugged``) and a dist-info declaring ``points``
    (by default ``plugged`` and ``bad``, which names no class). Several may share a site."""
    dist = site / f"{package.replace('-', '_')}-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(points)
    if not (site / "plugged_strategy.py").exists():
        write(site, name="plugged").rename(site / "plugged_strategy.py")
    return site


@contextlib.contextmanager
def forgotten() -> Iterator[None]:
    """Strategy files loaded inside are forgotten after (the loaded state is per process)."""
    saved = [dict(d) for d in _STATE]
    try:
        yield
    finally:
        for live, kept in zip(_STATE, saved, strict=True):
            live.clear()
            live.update(kept)
