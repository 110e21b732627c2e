"""The Python examples in the README and docs/ run as written (like backtesting.py's TestDocs)."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _examples() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        for number, block in enumerate(BLOCK.findall(path.read_text(encoding="utf-8")), 1):
            found.append((f"{path.name}#{number}", block))
    return found


def test_docs_when_collected_then_there_are_examples() -> None:
    assert len(_examples()) >= 3


@pytest.mark.parametrize(("where", "code"), _examples(), ids=[w for w, _ in _examples()])
def test_docs_example_when_run_then_succeeds(
    where: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType("docs_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses look it up
    exec(compile(code, where, "exec"), module.__dict__)  # the examples assert their results


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)\s]*)?\)")


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_docs_links_when_relative_then_inside_the_repository(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "../shared/" not in text, f"{path.name} points outside the repository"
    for target in LINK.findall(text):
        if "://" in target or target.startswith("mailto:"):
            continue
        resolved = (path.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{path.name}: {target} is outside the repository"
        assert resolved.exists(), f"{path.name}: {target} does not exist"
