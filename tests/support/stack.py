"""The bare-metal stack (deploy/baremetal/stack.py) for tests and benches.

``deploy/`` is not a package, so the module is loaded from its file here, once, under the name
``ffe_baremetal_stack``; its docstring documents the API (``Stack``, ``StackError``, ``Ports``,
``verify_units``). ``stack_folder()`` makes a folder the postgres user can reach and
``free_port_base()`` a port base whose ports are all free (the bases tried: 48100, 48200, 48300,
48400, or those FFE_STACK_TEST_PORT_BASES lists, comma-separated, when several people share a
machine); ``require_stack()`` skips a test when the machine cannot run the stack, or fails it
under CI=true. ``observe`` is deploy/baremetal/observe.py (panels with no data, unhealthy rules);
``load_dr()`` deploy/baremetal/dr.py (disaster recovery drills) against the same module.

    from tests.support.stack import Stack, free_port_base, require_stack, stack_folder
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK_PY = ROOT / "deploy" / "baremetal" / "stack.py"
OBSERVE_PY = ROOT / "deploy" / "baremetal" / "observe.py"
# Port bases tried in turn; each needs 20 + api_processes ports.
TEST_PORTS: Sequence[int] = (
    [int(b) for b in os.environ["FFE_STACK_TEST_PORT_BASES"].split(",")]
    if os.environ.get("FFE_STACK_TEST_PORT_BASES")
    else range(48100, 48500, 100)
)


def _load(name: str = "ffe_baremetal_stack", path: Path = STACK_PY) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


baremetal = _load()
Stack = baremetal.Stack
StackError = baremetal.StackError
Ports = baremetal.Ports
verify_units = baremetal.verify_units
observe = _load("ffe_baremetal_observe", OBSERVE_PY)


def load_dr() -> ModuleType:
    """deploy/baremetal/dr.py, as ``ffe_baremetal_dr`` (it imports the stack module loaded
    above, so its StackError is this one)."""
    return _load("ffe_baremetal_dr", STACK_PY.with_name("dr.py"))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_stack() -> None:
    """Skip (fail under CI=true) when a program the stack runs is missing or we are not root
    (PostgreSQL and PgBouncer run as the postgres user)."""
    _, missing = baremetal.binaries()
    problems = [f"missing {m}" for m in missing]
    if os.geteuid() != 0:
        problems.append("not root (the stack runs PostgreSQL as the postgres user)")
    if problems:
        message = "the bare-metal stack cannot run here: " + "; ".join(problems)
        if in_ci():
            pytest.fail(message + " (CI=true requires it: .ci/run installs the packages)")
        pytest.skip(message)


def stack_folder() -> Path:
    """A new folder under the system's temporary folder, searchable by the postgres user
    (pytest's tmp_path sits in a 0700 folder it cannot enter). The caller removes it."""
    folder = Path(tempfile.mkdtemp(prefix="ffe-stack-"))
    folder.chmod(0o755)
    return folder


def free_port_base(api_processes: int = 3, bases: Sequence[int] = TEST_PORTS) -> int:
    """The first base of ``bases`` whose every port is free on 127.0.0.1."""
    for base in bases:
        ports = baremetal.Ports.from_base(base, api_processes).all()
        if not any(_in_use(port) for port in ports):
            return base
    raise RuntimeError(f"no free port base in {bases}")


def _in_use(port: int) -> bool:
    with socket.socket() as s:
        # As the stack's servers bind: a port left in TIME_WAIT by some client connection
        # (the ephemeral range overlaps ours) does not stop them, only a listener does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False
