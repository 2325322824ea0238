"""Feed index only over live rows; no redundant foreign keys on the delivery ledger.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("archived_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_feed")
        batch_op.create_index(
            "ix_notifications_feed",
            ["user_id", "tenant_id", "created_at", "id"],
            unique=False,
            postgresql_where=LIVE,
            sqlite_where=LIVE,
        )
    with op.batch_alter_table("notification_deliveries", schema=None) as batch_op:
        batch_op.drop_constraint("fk_notification_deliveries_tenant_id_tenants", type_="foreignkey")
        batch_op.drop_constraint("fk_notification_deliveries_user_id_users", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("notification_deliveries", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_notification_deliveries_user_id_users",
            "users",
            ["user_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_foreign_key(
            "fk_notification_deliveries_tenant_id_tenants",
            "tenants",
            ["tenant_id"],
            ["id"],
            ondelete="CASCADE",
        )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_feed")
        batch_op.create_index(
            "ix_notifications_feed", ["user_id", "tenant_id", "created_at", "id"], unique=False
        )
