"""Usage rows that count several requests (per minute), with time to first byte and queue wait.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage") as table:
        table.add_column(sa.Column("ttft_ms", sa.Float))
        table.add_column(sa.Column("queue_ms", sa.Float))
        # Rows written before this revision are one request each.
        table.add_column(sa.Column("requests", sa.Integer, nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("usage") as table:
        for column in ("requests", "queue_ms", "ttft_ms"):
            table.drop_column(column)
