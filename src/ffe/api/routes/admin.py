"""API keys: list, create (shown once), revoke. Admin scope only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, status

from ffe.api import auth, queries
from ffe.api.deps import Admin, ServicesDep
from ffe.api.schemas import KeyRequest

router = APIRouter(prefix="/api/v1/keys", tags=["admin"])


@router.get("")
async def list_keys(services: ServicesDep, who: Admin) -> Any:
    """Every API key: prefix, name, scopes, last use; never the key."""
    rows = await auth.list_keys(services.db)
    items = [
        {
            "id": r.id,
            "name": r.name,
            "prefix": r.prefix,
            "scopes": r.scopes,
            "created_at": queries.iso(r.created_at),
            "last_used_at": queries.iso(r.last_used_at),
            "revoked_at": queries.iso(r.revoked_at),
        }
        for r in rows
    ]
    return {"items": items}


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_key(body: KeyRequest, services: ServicesDep, who: Admin) -> Any:
    """Make a key; the answer holds it once and it is never shown again."""
    made = await auth.create_key(services.db, body.name, body.scopes, who.actor)
    return {
        "id": made.id,
        "name": made.name,
        "prefix": made.prefix,
        "key": made.key,
        "scopes": sorted(made.scopes),
    }


@router.delete("/{prefix}")
async def revoke_key(
    prefix: Annotated[str, Path(pattern=r"^[0-9a-f]{8}$|^\d{1,18}$")],
    services: ServicesDep,
    who: Admin,
) -> Any:
    """Revoke a key by its prefix; this worker refuses it at once, others within 30 s."""
    row = await auth.revoke_key(services.db, prefix, who.actor)
    services.keys.forget()
    return {"prefix": row.prefix, "revoked_at": queries.iso(row.revoked_at)}
