"""Inserts that behave the same on both backends (kit/bulk)."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, select

from notiflow.kit.bulk import ID_CHUNK, bulk_insert, chunks, insert_new_rows
from notiflow.kit.ids import new_id, utcnow
from notiflow.main.runtime import Runtime
from notiflow.models import AuditLog, Notification
from notiflow.notifications.types import NotificationType
from tests.conftest import MakeMember


def test_chunks_cover_every_item_once_in_order() -> None:
    items = list(range(2 * ID_CHUNK + 1))
    sizes = [len(chunk) for chunk in chunks(items)]
    assert sizes == [ID_CHUNK, ID_CHUNK, 1]
    assert [item for chunk in chunks(items, 3) for item in chunk] == items


async def test_bulk_insert_writes_every_row_with_its_json(runtime: Runtime) -> None:
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {
            "id": new_id(),
            "action": "bulk.checked",
            "subject_type": "row",
            "subject_id": str(index),
            "before": None if index % 2 else {"index": index, "nested": {"ok": True}},
            "created_at": now,
        }
        for index in range(ID_CHUNK + 3)  # more than one chunk where rows are cut
    ]
    async with runtime.sessionmaker() as session:
        await bulk_insert(session, cast(Table, AuditLog.__table__), rows)
        await session.commit()
    async with runtime.sessionmaker() as session:
        stored = {
            row.id: row.before
            for row in (await session.execute(select(AuditLog.id, AuditLog.before))).all()
        }
    assert stored == {row["id"]: row["before"] for row in rows}


async def test_insert_new_rows_leaves_existing_ones_alone(
    runtime: Runtime, make_member: MakeMember
) -> None:
    member = await make_member()
    now = utcnow()

    def notification(dedupe_key: str) -> dict[str, Any]:
        return {
            "id": new_id(),
            "tenant_id": member.tenant_id,
            "user_id": member.id,
            "type": NotificationType.SYSTEM_ANNOUNCEMENT.value,
            "channel": "in_app",
            "title": "Hello",
            "message": dedupe_key,
            "dedupe_key": dedupe_key,
            "event_id": new_id(),
            "created_at": now,
            "updated_at": now,
        }

    table = cast(Table, Notification.__table__)
    unique_on = ["user_id", "channel", "dedupe_key"]
    first = [notification("a"), notification("b")]
    second = [notification("b"), notification("c")]
    async with runtime.sessionmaker() as session:
        assert await insert_new_rows(session, table, first, unique_on=unique_on) == {
            row["id"] for row in first
        }
        assert await insert_new_rows(session, table, second, unique_on=unique_on) == {
            second[1]["id"]
        }
        await session.commit()
        messages = await session.scalars(select(Notification.message).order_by("message"))
        assert list(messages) == ["a", "b", "c"]
