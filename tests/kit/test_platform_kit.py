"""Shared pieces of the platform jobs: tokens encrypted at rest, job leases, local wall times."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import update

from notiflow.kit.crypto import InvalidToken, TokenCipher
from notiflow.kit.errors import InvalidInput
from notiflow.kit.ids import utcnow
from notiflow.kit.locks import acquire, job_lease
from notiflow.kit.timezones import to_utc, zone
from notiflow.main.runtime import Runtime
from notiflow.models import JobLock
from tests.conftest import make_settings


def test_tokens_are_encrypted_and_tampering_is_detected() -> None:
    cipher = TokenCipher.from_settings(make_settings())
    stored = cipher.encrypt("mastodon-access-token")
    assert "mastodon-access-token" not in stored
    assert cipher.decrypt(stored) == "mastodon-access-token"
    assert cipher.encrypt("same") != cipher.encrypt("same")  # random IV each time
    tampered = stored[:-4] + ("AAAA" if stored[-4:] != "AAAA" else "BBBB")
    with pytest.raises(InvalidToken):
        cipher.decrypt(tampered)
    other_secret = TokenCipher.from_settings(
        make_settings(secret_key="another-secret-key-0123456789abcdef0123")
    )
    with pytest.raises(InvalidToken):
        other_secret.decrypt(stored)


def test_encryption_keys_rotate_old_values_still_readable() -> None:
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    before = TokenCipher.from_settings(make_settings(encryption_keys=old_key))
    stored = before.encrypt("token")
    after = TokenCipher.from_settings(make_settings(encryption_keys=f"{new_key},{old_key}"))
    assert after.decrypt(stored) == "token"
    rewritten = after.encrypt("token")
    with pytest.raises(InvalidToken):  # new values use the new key
        before.decrypt(rewritten)


async def test_a_lease_has_one_holder_until_released_or_expired(runtime: Runtime) -> None:
    sessionmaker = runtime.sessionmaker
    results = await asyncio.gather(
        *(acquire(sessionmaker, "inbox.sync:w1", f"holder-{n}", 60) for n in range(5))
    )
    assert results.count(True) == 1
    async with job_lease(sessionmaker, "inbox.sync:w1", seconds=60) as held:
        assert held is False  # still taken
    async with job_lease(sessionmaker, "inbox.sync:w2", seconds=60) as held:
        assert held is True  # another scope is free
    async with runtime.sessionmaker() as session:  # the holder died: its lease runs out
        await session.execute(update(JobLock).values(expires_at=utcnow() - timedelta(seconds=1)))
        await session.commit()
    async with job_lease(sessionmaker, "inbox.sync:w1", seconds=60) as held:
        assert held is True
    async with job_lease(sessionmaker, "inbox.sync:w1", seconds=60) as held:
        assert held is True  # released at the end of the previous block


def wall(text: str) -> datetime:
    """A wall-clock time without a zone, as a user types it."""
    return datetime.fromisoformat(text)


def test_local_wall_times_become_the_right_instant() -> None:
    # Berlin moves from UTC+1 to UTC+2 on 2027-03-28 at 02:00.
    assert to_utc(wall("2027-03-27T09:00"), "Europe/Berlin") == datetime(
        2027, 3, 27, 8, 0, tzinfo=UTC
    )
    assert to_utc(wall("2027-03-28T09:00"), "Europe/Berlin") == datetime(
        2027, 3, 28, 7, 0, tzinfo=UTC
    )
    with pytest.raises(InvalidInput, match="does not exist"):
        to_utc(wall("2027-03-28T02:30"), "Europe/Berlin")
    # 2027-10-31 02:30 happens twice in Berlin: the first (still summer time) is meant.
    assert to_utc(wall("2027-10-31T02:30"), "Europe/Berlin") == datetime(
        2027, 10, 31, 0, 30, tzinfo=UTC
    )
    # With an offset, the instant is as given whatever the zone.
    given = datetime(2027, 3, 28, 2, 30, tzinfo=UTC)
    assert to_utc(given, "Europe/Berlin") == given
    with pytest.raises(InvalidInput):
        zone("Europe/Atlantis")
