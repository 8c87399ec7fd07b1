"""WeCom (企业微信) for staff: a person's member id and the order of their notice channels

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("person") as batch:
        batch.add_column(sa.Column("wecom_userid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch.add_column(sa.Column("notify_order", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False,
                                   server_default=""))
        batch.create_index("ix_person_wecom_userid", ["wecom_userid"])


def downgrade() -> None:
    with op.batch_alter_table("person") as batch:
        batch.drop_index("ix_person_wecom_userid")
        batch.drop_column("notify_order")
        batch.drop_column("wecom_userid")
