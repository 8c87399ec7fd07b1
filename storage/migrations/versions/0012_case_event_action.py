"""case events by action: the figures find the few corrected cases without reading every event

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 13:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_caseevent_action", "caseevent", ["action", "case_id"])


def downgrade() -> None:
    op.drop_index("ix_caseevent_action", table_name="caseevent")
