"""User strategies: classes loaded from a file (``path/to/mine.py:MyStrategy``) or from an
installed package's ``ffe.strategies`` entry point.

A user strategy keeps the built-ins' contract (see ``ffe.decide.strategy.Strategy``): a
``name`` class attribute, ``warmup()`` and ``targets(history)``; no registration. A file's
text is read once in the process that names it; worker processes (a spawned pool, a cluster
task) get that text by value (``carried``/``install``) and never open the path, so they run
the code the caller read, and the run records its SHA-256 (``source_of``).

Names: a built-in's name is the built-in's. An installed entry point of the same name is never
loaded; a warning names its package (``warn_shadowed``) and ``GET /api/v1/strategies`` lists
it under ``shadowed``. A file the settings offer may take neither a built-in's name nor an
installed entry point's, and two packages may not offer the same name: both are refused,
naming both sides.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import sys
import traceback
import types
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ffe.compute.carry import carry
from ffe.domain.errors import StrategyError

GROUP = "ffe.strategies"  # the entry-point group installed packages declare strategies in

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StrategySource:
    """A strategy file's text as read, keyed by the path it was named by."""

    path: str
    text: str

    @property
    def sha256(self) -> str:
        """The SHA-256 of the file's text (UTF-8), as recorded with a run."""
        return hashlib.sha256(self.text.encode()).hexdigest()


_SOURCES: dict[str, StrategySource] = {}  # by path as named: read here, or carried here
_CLASSES: dict[str, type[Any]] = {}  # by ``path:Class``
_ORIGIN: dict[type[Any], StrategySource] = {}  # the file each loaded class came from
_NAMED: dict[str, str] = {}  # name -> ``path:Class``, for files the server's settings list
_PLUGINS: dict[str, type[Any]] = {}  # entry points loaded, by name


def is_file_spec(name: str) -> bool:
    """Whether ``name`` names a class in a file (``something.py:Class``), not a strategy."""
    path, sep, cls = name.rpartition(":")
    return bool(sep) and path.endswith(".py") and bool(cls)


def looks_like_path(name: str) -> bool:
    """Whether ``name`` names a file, in any form (the API refuses those)."""
    return is_file_spec(name) or any(c in name for c in "/\\:") or name.endswith(".py")


def load_file(spec: str) -> type[Any]:
    """The class ``spec`` (``path/to/file.py:Class``) names, its file read once per process."""
    if spec in _CLASSES:
        return _CLASSES[spec]
    path, _, name = spec.rpartition(":")
    source = _SOURCES.get(path) or _read(path)
    module = _execute(source)
    found = getattr(module, name, None)
    if not isinstance(found, type):
        classes = sorted(k for k, v in vars(module).items() if isinstance(v, type))
        raise StrategyError(
            f"{path} has no class {name!r}; classes defined or imported there: "
            f"{', '.join(classes) or 'none'}"
        )
    check_contract(found, f"class {name} in {path}")
    _SOURCES[path] = source
    _CLASSES[spec] = found
    _ORIGIN[found] = source
    return found


def expose_files(paths: list[Path], taken: Collection[str] = ()) -> dict[str, str]:
    """Make every strategy class in ``paths`` available by its ``name`` (the server's
    ``strategies.files``); returns name -> ``path:Class``. A name in ``taken`` (the
    built-ins) or given by two classes is refused: which one a request meant is unknown."""
    exposed: dict[str, str] = {}
    installed = {point.name: point for point in _points()}
    for path in paths:
        for spec in _strategy_classes(path):
            name = cast("Any", load_file(spec)).name
            if name in taken or name in exposed or name in installed:
                other = (
                    "a built-in strategy"
                    if name in taken
                    else exposed.get(name) or f"the entry point {_described(installed[name])}"
                )
                raise StrategyError(
                    f"{spec} is named {name!r}, as {other} is: give one of them another "
                    "`name` (strategies.files offers each strategy by its name)"
                )
            exposed[name] = spec
    _NAMED.update(exposed)
    return exposed


def _strategy_classes(path: Path) -> list[str]:
    try:
        module = _execute(_SOURCES.get(str(path)) or _read(str(path)))
    except StrategyError as exc:
        raise StrategyError(f"{exc} (listed in the setting strategies.files)") from None
    return [
        f"{path}:{attr}"
        for attr, value in vars(module).items()
        if isinstance(value, type) and value.__module__ == module.__name__ and not _missing(value)
    ]


def named(name: str) -> type[Any] | None:
    """A strategy exposed by name from a settings file, or an installed entry point."""
    if name in _NAMED:
        return load_file(_NAMED[name])
    return _entry_point(name)


def names() -> list[str]:
    """Names of strategies exposed from settings files and installed entry points."""
    return sorted({*_NAMED, *(point.name for point in _points())})


_SCANNED: dict[tuple[str, ...], importlib.metadata.EntryPoints] = {}


def _points() -> importlib.metadata.EntryPoints:
    # Scanning every installed distribution takes milliseconds: once per sys.path, not once
    # per API request (a package installed later is seen after a restart).
    key = tuple(sys.path)
    if key not in _SCANNED:
        _SCANNED.clear()
        _SCANNED[key] = importlib.metadata.entry_points(group=GROUP)
    return _SCANNED[key]


@dataclass(frozen=True, slots=True)
class Shadowed:
    """An installed entry point never loaded: a built-in strategy has its name."""

    name: str
    package: str  # the distribution that declares it
    value: str  # ``module:Class``

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "package": self.package, "entry_point": self.value}


