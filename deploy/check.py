"""Check the deploy files offline: `make deploy-check`, or by hand with the tools' Python:

    .venv-deploy/bin/python deploy/check.py                 # every check
    .venv-deploy/bin/python deploy/check.py helm compose    # some of them
    .venv-deploy/bin/python deploy/check.py --root COPY     # a copy of the checkout

Prints what each check verified; exits 1 when any check finds a problem, listing them all.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from checks.common import CheckError  # noqa: E402

ORDER = ("image", "compose", "monitoring", "dashboards", "helm", "workflows")
CHECKS = tuple(name for name in ORDER if (HERE / "checks" / f"{name}.py").exists())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "checks",
        nargs="*",
        metavar="CHECK",
        help=f"which checks to run (default: all of {', '.join(CHECKS)})",
    )
    parser.add_argument(
        "--root", type=Path, default=HERE.parent, help="the checkout to check (default: this one)"
    )
    args = parser.parse_args(argv)
    root = args.root.resolve()
    unknown = sorted(set(args.checks) - set(CHECKS))
    if unknown:
        parser.error(f"unknown check {', '.join(unknown)}; the checks are {', '.join(CHECKS)}")
    failed = []
    for name in args.checks or CHECKS:
        started = time.monotonic()
        module = importlib.import_module(f"checks.{name}")
        try:
            verified = module.check(root)
        except CheckError as error:
            failed.append(name)
            print(f"FAIL {name} ({time.monotonic() - started:.1f} s)")
            for problem in error.problems:
                print(f"     {problem}")
            continue
        print(f"ok   {name} ({time.monotonic() - started:.1f} s)")
        for line in verified:
            print(f"     {line}")
    if failed:
        print(f"deploy-check: {len(failed)} check(s) failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
