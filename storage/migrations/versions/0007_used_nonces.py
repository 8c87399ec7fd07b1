"""used nonces: the replay memory of channel pushes (WeChat's timestamp and nonce) shared by
processes that run without Redis

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 12:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usednonce",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("value", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel", "value"),
    )
    with op.batch_alter_table("usednonce", schema=None) as batch_op:
        batch_op.create_index("ix_usednonce_expires_at", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("usednonce", schema=None) as batch_op:
        batch_op.drop_index("ix_usednonce_expires_at")
    op.drop_table("usednonce")
