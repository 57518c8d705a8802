"""Batches and letters: the first ledger schema.

Revision ID: 0001
Revises:
Create Date: 2026-05-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=True),
        sa.Column("letters", sa.Integer(), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("batch_id", name="pk_batches"),
    )
    op.create_table(
        "letters",
        sa.Column("letter_id", sa.String(64), nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("recipient_masked", sa.String(320), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_reply", sa.Text(), nullable=True),
        sa.Column("message_id", sa.String(998), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'retrying', 'sent', 'failed')",
            name="ck_letters_state",
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["batches.batch_id"],
            name="fk_letters_batch_id_batches",
        ),
        sa.PrimaryKeyConstraint("letter_id", name="pk_letters"),
    )
    op.create_index("ix_letters_batch_id_state", "letters", ["batch_id", "state"])
    op.create_index("ix_letters_batch_id_row", "letters", ["batch_id", "row"])


def downgrade() -> None:
    op.drop_index("ix_letters_batch_id_row", table_name="letters")
    op.drop_index("ix_letters_batch_id_state", table_name="letters")
    op.drop_table("letters")
    op.drop_table("batches")
