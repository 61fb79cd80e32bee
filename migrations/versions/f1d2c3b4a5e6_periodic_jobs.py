"""Periodic jobs: when each of beat's jobs last ran and last succeeded (the queue panel warns when the recovery
sweeps stop)

Revision ID: f1d2c3b4a5e6
Revises: c3a9d4e2f1b6
Create Date: 2026-12-05 00:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "f1d2c3b4a5e6"
down_revision = "c3a9d4e2f1b6"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "periodic_job",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_ok_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_periodic_job")),
    )


def downgrade():
    op.drop_table("periodic_job")
