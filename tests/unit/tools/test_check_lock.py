"""tools/check_lock.py: the committed locks satisfy pyproject.toml, and a lock that does not
is named with what is off."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[3]


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_lock", ROOT / "tools" / "check_lock.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_lock"] = module
    spec.loader.exec_module(module)
    return module


def test_committed_locks_satisfy_pyproject() -> None:
    assert _tool().main(["requirements.lock", "requirements-dev.lock"]) == 0


def test_lock_missing_a_requirement_then_named() -> None:
    found = _tool().problems_of("x.lock", {}, [Requirement("redis>=5,<9")], {})

    assert found == ["x.lock: redis<9,>=5 is in pyproject.toml but not locked"]


def test_pin_outside_range_then_named() -> None:
    locked = {"redis": {Version("9.0.0")}}

    found = _tool().problems_of("x.lock", locked, [Requirement("redis>=5,<9")], locked)

    assert found == ["x.lock: redis==9.0.0 is outside redis<9,>=5"]


def test_lock_disagreeing_with_dev_lock_then_named() -> None:
    locked = {"redis": {Version("8.1.0")}}
    reference = {"redis": {Version("8.2.0")}}

    found = _tool().problems_of("x.lock", locked, [Requirement("redis>=5,<9")], reference)

    assert found == ["x.lock: redis pinned at ['8.1.0'], the dev lock at ['8.2.0']"]


def test_lines_of_a_universal_lock_are_read_per_python(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    lock.write_text(
        "numpy==2.4.6 ; python_full_version < '3.12' \\\n"
        "    --hash=sha256:00\n"
        "numpy==2.5.5 ; python_full_version >= '3.12' \\\n"
        "    # via pandas\n",
        encoding="utf-8",
    )

    assert _tool().pins(lock) == {"numpy": {Version("2.4.6"), Version("2.5.5")}}


def test_deploy_lock_when_checked_then_against_its_own_requirements_file() -> None:
    tool = _tool()

    wanted = tool.requirements_file(ROOT / "deploy" / "tools" / "requirements.in")

    assert "checkov" in {requirement.name for requirement in wanted}
    assert tool.main(["requirements-deploy.lock"]) == 0


def test_requirements_file_when_read_then_comments_and_blanks_left_out(tmp_path: Path) -> None:
    path = tmp_path / "requirements.in"
    path.write_text("# tools\n\ncheckov>=3.2,<4   # policy\npyyaml>=6,<7\n", encoding="utf-8")

    found = _tool().requirements_file(path)

    assert [str(each) for each in found] == ["checkov<4,>=3.2", "pyyaml<7,>=6"]
