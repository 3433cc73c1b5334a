"""The work-available view honours each sweep's ``max_concurrent``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

A capped sweep can start no more than ``max_concurrent`` minus its running trials
(search and evaluation, as ``claim_trial`` counts them), and never fewer than none:
a cap lowered below what already runs hands out nothing until trials finish. So each
queued or running sweep adds min(its waiting trials plus budget left, its room under
the cap). Kept the last migration: an SQLite table rebuild cannot run under a view
that reads the table.
"""

import importlib

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

VIEW = "sweep_work_available"

# Portable SQL, as in 0008: SQLite and PostgreSQL both run it.
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
                         WHERE a.trial_id = t.trial_id AND a.key = 'failed_trial')) AS started
FROM sweeps s
WHERE s.status IN ('queued', 'running')
"""

_WORK = """(w.waiting + CASE WHEN w.n_trials > w.started THEN w.n_trials - w.started ELSE 0 END)"""
_ROOM = """CASE WHEN w.max_concurrent > w.running THEN w.max_concurrent - w.running ELSE 0 END"""

_VIEW_SQL = f"""
CREATE VIEW {VIEW} AS
SELECT
    CAST(COALESCE(SUM(CASE
        WHEN w.max_concurrent IS NULL OR {_WORK} <= {_ROOM} THEN {_WORK}
        ELSE {_ROOM}
    END), 0) AS INTEGER) AS available,
    CAST(COALESCE(SUM(w.running), 0) AS INTEGER) AS running
FROM ({_PER_SWEEP}) AS w
"""


def upgrade() -> None:
    op.execute(f"DROP VIEW IF EXISTS {VIEW}")
    op.execute(_VIEW_SQL)


def downgrade() -> None:
    op.execute(f"DROP VIEW IF EXISTS {VIEW}")
    uncapped = importlib.import_module("migrations.versions.0008_work_available")
    op.execute(uncapped._VIEW_SQL)
