"""The work-available view leaves out trials copied by a warm start.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

A sweep created with ``warm_start_from`` begins with the finished trials of an
earlier sweep, each marked with the system attribute ``copied_from``. They inform the
sampler but are outside the new sweep's budget, as ``claim_trial`` counts it, so
they are not ``started`` here either. Otherwise as 0009; kept the last migration.
"""

import importlib

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

capped = importlib.import_module("migrations.versions.0009_work_available_capped")
VIEW = capped.VIEW

_PER_SWEEP = """
SELECT
    s.n_trials AS n_trials,
    s.max_concurrent AS max_concurrent,
    (SELECT COUNT(*) FROM studies st JOIN trials t ON t.study_id = st.study_id
      WHERE st.study_name IN (s.name, s.name || '.eval') AND t.state = 'WAITING') AS waiting,
    (SELECT COUNT(*) FROM studies st JOIN trials t ON t.study_id = st.study_id
      WHERE st.study_name IN (s.name, s.name || '.eval') AND t.state = 'RUNNING') AS running,
    (SELECT COUNT(*) FROM studies st JOIN trials t ON t.study_id = st.study_id
      WHERE st.study_name = s.name
        AND NOT EXISTS (SELECT 1 FROM trial_system_attributes a
                         WHERE a.trial_id = t.trial_id
                           AND a.key IN ('failed_trial', 'copied_from'))) AS started
FROM sweeps s
WHERE s.status IN ('queued', 'running')
"""

_VIEW_SQL = f"""
CREATE VIEW {VIEW} AS
SELECT
    CAST(COALESCE(SUM(CASE
        WHEN w.max_concurrent IS NULL OR {capped._WORK} <= {capped._ROOM} THEN {capped._WORK}
        ELSE {capped._ROOM}
    END), 0) AS INTEGER) AS available,
    CAST(COALESCE(SUM(w.running), 0) AS INTEGER) AS running
FROM ({_PER_SWEEP}) AS w
"""


def upgrade() -> None:
    op.execute(f"DROP VIEW IF EXISTS {VIEW}")
    op.execute(_VIEW_SQL)


def downgrade() -> None:
    op.execute(f"DROP VIEW IF EXISTS {VIEW}")
    op.execute(capped._VIEW_SQL)
