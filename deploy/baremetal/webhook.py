"""A webhook receiver for Alertmanager in the bare-metal stack: every POST's JSON body is
appended as one line to a file, with the path it came to (``/critical``, ``/warning``,
``/info``: the receiver of deploy/monitoring/alertmanager.yml) and the time it came.

    python deploy/baremetal/webhook.py --host 127.0.0.1 --port 9095 --out alerts.jsonl

``GET /health`` answers 200. Standard library only, so it runs with any Python 3.11.
Stack.alerts() (deploy/baremetal/stack.py) reads the file back.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BODY = 4 * 2**20  # Alertmanager's payloads are a few kB; refuse anything absurd


def make_handler(out: Path) -> type[BaseHTTPRequestHandler]:
    """A handler class appending to ``out``; one lock so concurrent posts never interleave."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                self._answer(200, b"ok\n")
            else:
                self._answer(404, b"not found\n")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BODY:
                self._answer(400, b"a JSON body of at most 4 MiB\n")
                return
            try:
                payload = json.loads(self.rfile.read(length))
            except ValueError:
                self._answer(400, b"not JSON\n")
                return
            line = json.dumps({"received": time.time(), "path": self.path, "payload": payload})
            with lock, out.open("a", encoding="utf-8") as file:
                file.write(line + "\n")
            self._answer(200, b"ok\n")

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            # One line per request on stderr (supervisord's log), as http.server does.
            super().log_message(format, *args)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="the JSON-lines file")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.touch()
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args.out))
    server.serve_forever()


if __name__ == "__main__":
    main()
