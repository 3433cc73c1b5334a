"""A view answering "how many trials could workers start now?", for autoscalers.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

KEDA's postgresql trigger (deploy/k8s) and the API's ``sweep_work_available``
gauge read the same number from here. Optuna's tables are only read, never altered.

``available``: per queued or running sweep, its WAITING trials (retries, queued
evaluation runs in ``<name>.eval``) plus the budget not yet started (n_trials
minus trials that are not retries, as ``claim_trial`` counts it). ``running``:
the RUNNING trials of those sweeps, so an autoscaler can ask for
``available + running`` workers and never scale away a worker mid-trial.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

VIEW = "sweep_work_available"

# Portable SQL (CASE, ||, correlated subqueries) that SQLite and PostgreSQL both run;
# on PostgreSQL 'WAITING' is coerced to Optuna's trialstate enum, so its index is usable.
_PER_SWEEP = """
SELECT
    s.n_trials AS n_trials,
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

_VIEW_SQL = f"""
CREATE VIEW {VIEW} AS
SELECT
    CAST(COALESCE(SUM(w.waiting
        + CASE WHEN w.n_trials > w.started THEN w.n_trials - w.started ELSE 0 END), 0)
        AS INTEGER) AS available,
    CAST(COALESCE(SUM(w.running), 0) AS INTEGER) AS running
FROM ({_PER_SWEEP}) AS w
"""


def upgrade() -> None:
    op.execute(_VIEW_SQL)


def downgrade() -> None:
    op.execute(f"DROP VIEW IF EXISTS {VIEW}")
