"""Course policy: the manifest's policy and the offering's override on assignments, the course's grace-day
budget, the lateness decision on each submission, and per-student extensions

Revision ID: c3a9d4e2f1b6
Revises: b7c1e0a5d2f3
Create Date: 2026-12-02 10:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "c3a9d4e2f1b6"
down_revision = "b7c1e0a5d2f3"
branch_labels = None
depends_on = None


def upgrade():
    # Server defaults fill the rows that exist: old assignments have no policy, old submissions were on time.
    with op.batch_alter_table("assignment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("policy", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
        batch_op.add_column(sa.Column("policy_override", sa.JSON(), nullable=True))
    with op.batch_alter_table("course", schema=None) as batch_op:
        batch_op.add_column(sa.Column("grace_days", sa.Integer(), nullable=True))
    with op.batch_alter_table("submission", schema=None) as batch_op:
        batch_op.add_column(sa.Column("credit", sa.Float(), nullable=False, server_default=sa.text("100")))
        batch_op.add_column(sa.Column("late_seconds", sa.Integer(), nullable=False, server_default=sa.text("0")))
        batch_op.add_column(sa.Column("grace_days_used", sa.Integer(), nullable=False, server_default=sa.text("0")))
    op.create_table(
        "extension",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("granted_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["assignment_id"], ["assignment.id"],
                                name=op.f("fk_extension_assignment_id_assignment"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["granted_by_id"], ["user.id"], name=op.f("fk_extension_granted_by_id_user"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_extension_user_id_user"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_extension")),
        sa.UniqueConstraint("assignment_id", "user_id", name=op.f("uq_extension_assignment_id_user_id")),
    )
    with op.batch_alter_table("extension", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_extension_assignment_id"), ["assignment_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_extension_user_id"), ["user_id"], unique=False)


def downgrade():
    with op.batch_alter_table("extension", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_extension_user_id"))
        batch_op.drop_index(batch_op.f("ix_extension_assignment_id"))
    op.drop_table("extension")
    with op.batch_alter_table("submission", schema=None) as batch_op:
        batch_op.drop_column("grace_days_used")
        batch_op.drop_column("late_seconds")
        batch_op.drop_column("credit")
    with op.batch_alter_table("course", schema=None) as batch_op:
        batch_op.drop_column("grace_days")
    with op.batch_alter_table("assignment", schema=None) as batch_op:
        batch_op.drop_column("policy_override")
        batch_op.drop_column("policy")
