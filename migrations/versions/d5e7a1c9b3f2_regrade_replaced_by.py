"""Regrades: which newer regrade replaced a discarded one (a regrade started over the same submissions)

Revision ID: d5e7a1c9b3f2
Revises: a8c4e2f7d913
Create Date: 2026-12-07 01:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "d5e7a1c9b3f2"
down_revision = "a8c4e2f7d913"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("regrade", schema=None) as batch_op:
        batch_op.add_column(sa.Column("replaced_by_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_regrade_replaced_by_id_regrade"), "regrade", ["replaced_by_id"], ["id"], ondelete="SET NULL"
        )


def downgrade():
    with op.batch_alter_table("regrade", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_regrade_replaced_by_id_regrade"), type_="foreignkey")
        batch_op.drop_column("replaced_by_id")
