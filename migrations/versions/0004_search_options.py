"""Options of a sweep's sampler and pruner.

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Sweeps created before this revision keep their defaults: no options stored.
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(
            sa.Column("search_options", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("search_options")
