"""Rows in: the events the nodes recorded become ``webhook_events`` rows of the apps that want them.

Two ways in, by where the process that owns the database stands:

- **Same process** (``notiflow serve`` without Redis): the hub's :class:`LocalWebhooks` puts
  events in a :class:`~notiflow.realtime.webhooks.events.RecordedEvents` and
  :meth:`WebhookOutbox.write_forever` stores them, a batch per transaction.
- **Across processes** (Redis): the nodes' scripts append to the stream
  ``notiflow:rt:webhooks``; :class:`StreamIngest` (in ``notiflow scheduler``) reads it through a
  consumer group, stores each batch, and acknowledges and deletes the entries only after the
  commit. A crash in between reads them again; their ``source_id`` (the entry id) is unique, so
  they are stored once.

Either way a store wakes the app's sender (:mod:`notiflow.realtime.webhooks.sender`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notiflow.kit.bulk import chunks, dialect_insert
from notiflow.kit.outages import DATABASE, REDIS, Backoff, outage_of
from notiflow.kit.uow import unit_of_work
from notiflow.models import WebhookEvent
from notiflow.models.webhooks import WebhookStatus
from notiflow.realtime.webhooks.events import Recorded, RecordedEvents, WebhookApp
from notiflow.realtime.webhooks.tracking import STREAM, reap_dead_nodes

log = structlog.get_logger(__name__)

__all__ = ["StreamIngest", "WebhookOutbox"]

# Events stored per transaction.
STORE_BATCH = 500
# Rows per INSERT statement (10 columns each: well under the backends' bind parameter limits).
INSERT_CHUNK = 500
# The consumer group that stores the stream's entries, and its one consumer name: a scheduler
# that restarts reads what its predecessor had read but not acknowledged.
GROUP = "outbox"
CONSUMER = "outbox"
# What Redis answers a read when the stream (and with it the group) is gone: a restart without
# persistence, or a flush while the read was blocked.
GONE = ("NOGROUP", "UNBLOCKED")
# How long one read of the stream waits for entries (ms).
READ_BLOCK_MS = 1_000
# How often dead nodes' holdings are looked for (a node is dead 30 s after its last heartbeat).
REAP_INTERVAL = 10.0


class WebhookOutbox:
    """Stores recorded events for the apps that want them and wakes their senders."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        apps: Sequence[WebhookApp],
        *,
        retry_horizon_seconds: float,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.apps: Mapping[str, WebhookApp] = {app.app_id: app for app in apps}
        self.horizon = timedelta(seconds=retry_horizon_seconds)
        # Events of this process (no Redis), for write_forever.
        self.recorded = RecordedEvents()
        self._stored: dict[str, asyncio.Event] = {app_id: asyncio.Event() for app_id in self.apps}

    def stored_event(self, app_id: str) -> asyncio.Event:
        """Set whenever events of ``app_id`` were stored (the sender clears it)."""
        return self._stored[app_id]

    async def store(self, records: Sequence[Recorded]) -> int:
        """Insert the events the apps want (one transaction, in order); an event already stored
        (same ``source_id``) is skipped. Returns how many were kept."""
        rows = [row for record in records if (row := self._row(record)) is not None]
        if rows:
            async with unit_of_work(self.sessionmaker) as session:
                for chunk in chunks(rows, INSERT_CHUNK):
                    await session.execute(
                        dialect_insert(session, WebhookEvent)
                        .values(list(chunk))
                        .on_conflict_do_nothing(index_elements=["source_id"])
                    )
            for app_id in {row["app_id"] for row in rows}:
                self._stored[app_id].set()
        return len(rows)

    def _row(self, record: Recorded) -> dict[str, Any] | None:
        app = self.apps.get(record.app_id)
        name = record.event.get("name")
        if app is None or not isinstance(name, str) or not app.wants(name):
            return None
        occurred_at = datetime.fromtimestamp(record.occurred_ms / 1000, UTC)
        return {
            "app_id": record.app_id,
            "name": name,
            "event": record.event,
            "source_id": record.source_id,
            "status": WebhookStatus.PENDING,
            "attempts": 0,
            "next_attempt_at": occurred_at,
            "expires_at": occurred_at + self.horizon,
            "occurred_at": occurred_at,
        }

    async def flush(self) -> None:
        """Store what this process recorded and has not stored yet (when it stops): the
        events of its last moments are sent after the next start rather than lost."""
        while len(self.recorded):
            batch = self.recorded.peek(STORE_BATCH)
            await self.store(batch)
            self.recorded.done(len(batch))

    async def write_forever(self) -> None:
        """Store this process's own events as they come (``notiflow serve`` without Redis).
        While the database is away they wait in memory (bounded) and go in when it is back."""
        backoff = Backoff()
        while True:
            await self.recorded.wait()
            batch = self.recorded.peek(STORE_BATCH)
            try:
                await self.store(batch)
            except Exception as error:
                await _wait_out(error, backoff, component="webhook_outbox")
                continue
            self.recorded.done(len(batch))
            if backoff.failures:
                DATABASE.recovered(component="webhook_outbox")
                backoff.reset()


