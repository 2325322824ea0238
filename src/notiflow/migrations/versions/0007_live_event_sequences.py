"""Live event sequences: a per-user counter and each pushed notification's sequence, so a
client that reconnects is replayed what it missed.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "user_sequences",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_sequences_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_sequences")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        # Nullable without a default: PostgreSQL adds it without rewriting the table.
        batch_op.add_column(sa.Column("sequence", sa.BigInteger(), nullable=True))
        batch_op.create_index(
            "ix_notifications_user_sequence",
            ["user_id", "sequence"],
            unique=True,
            postgresql_where=sa.text("sequence IS NOT NULL"),
            sqlite_where=sa.text("sequence IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_notifications_user_sequence",
            postgresql_where=sa.text("sequence IS NOT NULL"),
            sqlite_where=sa.text("sequence IS NOT NULL"),
        )
        batch_op.drop_column("sequence")
    op.drop_table("user_sequences")
