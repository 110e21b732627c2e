"""deploy/Dockerfile, checked offline (no Docker engine here): hadolint finds nothing, the
image's settings are settings ffe accepts, it runs as a user of its own with a health check on
the API's liveness, and it installs exactly a lock (the runtime's, or the Ray image's with
--build-arg REQUIREMENTS=requirements-ray.lock), which .dockerignore lets into the build."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from ffe.config import load_settings

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
LOCKS = ("requirements.lock", "requirements-ray.lock")
"""The locks the REQUIREMENTS build argument may name: the runtime, the runtime and Ray."""


def _instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) of every line of the Dockerfile, continuations joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def _runtime() -> list[tuple[str, str]]:
    """The instructions of the last stage: what the image runs with."""
    steps = _instructions()
    last = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last:]


def test_image_settings_when_loaded_then_accepted_with_data_volume_all_addresses_and_json_logs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = dict(
        pair.split("=", 1) for word, rest in _runtime() if word == "ENV" for pair in rest.split()
    )
    for name, value in env.items():
        if name.startswith("FFE__"):
            monkeypatch.setenv(name, value)

    settings = load_settings()

    assert settings.data.dir == Path("/data")
    assert settings.api.host == "0.0.0.0"
    assert settings.logging.json_format is True
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"  # a read-only root: no bytecode beside code
    assert env["FFE_HEALTH_URL"].endswith("/health/live")


def test_image_when_run_then_as_its_own_user_with_health_check_and_ffe_entrypoint() -> None:
    runtime = dict(_runtime()[1:])  # one of each instruction below matters here

    assert runtime["USER"].split(":")[0] not in ("root", "0")
    assert "FFE_HEALTH_URL" in runtime["HEALTHCHECK"]
    assert json.loads(runtime["ENTRYPOINT"]) == ["ffe"]
    assert json.loads(runtime["CMD"]) == ["run"]
    assert json.loads(runtime["VOLUME"]) == ["/data", "/tmp"]


def test_image_when_built_then_installs_the_lock_with_hashes_and_nothing_unpinned() -> None:
    steps = _instructions()
    runs = [rest for word, rest in steps if word == "RUN"]
    installs = [part for run in runs for part in run.split("&&") if "pip install" in part]

    assert ("ARG", "REQUIREMENTS=requirements.lock") in steps  # the runtime lock by default
    assert any('--require-hashes --requirement "${REQUIREMENTS}"' in i for i in installs)
    others = [i for i in installs if "REQUIREMENTS" not in i]
    assert others
    assert all("--no-deps" in i and "--no-build-isolation" in i for i in others)


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_when_named_by_the_build_argument_then_every_pin_has_a_hash(lock: str) -> None:
    text = (ROOT / lock).read_text()
    pinned = re.findall(r"^([A-Za-z0-9][\w.-]*)==", text, flags=re.MULTILINE)
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])

    assert "hatchling" in pinned  # --no-build-isolation builds ffe with the lock's hatchling
    assert all("--hash=sha256:" in entry for entry in entries if "==" in entry)
    if lock == "requirements-ray.lock":
        assert "ray" in pinned


def test_dockerignore_when_building_then_lets_in_what_the_dockerfile_copies_and_nothing_else() -> (
    None
):
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = {
        source.rstrip("/")
        for word, rest in _instructions()
        if word == "COPY" and "--from" not in rest
        for source in rest.split()[:-1]
    }
    # The lock is the build argument's: any of the locks it may name must get in.
    copied = (copied - {"${REQUIREMENTS}"}) | set(LOCKS)

    assert rules[0] == "*"  # everything out (.git, .venv, data, keys), then what is needed
    assert {rule[1:] for rule in rules if rule.startswith("!")} == copied
    assert all(os.path.exists(ROOT / lock) for lock in LOCKS)


def test_image_when_built_then_has_the_postgres_client_of_the_server_compose_runs() -> None:
    runtime = _runtime()
    args = [rest for word, rest in runtime if word == "ARG"]
    major = next(a for a in args if a.startswith("POSTGRES_CLIENT_MAJOR=")).partition("=")[2]
    installs = " ".join(rest for word, rest in runtime if word == "RUN")
    compose = (ROOT / "deploy" / "compose.yaml").read_text()
    server = re.search(r"image: postgres:(\d+)\.", compose)

    # `ffe backup` runs pg_dump, which refuses a server of a newer major version than itself.
    assert server, "deploy/compose.yaml runs no postgres image"
    assert major == server[1]
    assert '"postgresql-client-${POSTGRES_CLIENT_MAJOR}=${POSTGRES_CLIENT_MAJOR}.*"' in installs
    assert "rm -rf /var/lib/apt/lists/*" in installs
