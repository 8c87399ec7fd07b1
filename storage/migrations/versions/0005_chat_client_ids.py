"""web chat client ids: a retried send with the same id is answered from the stored turn

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chatline", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_id", sa.String(length=64), nullable=True))
        # NULLs never collide, so lines written before (and replies) stay unconstrained.
        batch_op.create_index("ux_chatline_client_id", ["channel", "address", "client_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("chatline", schema=None) as batch_op:
        batch_op.drop_index("ux_chatline_client_id")
        batch_op.drop_column("client_id")
