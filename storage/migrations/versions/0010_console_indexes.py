"""The console's case list over many cases: an index on the deadline each case works towards

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 16:00:00

The list orders a community's cases by the deadline they are working towards (acknowledge,
reply or resolve, by state): storage.tables.NEXT_DUE. Indexed, the first page is read from the
index instead of sorting every case of the community. On PostgreSQL only.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The expression exactly as storage.tables.NEXT_DUE declares it (and handlers/cases/lifecycle.py orders by).
NEXT_DUE = ("(CASE WHEN (state IN ('assigned', 'transferred', 'returned', 'reopened')) THEN ack_due"
            " WHEN (state = 'acknowledged') THEN reply_due ELSE resolve_due END)")


def _postgresql() -> bool:
    # SQLite matches no expression written with bound parameters to an index: it would only
    # pay for keeping one (storage.tables.NEXT_DUE).
    return bool(op.get_bind().dialect.name == "postgresql")


def upgrade() -> None:
    if _postgresql():
        op.create_index("ix_case_next_due", "case", ["community_id", sa.text(NEXT_DUE), "id"])


def downgrade() -> None:
    if _postgresql():
        op.drop_index("ix_case_next_due", table_name="case")
