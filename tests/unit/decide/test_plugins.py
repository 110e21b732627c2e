"""User strategies: loaded from a file named on the command line, or an installed entry point."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.strategy_files import forgotten, install_dist, write

from ffe.decide import plugins
from ffe.decide.strategy import (
    available,
    make_strategy,
    offer_files,
    parameters,
    shadowed,
    source,
)
from ffe.domain import StrategyError


@pytest.fixture(autouse=True)
def _forget() -> Iterator[None]:
    with forgotten():
        yield


_STATE = (plugins._SOURCES, plugins._CLASSES, plugins._NAMED, plugins._PLUGINS)


def test_make_strategy_when_file_spec_then_class_built_with_coerced_params(tmp_path: Path) -> None:
    spec = f"{write(tmp_path)}:Mine"

    made = make_strategy(spec, {"lookback": "5", "scale": "0.5"})

    assert (made.name, made.lookback, made.scale) == ("mine", 5, 0.5)  # type: ignore[attr-defined]
    assert parameters(spec) == {"lookback": 10, "scale": 1.0}


def test_make_strategy_when_unknown_param_then_error_lists_the_classes_params(
    tmp_path: Path,
) -> None:
    with pytest.raises(StrategyError, match="no parameter speed; its parameters are: lookback"):
        make_strategy(f"{write(tmp_path)}:Mine", {"speed": 1})


def test_make_strategy_when_file_missing_then_error_names_it(tmp_path: Path) -> None:
    with pytest.raises(StrategyError, match=r"strategy file .*nowhere\.py not found"):
        make_strategy(f"{tmp_path / 'nowhere.py'}:Mine")


def test_make_strategy_when_no_such_class_then_error_lists_the_files_classes(
    tmp_path: Path,
) -> None:
    with pytest.raises(StrategyError, match=r"has no class 'Yours'.*Mine, NoTargets"):
        make_strategy(f"{write(tmp_path)}:Yours")


def test_make_strategy_when_class_lacks_targets_then_error_says_targets(tmp_path: Path) -> None:
    with pytest.raises(StrategyError, match="is not a strategy: it lacks a `targets` method"):
        make_strategy(f"{write(tmp_path)}:NoTargets")


def test_make_strategy_when_file_raises_on_import_then_error_shows_it(tmp_path: Path) -> None:
    path = write(tmp_path, "import numpy\n\nx = 1 / 0\n", name="broken")

    with pytest.raises(StrategyError, match=r"(?s)importing .*broken\.py failed.*line 3.*ZeroDiv"):
        make_strategy(f"{path}:Mine")


def test_make_strategy_when_worker_got_text_then_file_is_not_read_again(tmp_path: Path) -> None:
    path = write(tmp_path)
    make_strategy(f"{path}:Mine")
    state = plugins.carried()
    for live in _STATE:
        live.clear()
    path.write_text("raise RuntimeError('the worker read the path')\n")

    plugins.install(state)
    made = make_strategy(f"{path}:Mine")

    assert made.name == "mine"
    assert plugins.source_of(type(made)) == state[0][str(path)]


def test_source_of_when_file_strategy_then_sha256_of_its_text(tmp_path: Path) -> None:
    import hashlib

    path = write(tmp_path)

    made = make_strategy(f"{path}:Mine")

    source = plugins.source_of(type(made))
    assert source is not None
    assert source.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert plugins.source_of(type(make_strategy("sma_cross"))) is None


def test_recorded_by_name_when_file_spec_or_offered_name_then_path_class_and_sha256(
    tmp_path: Path,
) -> None:
    import hashlib

    path = write(tmp_path, name="offered_two")
    offer_files([path])
    wanted = {
        "strategy_file": {
            "path": str(path),
            "class": "Mine",
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
    }

    assert plugins.recorded_by_name(f"{path}:Mine") == wanted
    assert plugins.recorded_by_name("offered_two") == wanted
    assert plugins.recorded(make_strategy("offered_two")) == wanted
    assert plugins.recorded_by_name("sma_cross") == {}


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real installed distribution: a module and its dist-info on a sys.path entry."""
    site = install_dist(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("plugged_strategy", None)


def test_available_when_entry_point_installed_then_listed_and_made(installed: Path) -> None:
    assert "plugged" in available()

    made = make_strategy("plugged", {"lookback": "3"})

    assert (made.name, made.lookback) == ("plugged", 3)  # type: ignore[attr-defined]


def test_make_strategy_when_entry_point_broken_then_error_names_it(installed: Path) -> None:
    with pytest.raises(StrategyError, match=r"strategy 'bad' .*plugged_strategy:Nope.* failed"):
        make_strategy("bad")


def test_expose_files_when_settings_list_file_then_its_classes_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, name="exposed_one")

    exposed = plugins.expose_files([path])

    assert exposed == {"exposed_one": f"{path}:Mine"}
    assert "exposed_one" in available()
    assert make_strategy("exposed_one").name == "exposed_one"


