"""Evaluation settings of a sweep: baseline, re-evaluation of the top configurations, test split.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(
            sa.Column("baseline", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch.add_column(
            sa.Column("reevaluate_top", sa.Integer(), nullable=False, server_default="3")
        )
        batch.add_column(
            sa.Column("reevaluate_seeds", sa.Integer(), nullable=False, server_default="3")
        )
        batch.add_column(
            sa.Column("test_split", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("test_split")
        batch.drop_column("reevaluate_seeds")
        batch.drop_column("reevaluate_top")
        batch.drop_column("baseline")
