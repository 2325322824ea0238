"""Platform tables: social accounts, posts, targets, inbox, metrics, GDPR.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import notiflow.kit.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_locks",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("expires_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_job_locks")),
    )
    op.create_table(
        "data_deletion_requests",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("scheduled_for", notiflow.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "report",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_data_deletion_requests_tenant_id_tenants"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_deletion_requests")),
    )
    with op.batch_alter_table("data_deletion_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_data_deletion_requests_scheduled_for"), ["scheduled_for"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_data_deletion_requests_user_id"), ["user_id"], unique=False
        )

    op.create_table(
        "data_export_requests",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("file_path", sa.String(length=500), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("expires_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_data_export_requests_tenant_id_tenants"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_data_export_requests_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_export_requests")),
    )
    with op.batch_alter_table("data_export_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_data_export_requests_user_id"), ["user_id"], unique=False
        )

    op.create_table(
        "posts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("scheduled_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("scheduled_timezone", sa.String(length=64), nullable=True),
        sa.Column("submitted_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reviewed_by", sa.Uuid(), nullable=True),
        sa.Column("reviewed_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("review_note", sa.Text(), nullable=True),
        sa.Column("published_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_posts_author_id_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["reviewed_by"],
            ["users.id"],
            name=op.f("fk_posts_reviewed_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_posts_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_posts_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_posts")),
    )
    with op.batch_alter_table("posts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_posts_author_id"), ["author_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_posts_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_posts_workspace_id_created_at"),
            ["workspace_id", "created_at"],
            unique=False,
        )

    op.create_table(
        "social_accounts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("external_account_id", sa.String(length=255), nullable=False),
        sa.Column("handle", sa.String(length=255), nullable=False),
        sa.Column("instance_url", sa.String(length=500), nullable=True),
        sa.Column("access_token_encrypted", sa.Text(), nullable=True),
        sa.Column("refresh_token_encrypted", sa.Text(), nullable=True),
        sa.Column("token_expires_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "options",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("connected_by", sa.Uuid(), nullable=True),
        sa.Column("disconnected_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("inbox_cursor", sa.String(length=255), nullable=True),
        sa.Column("last_inbox_sync_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_refresh_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("expiry_notified_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connected_by"],
            ["users.id"],
            name=op.f("fk_social_accounts_connected_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_social_accounts_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_social_accounts_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_social_accounts")),
        sa.UniqueConstraint(
            "workspace_id",
            "provider",
            "external_account_id",
            name=op.f("uq_social_accounts_workspace_id_provider_external_account_id"),
        ),
    )
    with op.batch_alter_table("social_accounts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_social_accounts_tenant_id"), ["tenant_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_social_accounts_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "workspace_schedules",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("job_name", sa.String(length=100), nullable=False),
        sa.Column("next_run_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_workspace_schedules_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspace_schedules")),
        sa.UniqueConstraint(
            "workspace_id", "job_name", name=op.f("uq_workspace_schedules_workspace_id_job_name")
        ),
    )
    with op.batch_alter_table("workspace_schedules", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_workspace_schedules_next_run_at"), ["next_run_at"], unique=False
        )

    op.create_table(
        "post_targets",
        sa.Column("post_id", sa.Uuid(), nullable=False),
        sa.Column("social_account_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("next_attempt_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_until", notiflow.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=True),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("external_url", sa.String(length=1000), nullable=True),
        sa.Column("published_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error_kind", sa.String(length=20), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["post_id"],
            ["posts.id"],
            name=op.f("fk_post_targets_post_id_posts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["social_account_id"],
            ["social_accounts.id"],
            name=op.f("fk_post_targets_social_account_id_social_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_post_targets_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_post_targets")),
        sa.UniqueConstraint(
            "post_id", "social_account_id", name=op.f("uq_post_targets_post_id_social_account_id")
        ),
    )
    with op.batch_alter_table("post_targets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_post_targets_social_account_id"), ["social_account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_post_targets_status_next_attempt_at"),
            ["status", "next_attempt_at"],
            unique=False,
        )

    op.create_table(
        "inbox_items",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("social_account_id", sa.Uuid(), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("author_handle", sa.String(length=255), nullable=False),
        sa.Column("author_name", sa.String(length=255), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("url", sa.String(length=1000), nullable=True),
        sa.Column("post_target_id", sa.Uuid(), nullable=True),
        sa.Column("occurred_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("fetched_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("assigned_to", sa.Uuid(), nullable=True),
        sa.Column("assigned_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("archived_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["assigned_to"],
            ["users.id"],
            name=op.f("fk_inbox_items_assigned_to_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["post_target_id"],
            ["post_targets.id"],
            name=op.f("fk_inbox_items_post_target_id_post_targets"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["social_account_id"],
            ["social_accounts.id"],
            name=op.f("fk_inbox_items_social_account_id_social_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_inbox_items_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_inbox_items_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_items")),
        sa.UniqueConstraint(
            "social_account_id",
            "external_id",
            name=op.f("uq_inbox_items_social_account_id_external_id"),
        ),
    )
    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_inbox_items_assigned_to"), ["assigned_to"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_inbox_items_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_inbox_items_workspace_id_occurred_at"),
            ["workspace_id", "occurred_at"],
            unique=False,
        )

    op.create_table(
        "post_metric_snapshots",
        sa.Column("post_target_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("captured_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("likes", sa.Integer(), nullable=False),
        sa.Column("reposts", sa.Integer(), nullable=False),
        sa.Column("replies", sa.Integer(), nullable=False),
        sa.Column("impressions", sa.Integer(), nullable=True),
        sa.Column(
            "raw",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["post_target_id"],
            ["post_targets.id"],
            name=op.f("fk_post_metric_snapshots_post_target_id_post_targets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_post_metric_snapshots_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_post_metric_snapshots")),
    )
    with op.batch_alter_table("post_metric_snapshots", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_post_metric_snapshots_post_target_id_captured_at"),
            ["post_target_id", "captured_at"],
            unique=False,
        )

    op.create_table(
        "publish_attempts",
        sa.Column("target_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", notiflow.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["post_targets.id"],
            name=op.f("fk_publish_attempts_target_id_post_targets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_publish_attempts")),
    )
    with op.batch_alter_table("publish_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_publish_attempts_target_id"), ["target_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("publish_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_publish_attempts_target_id"))

    op.drop_table("publish_attempts")
    with op.batch_alter_table("post_metric_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_post_metric_snapshots_post_target_id_captured_at"))

    op.drop_table("post_metric_snapshots")
    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbox_items_workspace_id_occurred_at"))
        batch_op.drop_index(batch_op.f("ix_inbox_items_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_inbox_items_assigned_to"))

    op.drop_table("inbox_items")
    with op.batch_alter_table("post_targets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_post_targets_status_next_attempt_at"))
        batch_op.drop_index(batch_op.f("ix_post_targets_social_account_id"))

    op.drop_table("post_targets")
    with op.batch_alter_table("workspace_schedules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workspace_schedules_next_run_at"))

    op.drop_table("workspace_schedules")
    with op.batch_alter_table("social_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_social_accounts_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_social_accounts_tenant_id"))

    op.drop_table("social_accounts")
    with op.batch_alter_table("posts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_posts_workspace_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_posts_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_posts_author_id"))

    op.drop_table("posts")
    with op.batch_alter_table("data_export_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_data_export_requests_user_id"))

    op.drop_table("data_export_requests")
    with op.batch_alter_table("data_deletion_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_data_deletion_requests_user_id"))
        batch_op.drop_index(batch_op.f("ix_data_deletion_requests_scheduled_for"))

    op.drop_table("data_deletion_requests")
    op.drop_table("job_locks")
