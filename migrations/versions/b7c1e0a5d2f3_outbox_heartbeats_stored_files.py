"""Outbox and heartbeats on grading runs; submission files stored in the database

Revision ID: b7c1e0a5d2f3
Revises: 4d97fea75eae
Create Date: 2026-12-02 10:00:00.000000

"""

import hashlib
from pathlib import Path

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "b7c1e0a5d2f3"
down_revision = "4d97fea75eae"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "submission_file",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_submission_file")),
    )
    with op.batch_alter_table("grading_run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    _import_stored_files()


def _import_stored_files():
    """Copy the files of existing submissions from SUBMISSIONS_DIR into the table, where this host has them
    (the store also falls back to that folder, so a file missing here is still found where it lives)."""
    try:
        from flask import current_app

        root = Path(current_app.config["SUBMISSIONS_DIR"])
    except (ImportError, RuntimeError, KeyError):
        return
    connection = op.get_bind()
    hashes = connection.execute(sa.text("SELECT DISTINCT sha256 FROM submission")).scalars().all()
    table = sa.table("submission_file", sa.column("sha256"), sa.column("size"), sa.column("data"),
                     sa.column("created_at", sa.DateTime(timezone=True)))
    from datetime import UTC, datetime

    for sha256 in hashes:
        path = root / sha256[:2] / sha256[2:4] / sha256
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if hashlib.sha256(data).hexdigest() == sha256:
            connection.execute(table.insert().values(sha256=sha256, size=len(data), data=data,
                                                     created_at=datetime.now(UTC)))


def downgrade():
    with op.batch_alter_table("grading_run", schema=None) as batch_op:
        batch_op.drop_column("heartbeat_at")
        batch_op.drop_column("not_before")
        batch_op.drop_column("enqueued_at")
    op.drop_table("submission_file")
