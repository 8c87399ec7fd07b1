"""The registry's version: one row bumped with every change to the registry

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 18:00:00

Each process keeps the registry (communities, grids, buildings, people, posts, categories,
duty roster) in memory and reads this one row per message to know whether its copy is stale
(storage/registry_cache.py). A database without the row is at version 0.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("registry_version")
