"""The dashboard ranks a sweep the way the server does: by the direction the result carries
(``ffe.backtest.objective``), best first, rows without a value last."""

from __future__ import annotations

import json
import re

import pytest
from tests.support.node import run_module

from ffe.backtest.objective import DIRECTIONS
from ffe.web.render import static_root

ROWS = [{"value": 0.3}, {"value": None}, {"value": 0.1}, {"value": 0.2}]


@pytest.mark.parametrize(
    ("direction", "expected"),
    [("minimize", [0.1, 0.2, 0.3, None]), ("maximize", [0.3, 0.2, 0.1, None])],
)
def test_rank_rows_when_direction_given_then_best_first_and_missing_last(
    direction: str, expected: list[float | None]
) -> None:
    script = (
        'import { rankRows } from "./ranking.js";\n'
        f"const rows = rankRows({json.dumps(ROWS)}, {json.dumps(direction)});\n"
        "console.log(JSON.stringify(rows.map((r) => r.value)));"
    )

    assert run_module(script) == expected


def test_rank_rows_when_no_direction_then_highest_first_as_older_sweeps_were() -> None:
    script = (
        'import { rankRows } from "./ranking.js";\n'
        f"console.log(JSON.stringify(rankRows({json.dumps(ROWS)}).map((r) => r.value)));"
    )

    assert run_module(script) == [0.3, 0.2, 0.1, None]


def test_is_better_when_minimize_then_the_smaller_value() -> None:
    script = (
        'import { isBetter } from "./ranking.js";\n'
        'console.log(JSON.stringify([isBetter(1, 2, "minimize"), isBetter(1, 2, "maximize")]));'
    )

    assert run_module(script) == [True, False]


def test_app_better_table_agrees_with_the_server_directions() -> None:
    app = static_root().joinpath("js/app.js").read_text(encoding="utf-8")
    table = re.search(r"const BETTER = \{(.*?)\};", app, re.S)
    assert table is not None
    better = {name: int(sign) for name, sign in re.findall(r"(\w+): (-?1)", table.group(1))}

    assert better == {name: 1 if way == "maximize" else -1 for name, way in DIRECTIONS.items()}
