"""Check that the committed lock files still satisfy pyproject.toml.

`make test` runs this instead of comparing the locks with a fresh resolve: a release upstream
must never turn CI red by itself, but a range changed in pyproject.toml without `make lock`
must. For each lock file it checks that every requirement of the extras the lock was made
for (and of the build system) has a pinned entry, that every pinned version of it lies in the
requirement's range, and that every lock pins the same version as the dev lock wherever both
pin a package. It reads files only: no network, no resolver.

    python tools/check_lock.py requirements.lock requirements-dev.lock requirements-bench.lock \
        requirements-ray.lock
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# The extras each lock is resolved with (see `make lock`).
EXTRAS = {
    "requirements.lock": (),
    "requirements-dev.lock": ("dev", "bench"),
    "requirements-bench.lock": ("bench",),
    "requirements-ray.lock": ("ray",),  # the Ray image (deploy/Dockerfile, REQUIREMENTS)
}
REFERENCE = "requirements-dev.lock"
# The deploy validators' lock (a tree of its own, see the Makefile): resolved from its own
# requirements file, not pyproject.toml, and free to pin differently from the dev lock.
DEPLOY_LOCK = "requirements-deploy.lock"
DEPLOY_REQUIREMENTS = "deploy/tools/requirements.in"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(path: Path) -> dict[str, set[Version]]:
    """Every pinned version in a lock file, by canonical name (a universal lock may pin one
    package at several versions, one per Python)."""
    found: dict[str, set[Version]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            found.setdefault(canonicalize_name(match[1]), set()).add(Version(match[2]))
    return found


def requirements(pyproject: dict[str, Any], extras: tuple[str, ...]) -> list[Requirement]:
    """The direct requirements a lock made for these extras must cover."""
    project, build = pyproject["project"], pyproject["build-system"]
    texts = list(project["dependencies"]) + list(build["requires"])
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        texts += optional[extra]
    return [Requirement(text) for text in texts]


def problems_of(
    name: str,
    locked: dict[str, set[Version]],
    wanted: list[Requirement],
    reference: dict[str, set[Version]],
) -> list[str]:
    """What is wrong with one lock file's pins, as lines that say what is off."""
    found: list[str] = []
    for requirement in wanted:
        key = canonicalize_name(requirement.name)
        if key not in locked:
            found.append(f"{name}: {requirement} is in pyproject.toml but not locked")
            continue
        outside = sorted(v for v in locked[key] if v not in requirement.specifier)
        for version in outside:
            found.append(f"{name}: {requirement.name}=={version} is outside {requirement}")
    for key, versions in locked.items():
        if key in reference and not versions <= reference[key]:
            found.append(
                f"{name}: {key} pinned at {sorted(map(str, versions))}, "
                f"the dev lock at {sorted(map(str, reference[key]))}"
            )
    return found


def requirements_file(path: Path) -> list[Requirement]:
    """The requirements of a pip requirements file (comments and blank lines left out)."""
    lines = (
        line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()
    )
    return [Requirement(line) for line in lines if line]


def main(names: list[str]) -> int:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    unknown = [name for name in names if name not in EXTRAS and name != DEPLOY_LOCK]
    if unknown:
        print(f"check_lock: no extras known for {unknown}; known: {sorted(EXTRAS)}")
        return 2
    reference = pins(ROOT / REFERENCE)
    found = [
        line
        for name in names
        if name != DEPLOY_LOCK
        for line in problems_of(
            name, pins(ROOT / name), requirements(pyproject, EXTRAS[name]), reference
        )
    ]
    if DEPLOY_LOCK in names:
        deploy = pins(ROOT / DEPLOY_LOCK)
        wanted = requirements_file(ROOT / DEPLOY_REQUIREMENTS)
        found += problems_of(DEPLOY_LOCK, deploy, wanted, deploy)
    for line in found:
        print(line)
    if found:
        print(
            "The locks do not match pyproject.toml (or deploy/tools/requirements.in): run "
            "`make lock` and commit the lock files."
        )
        return 1
    print(f"{len(names)} lock files satisfy pyproject.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or [*EXTRAS, DEPLOY_LOCK]))
