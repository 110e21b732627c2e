from __future__ import annotations

import pytest

from ffe.domain import ConfigError
from ffe.tune.space import Dimension, edges, grid_size, parse_space, space_from_dicts


def test_parse_space_when_ranges_and_lists_then_integer_float_and_choice_dimensions() -> None:
    fast, top, slow, mode = parse_space(
        ["fast=5..60", "top=0.1..0.5", "slow=20..250:10", "mode=a,b"]
    )

    assert (fast.integer, fast.low, fast.high, fast.step) == (True, 5, 60, None)
    assert (top.integer, top.step) == (False, None)
    assert slow.values()[:3] == [20, 30, 40]
    assert slow.values()[-1] == 250
    assert mode.choices == ("a", "b")


@pytest.mark.parametrize("spec", ["fast", "fast=", "slow=60..20", "fast=1..5:0"])
def test_parse_space_when_malformed_then_config_error(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_space([spec])


def test_parse_space_when_a_name_twice_or_none_then_refused() -> None:
    with pytest.raises(ConfigError, match="twice"):
        parse_space(["fast=1..5", "fast=2..6"])
    with pytest.raises(ConfigError, match="empty"):
        parse_space([])


def test_grid_when_continuous_float_range_then_asks_for_a_step() -> None:
    (top,) = parse_space(["top=0.1..0.5"])

    with pytest.raises(ConfigError, match="needs a step"):
        grid_size([top])
    assert grid_size(parse_space(["fast=5..60:5", "mode=a,b"])) == 12 * 2


def test_on_edge_when_best_at_either_end_of_a_range_then_named() -> None:
    space = parse_space(["fast=5..60", "slow=20..250:20", "mode=a,b", "n=1,5,9"])

    assert edges(space, {"fast": 5, "slow": 100, "mode": "a", "n": 5}) == ["fast"]
    # 20..250:20 stops at 240: that is its top, not 250.
    assert edges(space, {"fast": 30, "slow": 240, "mode": "b", "n": 9}) == ["slow", "n"]
    assert edges(space, {"fast": 30, "slow": 100, "mode": "b", "n": 5}) == []


def test_to_dict_when_read_back_then_the_same_space() -> None:
    space = parse_space(["fast=5..60", "top=0.1..0.5:0.1", "mode=a,b"])

    assert space_from_dicts([d.to_dict() for d in space]) == space
    assert str(space[1]) == "top=0.1..0.5:0.1"
    assert isinstance(space[0], Dimension)
