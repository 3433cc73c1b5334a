"""Fair share: a sweep's priority, its cap on running trials, and the token that created it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("max_concurrent", sa.Integer(), nullable=True))
        # No foreign key: a sweep outlives the token that created it.
        batch.add_column(sa.Column("created_by", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("created_by")
        batch.drop_column("max_concurrent")
        batch.drop_column("priority")
