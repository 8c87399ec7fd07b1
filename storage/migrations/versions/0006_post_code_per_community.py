"""post codes are unique per community, not across the district

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 12:00:01
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# SQLite keeps the old constraint unnamed; batch mode names it by this convention to drop it.
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("post_code_key", "post", type_="unique")
        op.create_unique_constraint("uq_post_community_id", "post", ["community_id", "code"])
        return
    with op.batch_alter_table("post", naming_convention=NAMING) as batch_op:
        batch_op.drop_constraint("uq_post_code", type_="unique")
        batch_op.create_unique_constraint("uq_post_community_id", ["community_id", "code"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("uq_post_community_id", "post", type_="unique")
        op.create_unique_constraint("post_code_key", "post", ["code"])
        return
    with op.batch_alter_table("post", naming_convention=NAMING) as batch_op:
        batch_op.drop_constraint("uq_post_community_id", type_="unique")
        batch_op.create_unique_constraint("uq_post_code", ["code"])
