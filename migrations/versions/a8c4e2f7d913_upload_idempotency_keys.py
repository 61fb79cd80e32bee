"""Idempotency keys on submissions: an upload sent again with its key gets the submission it made

Revision ID: a8c4e2f7d913
Revises: f1d2c3b4a5e6
Create Date: 2026-12-05 04:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "a8c4e2f7d913"
down_revision = "f1d2c3b4a5e6"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("submission", schema=None) as batch_op:
        batch_op.add_column(sa.Column("upload_key", sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_submission_user_id_upload_key"), ["user_id", "upload_key"])


def downgrade():
    with op.batch_alter_table("submission", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_submission_user_id_upload_key"), type_="unique")
        batch_op.drop_column("upload_key")
