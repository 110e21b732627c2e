"""What several routers share: paging parameters and the account a request is about."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated, Any

from fastapi import HTTPException, Query, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ffe.api.services import Services

Limit = Annotated[int, Query(ge=1, le=1000, description="items per page")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="items to skip")]
Account = Annotated[
    str | None, Query(min_length=1, max_length=64, description="default: agent.account")
]


def account_of(services: Services, account: str | None) -> str:
    """The account a request is about: the one it names, or the configured one."""
    return account or services.options.account


async def polled(services: Services, key: str, read: Callable[[], Awaitable[Any]]) -> Response:
    """``read()``'s answer, as FastAPI would have sent it, at most ``api.list_cache_s`` old
    (``ffe.api.fresh``): for the lists dashboards and bots poll. ``key`` names everything the
    answer depends on (route and parameters)."""

    async def body() -> bytes:
        return bytes(JSONResponse(jsonable_encoder(await read())).body)

    return Response(await services.fresh(key, body), media_type="application/json")


def refusal(description: str) -> dict[str, Any]:
    """A refusal answer for ``responses=``: the spec's ``Refusal`` body (``detail``)."""
    schema = {"$ref": "#/components/schemas/Refusal"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def not_found(message: str) -> HTTPException:
    """A 404 with what was not found."""
    return HTTPException(status.HTTP_404_NOT_FOUND, message)


def refuse_server_settings(strategy: str, names: Iterable[str], where: str) -> None:
    """422 naming each of ``names`` (the keys of the body's ``where``) that only the server's
    settings may set for ``strategy``: a host, a path, a number of processes, a time budget."""
    from ffe.decide.strategy import settings_only, settings_only_message

    held = settings_only(strategy)
    problems = [
        {
            "type": "server_setting",
            "loc": ("body", where, name),
            "msg": settings_only_message(strategy, name, held[name]),
            "input": name,
        }
        for name in names
        if name in held
    ]
    if problems:
        raise RequestValidationError(problems)