@pytest.mark.parametrize("name", ["mine.py:Mine", "dir/mine", "a:b", "mine.py", "..\\x"])
def test_looks_like_path_when_path_forms_then_true(name: str) -> None:
    assert plugins.looks_like_path(name)


def test_looks_like_path_when_plain_name_then_false() -> None:
    assert not plugins.looks_like_path("sma_cross")


def test_expose_files_when_listed_file_missing_then_error_names_the_setting(
    tmp_path: Path,
) -> None:
    with pytest.raises(StrategyError, match=r"gone\.py not found.*strategies\.files"):
        plugins.expose_files([tmp_path / "gone.py"])


def test_offer_files_when_class_takes_a_builtin_name_then_refused(tmp_path: Path) -> None:
    path = write(tmp_path, name="sma_cross")

    with pytest.raises(StrategyError, match=r"Mine is named 'sma_cross', as a built-in strategy"):
        offer_files([path])


def test_offer_files_when_two_files_share_a_name_then_refused(tmp_path: Path) -> None:
    first = write(tmp_path, name="twin")
    (tmp_path / "again").mkdir()
    second = write(tmp_path / "again", name="twin")

    with pytest.raises(StrategyError, match=rf"again/twin\.py:Mine is named 'twin', as {first}"):
        offer_files([first, second])


SHADOWING = "[ffe.strategies]\nsma_cross = plugged_strategy:Mine\n"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A sys.path entry to install distributions in; warnings of earlier tests forgotten."""
    found = tmp_path / "site"
    found.mkdir()
    monkeypatch.syspath_prepend(str(found))
    monkeypatch.setattr(plugins, "_WARNED", set())
    yield found
    sys.modules.pop("plugged_strategy", None)


def test_make_strategy_when_entry_point_takes_a_builtin_name_then_builtin_and_warning(
    site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    install_dist(site, SHADOWING, package="shadowing-pkg")

    made = make_strategy("sma_cross", {"fast": 5, "slow": 20})
    make_strategy("sma_cross")  # warned once per process, not once per use

    assert type(made).__module__.startswith("ffe.decide.strategies")
    assert "plugged_strategy" not in sys.modules  # the package's class is never loaded
    warned = [r.getMessage() for r in caplog.records if r.name == "ffe.decide.plugins"]
    assert len(warned) == 1
    assert "package shadowing-pkg offers a strategy named 'sma_cross'" in warned[0]
    assert "plugged_strategy:Mine" in warned[0]
    assert "the built-in is used" in warned[0]
    assert shadowed() == [
        {"name": "sma_cross", "package": "shadowing-pkg", "entry_point": "plugged_strategy:Mine"}
    ]
    assert source("sma_cross") == {"source": "built-in"}


def test_make_strategy_when_two_packages_offer_one_name_then_error_names_both(site: Path) -> None:
    install_dist(site, "[ffe.strategies]\ntwice = plugged_strategy:Mine\n", package="first-pkg")
    install_dist(site, "[ffe.strategies]\ntwice = plugged_strategy:Mine\n", package="second-pkg")

    with pytest.raises(StrategyError, match="more than one installed package") as raised:
        make_strategy("twice")

    assert "of package first-pkg" in str(raised.value)
    assert "of package second-pkg" in str(raised.value)
    assert "uninstall all but one" in str(raised.value)


def test_offer_files_when_class_takes_an_entry_points_name_then_refused_naming_it(
    site: Path, tmp_path: Path
) -> None:
    install_dist(site)
    path = write(tmp_path, name="plugged")

    with pytest.raises(StrategyError, match=r"the entry point plugged_strategy:Mine of package"):
        offer_files([path])


def test_source_when_entry_point_or_file_then_says_which(site: Path, tmp_path: Path) -> None:
    install_dist(site)
    offer_files([write(tmp_path, name="from_file")])

    assert source("plugged") == {"source": "package", "package": "plugged-strategy"}
    assert source("from_file") == {"source": "file"}
    assert shadowed() == []
