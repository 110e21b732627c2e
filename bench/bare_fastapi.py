"""The peer of ``bench_api``: a bare FastAPI app with one JSON route and nothing else (no
auth, no middleware, no database), served by uvicorn with the same settings as ``ffe serve``.

    python -m uvicorn bench.bare_fastapi:app --port 8001 --log-level warning --no-access-log
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/json")
async def json_endpoint() -> dict[str, Any]:
    """A small, constant JSON body."""
    return {"message": "hello", "ok": True, "value": 42}
