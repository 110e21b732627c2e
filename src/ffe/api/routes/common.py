"""What several routers share: paging parameters and the account a request is about."""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Query, status

from ffe.api.services import Services

Limit = Annotated[int, Query(ge=1, le=1000, description="items per page")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="items to skip")]
Account = Annotated[
    str | None, Query(min_length=1, max_length=64, description="default: agent.account")
]


def account_of(services: Services, account: str | None) -> str:
    """The account a request is about: the one it names, or the configured one."""
    return account or services.settings.agent.account


def not_found(message: str) -> HTTPException:
    """A 404 with what was not found."""
    return HTTPException(status.HTTP_404_NOT_FOUND, message)
