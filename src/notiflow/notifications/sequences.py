"""Per-user live event sequences: the number each pushed notification's live event carries.

A send takes the next sequence of every recipient whose push is allowed, in its own transaction
and in one statement per chunk::

    sequences = await next_sequences(session, [user.id for user in pushed])  # {user_id: 7, ...}

The counter row of each user stays locked until the send commits, so a second send to the same
user waits for the first: a user's sequence order is the order their notifications commit, and a
client that has seen sequence 7 has seen every earlier one that was sent live. Users are locked in
id order, so two sends to overlapping sets of users never wait for each other in a cycle.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.bulk import chunks, dialect_insert
from notiflow.models import UserSequence

# One array parameter per statement on PostgreSQL: a 10,000-member send is one round trip.
_POSTGRESQL_NEXT = text(
    """
    INSERT INTO user_sequences (user_id, last_sequence)
    SELECT user_id, 1 FROM unnest(CAST(:user_ids AS uuid[])) AS user_id ORDER BY user_id
    ON CONFLICT (user_id) DO UPDATE SET last_sequence = user_sequences.last_sequence + 1
    RETURNING user_id, last_sequence
    """
)


async def next_sequences(
    session: AsyncSession, user_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """The next sequence of each user (ids unique), taken in the session's transaction."""
    ordered = sorted(set(user_ids))
    if not ordered:
        return {}
    found: dict[uuid.UUID, int] = {}
    postgresql = session.get_bind().dialect.name == "postgresql"
    for chunk in chunks(ordered, 50_000 if postgresql else 5_000):
        if postgresql:
            rows = await session.execute(_POSTGRESQL_NEXT, {"user_ids": list(chunk)})
        else:
            insert = dialect_insert(session, UserSequence)
            rows = await session.execute(
                insert.values([{"user_id": user_id, "last_sequence": 1} for user_id in chunk])
                .on_conflict_do_update(
                    index_elements=["user_id"],
                    set_={"last_sequence": UserSequence.last_sequence + 1},
                )
                .returning(UserSequence.user_id, UserSequence.last_sequence)
            )
        found.update({user_id: int(sequence) for user_id, sequence in rows})
    return found


async def current_sequence(session: AsyncSession, user_id: uuid.UUID) -> int:
    """The last sequence handed out to ``user_id`` (0 before the first)."""
    last = await session.scalar(
        select(UserSequence.last_sequence).where(UserSequence.user_id == user_id)
    )
    return int(last) if last is not None else 0
