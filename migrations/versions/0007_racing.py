"""Racing: re-evaluate the leaders in rounds until the best is told apart.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(sa.Column("race", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("race_seeds", sa.Integer(), nullable=False, server_default="10"))


def downgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("race_seeds")
        batch.drop_column("race")
