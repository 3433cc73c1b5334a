"""An index on Optuna's trial values, so the best trials are found without a full sort.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

Optuna's own migrations do not know this index and leave it alone; it only
speeds up the service's ranking query (`/best`, `/top`).
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sweep_trial_values_rank", "trial_values", ["objective", "value"])


def downgrade() -> None:
    op.drop_index("ix_sweep_trial_values_rank", table_name="trial_values")
