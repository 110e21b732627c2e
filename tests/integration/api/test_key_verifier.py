"""API keys are checked with argon2 once per key and process, concurrent first uses share that
check, and a revoked key stops working once its remembered check runs out."""

from __future__ import annotations

import asyncio

import pytest

from ffe.api import auth
from ffe.api.auth import AuthError, KeyVerifier
from ffe.store import migrate
from ffe.store.database import Database


@pytest.fixture
async def db(tmp_path):
    database = Database(f"sqlite:///{(tmp_path / 'keys.db').as_posix()}")
    await migrate.upgrade(database)
    yield database
    await database.dispose()


async def test_verify_when_64_requests_bring_a_new_key_at_once_then_one_hash_check(db, monkeypatch):
    made = await auth.create_key(db, "bot", ["read"], "test")
    checks = []
    real = auth.verify_secret
    monkeypatch.setattr(auth, "verify_secret", lambda h, k: checks.append(k) or real(h, k))
    verifier = KeyVerifier(db)

    found = await asyncio.gather(*(verifier.verify(made.key) for _ in range(64)))

    assert {p.name for p in found} == {"bot"}
    assert len(checks) == 1


async def test_verify_when_key_revoked_then_refused_after_the_remembered_check(db, monkeypatch):
    made = await auth.create_key(db, "bot", ["read"], "test")
    verifier = KeyVerifier(db, cache_s=0.0)  # re-check on every use
    checks = []
    real = auth.verify_secret
    monkeypatch.setattr(auth, "verify_secret", lambda h, k: checks.append(k) or real(h, k))
    assert (await verifier.verify(made.key)).scopes == {"read"}
    assert (await verifier.verify(made.key)).name == "bot"
    assert len(checks) == 1  # the re-check asks the database, it does not hash again
    # The second use started a background re-check; one that read the key before the revoke
    # would vouch for it once more (a CI run caught that race), so let it land first.
    await verifier.settle()

    await auth.revoke_key(db, made.prefix, "test")
    await verifier.verify(made.key)  # served from memory while the background check runs
    await verifier.settle()

    with pytest.raises(AuthError, match="revoked"):
        await verifier.verify(made.key)


async def test_forget_when_a_check_read_the_key_before_the_revoke_then_it_cannot_vouch(
    db, monkeypatch
):
    """The revoking worker refuses the key at once, even while a re-check that read the key
    before the revoke is still finishing (it used to write the key back as good)."""
    made = await auth.create_key(db, "bot", ["read"], "test")
    verifier = KeyVerifier(db, cache_s=0.0)  # every use re-checks in the background
    await verifier.verify(made.key)
    read, release = asyncio.Event(), asyncio.Event()
    real = KeyVerifier._revalidate

    async def slow(self: KeyVerifier, known: object) -> object:
        checked = await real(self, known)  # type: ignore[arg-type]
        read.set()  # it saw the key unrevoked ...
        await release.wait()  # ... and finishes only after the revoke
        return checked

    monkeypatch.setattr(KeyVerifier, "_revalidate", slow)
    await verifier.verify(made.key)  # served from memory; starts the slow re-check
    await asyncio.wait_for(read.wait(), 10)

    await auth.revoke_key(db, made.prefix, "test")
    verifier.forget()  # what the revoke route does in its worker
    release.set()
    await asyncio.sleep(0.1)  # the old check returns now, and must not be remembered

    with pytest.raises(AuthError, match="revoked"):
        await verifier.verify(made.key)


async def test_verify_when_wrong_secret_with_a_real_prefix_then_refused(db):
    made = await auth.create_key(db, "bot", ["read"], "test")
    forged = made.key[:-6] + "AAAAAA"
    with pytest.raises(AuthError, match="invalid"):
        await KeyVerifier(db).verify(forged)


async def test_last_used_is_written_at_most_once_a_minute(db):
    from sqlalchemy import select

    from ffe.store.models import ApiKey

    made = await auth.create_key(db, "bot", ["read"], "test")
    verifier = KeyVerifier(db, cache_s=0.0, used_every_s=60.0)
    await verifier.verify(made.key)
    async with db.session() as session:
        first = await session.scalar(select(ApiKey.last_used_at))
    await verifier.verify(made.key)
    await verifier.settle()  # the re-check ran, and did not write again
    async with db.session() as session:
        second = await session.scalar(select(ApiKey.last_used_at))
    assert first is not None
    assert second == first


async def test_verify_when_the_database_is_down_then_a_remembered_key_still_works(db, monkeypatch):
    """Prometheus's scrape key must outlive a database outage: /metrics is what reports the
    outage (ffe_dependency_up), so a re-check that cannot reach the database keeps the key,
    and once the database answers again a revocation is still seen."""
    from ffe.domain.errors import StoreError

    made = await auth.create_key(db, "prometheus", ["read"], "test")
    verifier = KeyVerifier(db, cache_s=0.0)  # every use re-checks in the background
    await verifier.verify(made.key)
    real = KeyVerifier._revalidate

    async def down(self: KeyVerifier, known: object) -> object:
        raise StoreError("could not reach the database: connection refused")

    monkeypatch.setattr(KeyVerifier, "_revalidate", down)
    for _ in range(3):  # each use starts a re-check that fails
        assert (await verifier.verify(made.key)).name == "prometheus"
        await verifier.settle()

    monkeypatch.setattr(KeyVerifier, "_revalidate", real)
    await auth.revoke_key(db, made.prefix, "test")
    await verifier.verify(made.key)  # from memory while the re-check runs
    await verifier.settle()
    with pytest.raises(AuthError, match="revoked"):
        await verifier.verify(made.key)