def shadowed(builtins: Collection[str]) -> list[Shadowed]:
    """The installed entry points whose name a built-in in ``builtins`` has, by name."""
    found = [
        Shadowed(point.name, _package(point), point.value)
        for point in _points()
        if point.name in builtins
    ]
    return sorted(found, key=lambda s: (s.name, s.package))


_WARNED: set[Shadowed] = set()


def warn_shadowed(builtins: Collection[str]) -> list[Shadowed]:
    """``shadowed``, each logged as a warning once per process: the built-in wins."""
    found = shadowed(builtins)
    for each in found:
        if each not in _WARNED:
            _WARNED.add(each)
            log.warning(
                "package %s offers a strategy named %r (entry point %s), as a built-in "
                "strategy is named: the built-in is used and the package's never loaded; "
                "ask for another name in its [project.entry-points.\"ffe.strategies\"]",
                each.package, each.name, each.value,
            )  # fmt: skip
    return found


def package_of(name: str) -> str | None:
    """The distribution whose entry point offers strategy ``name`` (None for none)."""
    points = _points().select(name=name)
    return _package(next(iter(points))) if points else None


def _package(point: importlib.metadata.EntryPoint) -> str:
    dist = point.dist
    return dist.name if dist is not None else "(unknown package)"


def _described(point: importlib.metadata.EntryPoint) -> str:
    return f"{point.value} of package {_package(point)}"


def source_of(cls: type[Any]) -> StrategySource | None:
    """The file a user strategy class was loaded from (None for any other class)."""
    return _ORIGIN.get(cls)


def recorded(strategy: object) -> dict[str, Any]:
    """What a run records of a strategy from a file: ``{"strategy_file": {path, class,
    sha256}}``, so a run tells which text ran; empty for any other strategy."""
    return _recorded(type(strategy))


def recorded_by_name(name: str) -> dict[str, Any]:
    """``recorded`` for strategy ``name`` before any is built (a sweep's, a study's): a
    ``path:Class`` or a name the settings' files offer; empty for any other name."""
    spec = name if is_file_spec(name) else _NAMED.get(name)
    return {} if spec is None else _recorded(load_file(spec))


def _recorded(cls: type[Any]) -> dict[str, Any]:
    source = _ORIGIN.get(cls)
    if source is None:
        return {}
    path, sha256 = source.path, source.sha256
    return {"strategy_file": {"path": path, "class": cls.__name__, "sha256": sha256}}


def carried() -> tuple[dict[str, StrategySource], dict[str, str]]:
    """What a worker process needs to build the file strategies named here: their text."""
    return dict(_SOURCES), dict(_NAMED)


def install(state: tuple[dict[str, StrategySource], dict[str, str]]) -> None:
    """In a worker: take the file texts ``carried`` gave, so no file is opened here."""
    sources, exposed = state
    for path, source in sources.items():
        _SOURCES.setdefault(path, source)
    for name, spec in exposed.items():
        _NAMED.setdefault(name, spec)


carry(carried, install)


def check_contract(cls: type[Any], what: str) -> None:
    """Refuse a class without the strategy contract, naming what it lacks."""
    missing = _missing(cls)
    if missing:
        raise StrategyError(
            f"{what} is not a strategy: it lacks {', '.join(missing)} (a strategy has a "
            "`name` class attribute (a string), `warmup(self) -> int` and "
            "`targets(self, history) -> array`)"
        )


def _missing(cls: type[Any]) -> list[str]:
    missing = [] if isinstance(getattr(cls, "name", None), str) else ["a `name` class attribute"]
    for method in ("warmup", "targets"):
        if not callable(getattr(cls, method, None)):
            missing.append(f"a `{method}` method")
    return missing


def _read(path: str) -> StrategySource:
    file = Path(path)
    if not file.is_file():
        raise StrategyError(
            f"strategy file {path} not found (looked in {file.resolve().parent}): name an "
            "existing file as path/to/file.py:ClassName"
        )
    return StrategySource(path, file.read_text(encoding="utf-8"))


def _execute(source: StrategySource) -> types.ModuleType:
    # One module per text: a name from its hash, so the same text is the same module, in
    # sys.modules as dataclasses (and pickle) look classes' modules up there.
    module_name = f"ffe_user_strategy_{source.sha256[:16]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    module = types.ModuleType(module_name)
    module.__file__ = source.path
    sys.modules[module_name] = module
    try:
        exec(compile(source.text, source.path, "exec"), module.__dict__)
    except Exception as exc:
        del sys.modules[module_name]
        trace = "".join(traceback.format_exception(exc)[-3:]).strip()
        raise StrategyError(f"importing strategy file {source.path} failed:\n{trace}") from None
    return module


def _entry_point(name: str) -> type[Any] | None:
    if name in _PLUGINS:
        return _PLUGINS[name]
    points = list(_points().select(name=name))
    if not points:
        return None
    if len(points) > 1:
        raise StrategyError(
            f"strategy {name!r} is offered by more than one installed package: "
            f"{', '.join(_described(p) for p in points)}; uninstall all but one"
        )
    point = points[0]
    try:
        found = point.load()
    except Exception as exc:
        raise StrategyError(
            f"strategy {name!r} from entry point {point.value} failed to load: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(found, type):
        raise StrategyError(f"entry point {name!r} ({point.value}) is not a class")
    check_contract(found, f"entry point {name!r} ({point.value})")
    _PLUGINS[name] = found
    return found
