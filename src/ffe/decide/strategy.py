"""The Strategy port and the registry of built-in strategies.

A strategy maps a point-in-time ``History`` to target positions: an array of shape
``(len(history), n_symbols)`` where a number is an instruction ("hold this signed fraction
of equity in this symbol from now on") and NaN means "no new instruction". Row ``i`` may
depend only on bars ``0..i``. The engine can therefore ask once for the whole history (fast)
or bar by bar with a growing history (how the paper agent runs); both give the same rows,
and the engine checks that on every run (see ``ffe.backtest.causality``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from ffe.decide import plugins
from ffe.domain.errors import StrategyError
from ffe.domain.market import FloatArray, History
from ffe.domain.orders import Decision


@runtime_checkable
class Strategy(Protocol):
    """Turns history into target positions. See the module docstring for the contract."""

    name: ClassVar[str]

    def targets(self, history: History) -> FloatArray:
        """Target weights for every bar of ``history``; NaN where there is no instruction."""
        ...

    def warmup(self) -> int:
        """Bars of history needed before the first instruction can appear."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class Explained:
    """Targets together with the decisions behind them (one per decision bar and symbol)."""

    targets: FloatArray
    decisions: tuple[Decision, ...] = ()


@runtime_checkable
class ExplainingStrategy(Strategy, Protocol):
    """A strategy that can also say why: its decisions carry confidence and a rationale,
    which the journal stores. ``explain(h).targets`` must equal ``targets(h)``."""

    def explain(self, history: History) -> Explained:
        """Targets for every bar of ``history`` and the decisions that produced them."""
        ...


@runtime_checkable
class SharingStrategy(Strategy, Protocol):
    """A strategy whose indicators can be shared between parameter sets run over one history:
    a sweep of ``sma_cross`` computes each moving-average window once, not once per point.
    ``targets_sharing(h, shared)`` must equal ``targets(h)`` bit for bit; ``shared`` holds
    arrays computed from ``h`` alone (the caller gives each history its own mapping), under
    keys the strategy chooses."""

    def targets_sharing(self, history: History, shared: dict[Hashable, FloatArray]) -> FloatArray:
        """Target weights for every bar of ``history``, reusing and filling ``shared``."""
        ...


@runtime_checkable
class BoundedStrategy(Strategy, Protocol):
    """A strategy whose newest target depends only on its last ``memory()`` bars: asked about
    only those (or more) it ends with the row it gives for the whole history, to within the
    rounding of running sums. The live agent then asks it about a bounded window of bars
    (``ffe.agent.stepper.StrategyStepper``) instead of everything it has seen."""

    def memory(self) -> int:
        """Bars of history the newest target depends on."""
        ...


def explain(strategy: Strategy, history: History) -> Explained:
    """``strategy.explain`` when it has one, otherwise its targets with no decisions."""
    if isinstance(strategy, ExplainingStrategy):
        return strategy.explain(history)
    return Explained(strategy.targets(history))


_REGISTRY: dict[str, Callable[..., Strategy]] = {}
# Built-ins whose module is heavy to import (scipy, sklearn, the forecasting libraries): the
# module registers the strategy when it is first asked for by name, so a backtest of
# sma_cross (and every spawned sweep worker) does not pay a second of imports for it.
_LAZY: dict[str, str] = {"ensemble": "ffe.decide.ensemble"}


