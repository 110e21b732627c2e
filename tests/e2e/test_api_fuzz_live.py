"""The running API against its own OpenAPI spec, with every schemathesis check: a real
`ffe serve` on loopback, fuzzed over HTTP by the schemathesis command line (coverage, fuzzing
and stateful phases). No answer may be a server error, undocumented, off its schema, or an
acceptance of missing or invalid credentials; what the spec calls valid must be accepted.

Bounded: a fixed number of cases per operation, deterministic generation, jobs limited to a
few seconds each, and the whole run to five minutes.

Two things are set aside, each for a reason the spec cannot carry:
- ``DELETE /api/v1/keys/{prefix}`` would revoke the key the run sends; the in-process run
  (tests/integration/api/test_schemathesis.py) fuzzes it with a session of its own.
- The operations that start work (backtests, sweeps, forecast benchmarks, the agent) also
  answer 422 to bodies the schema allows: a symbol with no stored bars, or a strategy
  parameter the named strategy does not have. Both depend on data and on another field of
  the same body, so for those four the "valid data is accepted" check also accepts 422.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
from tests.support.server import ffe_server

# Everything a fuzzer's flood would otherwise trip: rate limits, the bad-credential throttle
# and the password backoff. Jobs stop after a few seconds and use one process each.
SERVER_ENV = {
    "FFE__API__RATE_LIMIT": "1000000",
    "FFE__API__LOGIN_RATE_LIMIT": "1000000",
    "FFE__API__LOGIN_FAILURES_FREE": "1000000",
    "FFE__API__AUTH_FAILURES_LIMIT": "1000000",
    "FFE__API__ANALYSIS_SYMBOLS": "[]",
    "FFE__COMPUTE__MAX_WORKERS": "1",
    "FFE__JOBS__TIME_LIMIT_S__BACKTEST": "5",
    "FFE__JOBS__TIME_LIMIT_S__SWEEP": "5",
    "FFE__JOBS__TIME_LIMIT_S__FORECAST_BENCH": "5",
}
CONFIG = """
[auth.openapi.apiKeyHeader]
api_key = "${FFE_FUZZ_KEY}"

[[operations]]
include-path-regex = "^/api/v1/(backtests|sweeps|forecast/bench|agent/start)$"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "401", "403", "404", "409", "422", "429",
]
"""


def _admin_key() -> str:
    made = subprocess.run(
        [sys.executable, "-m", "ffe", "keys", "create", "fuzz", "--scope", "admin"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = re.search(r"^ffe_\S+$", made.stdout + made.stderr, re.MULTILINE)
    assert found is not None, made.stdout + made.stderr
    return found.group(0)


def _fuzz(url: str, key: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    spec = httpx.get(f"{url}/openapi.json", headers={"X-API-Key": key}, timeout=30)
    assert spec.status_code == 200, spec.text
    (workdir / "openapi.json").write_text(spec.text, encoding="utf-8")
    (workdir / "schemathesis.toml").write_text(CONFIG, encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(workdir / "schemathesis.toml"),
        "run",
        str(workdir / "openapi.json"),
        "--url",
        url,
        "--checks",
        "all",
        "--max-examples",
        "10",
        "--generation-deterministic",
        "--exclude-path-regex",
        "^/api/v1/keys/",
        "--no-color",
    ]
    environment = {**os.environ, "FFE_FUZZ_KEY": key}
    return subprocess.run(  # its exit status is asserted, with its output, by the test
        command,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        cwd=workdir,
    )


def test_running_api_when_fuzzed_with_every_check_then_no_failure(tmp_path: Path) -> None:
    key = _admin_key()
    with ffe_server("serve", env=SERVER_ENV) as (url, _):
        run = _fuzz(url, key, tmp_path)

    summary = run.stdout[run.stdout.find("SUMMARY") :]
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
    tested = re.search(r"Tested: (\d+)", summary)
    passed = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert tested is not None, summary
    assert passed is not None, summary
    operations = json.loads((tmp_path / "openapi.json").read_text())["paths"]
    listed = sum(len(methods) for methods in operations.values())
    assert int(tested.group(1)) == listed - 1  # all but the revocation, set aside above
    assert int(passed.group(2)) >= 1_000  # cases actually sent, not a run that did nothing