async def _wait_out(error: Exception, backoff: Backoff, *, component: str) -> None:
    """An outage is told once and backed off; anything else is a defect, logged in full."""
    outage = outage_of(error)
    if outage is not None:
        outage.failed(error, component=component)
    else:
        log.exception(f"{component}_failed")
    await asyncio.sleep(backoff.next_delay())


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class StreamIngest:
    """Reads the nodes' stream into the outbox (run by the one process that owns the database
    in a Redis deployment: ``notiflow scheduler``), and reaps dead nodes' holdings."""

    def __init__(self, redis: Redis, outbox: WebhookOutbox) -> None:
        self.redis = redis
        self.outbox = outbox

    async def run_forever(self) -> None:
        backoff = Backoff()
        # Entries read but not acknowledged (a crash between store and ack) come first.
        start_id = "0"
        group_ready = False
        while True:
            try:
                if not group_ready:
                    await self._create_group()
                    group_ready = True
                start_id = await self.ingest_once(start_id)
            except Exception as error:
                if isinstance(error, ResponseError) and str(error).startswith(GONE):
                    group_ready = False  # Redis came back empty: the stream and group are gone
                else:
                    component = "webhook_ingest"
                    await _wait_out(error, backoff, component=component)
                start_id = "0"
                continue
            if backoff.failures:
                REDIS.recovered(component="webhook_ingest")
                DATABASE.recovered(component="webhook_ingest")
                backoff.reset()

    async def ingest_once(self, start_id: str = ">") -> str:
        """Store one batch of entries; returns where the next read starts (``0`` while entries
        read before are unacknowledged, ``>`` for new ones)."""
        block = READ_BLOCK_MS if start_id == ">" else None
        answer: Any = await self.redis.xreadgroup(
            GROUP, CONSUMER, {STREAM: start_id}, count=STORE_BATCH, block=block
        )
        # [[stream, [(entry id, fields), ...]]], or nothing when the block timed out.
        entries: list[tuple[Any, Any]] = answer[0][1] if answer else []
        if not entries:
            return ">"
        records = []
        for raw_id, fields in entries:
            record = self._record(_text(raw_id), fields)
            if record is not None:
                records.append(record)
        await self.outbox.store(records)
        ids = [raw_id for raw_id, _ in entries]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(STREAM, GROUP, *ids)
            pipe.xdel(STREAM, *ids)
            await pipe.execute()
        return start_id

    def _record(self, entry_id: str, fields: Mapping[Any, Any]) -> Recorded | None:
        values = {_text(key): _text(value) for key, value in fields.items()}
        try:
            event = json.loads(values["event"])
            return Recorded(values["app"], event, int(values["ms"]), source_id=entry_id)
        except (KeyError, ValueError):
            log.warning("webhook_stream_bad_entry", entry_id=entry_id)
            return None

    async def _create_group(self) -> None:
        try:
            await self.redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def reap_forever(self, interval: float = REAP_INTERVAL) -> None:
        """End dead nodes' channels and members every ``interval`` seconds."""
        backoff = Backoff()
        apps = list(self.outbox.apps.values())
        while True:
            try:
                await reap_dead_nodes(self.redis, apps)
            except Exception as error:
                await _wait_out(error, backoff, component="webhook_reaper")
                continue
            if backoff.failures:
                REDIS.recovered(component="webhook_reaper")
                backoff.reset()
            await asyncio.sleep(interval)