def register(cls: type[Any]) -> type[Any]:
    """Class decorator: make a dataclass strategy available by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def available() -> list[str]:
    """Names of every strategy: built-in, installed (entry points), exposed from files."""
    _load_builtins()
    return sorted({*_builtin_names(), *plugins.names()})


def offer_files(paths: list[Path]) -> dict[str, str]:
    """Offer every strategy class in ``paths`` by its ``name`` (the ``strategies.files``
    setting), refusing a name a built-in has; returns name -> ``path:Class``."""
    _load_builtins()
    return plugins.expose_files(paths, taken=_builtin_names())


def make_strategy(name: str, params: Mapping[str, Any] | None = None) -> Strategy:
    """Build a strategy by name (or ``path/to/file.py:Class``), converting and checking
    parameters (strings are accepted)."""
    factory = _lookup(name)
    if factory is None:
        raise StrategyError(
            f"unknown strategy {name!r}; available: {', '.join(available())} "
            "(or a class in a file: path/to/file.py:ClassName)"
        )
    return factory(**_coerce_params(name, factory, dict(params or {})))


def shares_indicators(name: str) -> bool:
    """Whether strategy ``name`` is a ``SharingStrategy`` (False for an unknown name)."""
    # Asked of the class, before any parameter set is built: issubclass cannot take a
    # protocol with data members (``name``), so look for the method itself.
    return callable(getattr(_lookup(name), "targets_sharing", None))


def parameters(name: str) -> dict[str, Any]:
    """The parameters of a strategy with their defaults (those only settings set included)."""
    return {field.name: field.default for field in _fields(name)}


_SETTING = "ffe.server_setting"  # dataclass field metadata: the setting that holds it
_T = TypeVar("_T")


def server_setting(default: _T, setting: str) -> _T:
    """A strategy parameter only the server's settings may set: one that names a host, a
    path, a number of processes or a time budget. ``setting`` is the setting that holds it
    (e.g. ``llm.base_url``). Requests to the API may not name it (see ``settings_only``)."""
    found: _T = dataclasses.field(default=default, metadata={_SETTING: setting})
    return found


def settings_only(name: str) -> dict[str, str]:
    """The parameters of strategy ``name`` that only settings may set, each with its setting."""
    return {
        field.name: field.metadata[_SETTING]
        for field in _fields(name)
        if _SETTING in field.metadata
    }


def caller_parameters(name: str) -> dict[str, Any]:
    """The parameters of strategy ``name`` a caller (an API request) may set, with defaults."""
    return {f.name: f.default for f in _fields(name) if _SETTING not in f.metadata}


def refuse_settings_only(name: str, params: Iterable[str]) -> None:
    """Raise ``StrategyError`` naming the first of ``params`` that only settings may set."""
    held = settings_only(name)
    for param in params:
        if param in held:
            raise StrategyError(settings_only_message(name, param, held[param]))


def settings_only_message(strategy: str, param: str, setting: str) -> str:
    """Why a request may not set ``param``, and what to do instead."""
    return (
        f"{param} is a server setting ({setting}), not a parameter a request may set: remove "
        f"it from the parameters of strategy {strategy!r}; the server's operator configures it"
    )


def plain_params(strategy: Strategy, names: Iterable[str] | None = None) -> dict[str, Any]:
    """The parameters of ``strategy`` that are plain values (numbers, text, flags): what a
    run records and shows. ``names``: those, as the strategy holds them (any strategy);
    else every field of a dataclass strategy. A secret (``SecretStr``) is never one."""
    if names is None:
        if not dataclasses.is_dataclass(strategy):
            return {}
        names = [f.name for f in dataclasses.fields(strategy) if f.init]
    values = {name: getattr(strategy, name) for name in names}
    return {k: v for k, v in values.items() if isinstance(v, int | float | str | bool)}


def _fields(name: str) -> list[dataclasses.Field[Any]]:
    factory = _lookup(name)
    if factory is None:
        raise StrategyError(f"unknown strategy {name!r}; available: {', '.join(available())}")
    return _init_fields(factory)


def _init_fields(factory: Any) -> list[dataclasses.Field[Any]]:
    # A user strategy need not be a dataclass: then it takes no parameters.
    if not dataclasses.is_dataclass(factory):
        return []
    return [field for field in dataclasses.fields(factory) if field.init]


def _coerce_params(name: str, factory: Any, params: dict[str, Any]) -> dict[str, Any]:
    fields = {field.name: field for field in _init_fields(factory)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise StrategyError(
            f"strategy {name!r} has no parameter {', '.join(unknown)}; "
            f"its parameters are: {', '.join(fields) or 'none'}"
        )
    coerced: dict[str, Any] = {}
    for key, value in params.items():
        kind = type(fields[key].default)
        try:
            coerced[key] = _convert(kind, value)
        except ValueError:
            raise StrategyError(
                f"parameter {key}={value!r} of strategy {name!r} must be {kind.__name__}"
            ) from None
    return coerced


def _convert(kind: type, value: Any) -> Any:
    if kind not in (int, float, str, bool) and isinstance(value, kind):
        return value  # a secret given as one stays as it is
    if kind is int:
        number = float(value)
        if not number.is_integer():
            raise ValueError
        return int(number)
    if kind is bool and isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return kind(value)


def _lookup(name: str) -> Callable[..., Strategy] | None:
    if plugins.is_file_spec(name):
        return plugins.load_file(name)
    _load_builtins()
    if name not in _REGISTRY and name in _LAZY:
        import importlib

        importlib.import_module(_LAZY[name])
    return _REGISTRY.get(name) or plugins.named(name)


def _load_builtins() -> None:
    # Importing the module registers the built-ins; done lazily to keep `ffe --help` fast.
    from ffe.decide import strategies  # noqa: F401

    plugins.warn_shadowed(_builtin_names())  # the built-in wins, and the log says so


def _builtin_names() -> set[str]:
    return {*_REGISTRY, *_LAZY}


def source(name: str) -> dict[str, str]:
    """Where strategy ``name`` comes from: ``{"source": "built-in"}``, ``"file"`` (the
    settings' strategies.files) or ``"package"`` with ``"package": <distribution>``."""
    _load_builtins()
    if name in _builtin_names():
        return {"source": "built-in"}
    package = plugins.package_of(name)
    return {"source": "file"} if package is None else {"source": "package", "package": package}


def shadowed() -> list[dict[str, str]]:
    """Installed entry points never used because a built-in has their name."""
    _load_builtins()
    return [each.as_dict() for each in plugins.shadowed(_builtin_names())]
