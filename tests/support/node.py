"""The dashboard's ES modules run by Node in unit tests.

``run_module(script)`` runs ``script`` (an ES module that prints one JSON value) with every
"./<name>.js" it names, in double quotes, pointed at the packaged static/js file of that name,
and returns what it printed. Without node the test is skipped, or fails under CI=true.

    from tests.support.node import run_module
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from importlib.resources import as_file

import pytest

from ffe.web.render import static_root


def run_module(script: str) -> object:
    """What ``script`` prints as JSON when Node runs it as an ES module."""
    node = shutil.which("node")
    if node is None:
        problem = "node is not installed: the dashboard's modules cannot be run"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{problem}; CI=true requires it")
        pytest.skip(problem)
    with as_file(static_root().joinpath("js")) as folder:
        for path in sorted(folder.glob("*.js")):
            script = script.replace(f'"./{path.name}"', json.dumps(path.resolve().as_uri()))
        done = subprocess.run(
            [node, "--input-type=module", "-e", script],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
