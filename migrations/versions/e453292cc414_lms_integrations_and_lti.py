"""LMS integrations (signed webhooks in and out, delivery log) and LTI 1.3 (registrations, launches, AGS)

Revision ID: e453292cc414
Revises: e46ad9f91fdf
Create Date: 2026-11-26 04:19:16.080712

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "e453292cc414"
down_revision = "e46ad9f91fdf"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "lti_launch_data",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_lti_launch_data")),
    )
    with op.batch_alter_table("lti_launch_data", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lti_launch_data_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "lti_registration",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issuer", sa.String(length=255), nullable=False),
        sa.Column("client_id", sa.String(length=255), nullable=False),
        sa.Column("auth_login_url", sa.String(length=2000), nullable=False),
        sa.Column("auth_token_url", sa.String(length=2000), nullable=False),
        sa.Column("auth_audience", sa.String(length=2000), nullable=True),
        sa.Column("key_set_url", sa.String(length=2000), nullable=False),
        sa.Column("tool_private_key", sa.Text(), nullable=False),
        sa.Column("tool_public_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lti_registration")),
        sa.UniqueConstraint("issuer", "client_id", name=op.f("uq_lti_registration_issuer_client_id")),
    )
    op.create_table(
        "lms_integration",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("outbound_url", sa.String(length=2000), nullable=True),
        sa.Column("inbound_secret", sa.Text(), nullable=False),
        sa.Column("inbound_previous", sa.Text(), nullable=True),
        sa.Column("inbound_previous_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outbound_secret", sa.Text(), nullable=False),
        sa.Column("outbound_previous", sa.Text(), nullable=True),
        sa.Column("outbound_previous_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["course_id"], ["course.id"], name=op.f("fk_lms_integration_course_id_course"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lms_integration")),
        sa.UniqueConstraint("name", name=op.f("uq_lms_integration_name")),
    )
    with op.batch_alter_table("lms_integration", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lms_integration_course_id"), ["course_id"], unique=False)

    op.create_table(
        "lti_deployment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("registration_id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.String(length=255), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["course_id"], ["course.id"], name=op.f("fk_lti_deployment_course_id_course"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["lti_registration.id"],
            name=op.f("fk_lti_deployment_registration_id_lti_registration"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lti_deployment")),
        sa.UniqueConstraint(
            "registration_id", "deployment_id", name=op.f("uq_lti_deployment_registration_id_deployment_id")
        ),
    )
    with op.batch_alter_table("lti_deployment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lti_deployment_course_id"), ["course_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_lti_deployment_registration_id"), ["registration_id"], unique=False
        )

    op.create_table(
        "lti_identity",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("registration_id", sa.Integer(), nullable=False),
        sa.Column("sub", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["lti_registration.id"],
            name=op.f("fk_lti_identity_registration_id_lti_registration"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_lti_identity_user_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lti_identity")),
        sa.UniqueConstraint("registration_id", "sub", name=op.f("uq_lti_identity_registration_id_sub")),
    )
    with op.batch_alter_table("lti_identity", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_lti_identity_registration_id"), ["registration_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_lti_identity_user_id"), ["user_id"], unique=False)

    op.create_table(
        "lti_line_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=1000), nullable=False),
        sa.Column("lineitems_url", sa.String(length=1000), nullable=True),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("context_id", sa.String(length=255), nullable=True),
        sa.Column("resource_link_id", sa.String(length=255), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["assignment_id"],
            ["assignment.id"],
            name=op.f("fk_lti_line_item_assignment_id_assignment"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["lti_deployment.id"],
            name=op.f("fk_lti_line_item_deployment_id_lti_deployment"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lti_line_item")),
        sa.UniqueConstraint("deployment_id", "url", name=op.f("uq_lti_line_item_deployment_id_url")),
    )
    with op.batch_alter_table("lti_line_item", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lti_line_item_assignment_id"), ["assignment_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_lti_line_item_deployment_id"), ["deployment_id"], unique=False)

    op.create_table(
        "lms_delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("integration_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("round_start", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'delivered', 'failed')", name=op.f("ck_lms_delivery_status")
        ),
        sa.ForeignKeyConstraint(
            ["integration_id"],
            ["lms_integration.id"],
            name=op.f("fk_lms_delivery_integration_id_lms_integration"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submission.id"],
            name=op.f("fk_lms_delivery_submission_id_submission"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lms_delivery")),
        sa.UniqueConstraint("event_id", name=op.f("uq_lms_delivery_event_id")),
        sa.UniqueConstraint(
            "integration_id",
            "run_id",
            "event_type",
            name=op.f("uq_lms_delivery_integration_id_run_id_event_type"),
        ),
    )
    with op.batch_alter_table("lms_delivery", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lms_delivery_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_lms_delivery_integration_id"), ["integration_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_lms_delivery_next_attempt_at"), ["next_attempt_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_lms_delivery_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_lms_delivery_submission_id"), ["submission_id"], unique=False)

    op.create_table(
        "lms_webhook_receipt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("integration_id", sa.Integer(), nullable=False),
        sa.Column("webhook_id", sa.String(length=255), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("submission_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["integration_id"],
            ["lms_integration.id"],
            name=op.f("fk_lms_webhook_receipt_integration_id_lms_integration"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submission.id"],
            name=op.f("fk_lms_webhook_receipt_submission_id_submission"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lms_webhook_receipt")),
        sa.UniqueConstraint(
            "integration_id", "webhook_id", name=op.f("uq_lms_webhook_receipt_integration_id_webhook_id")
        ),
    )
    with op.batch_alter_table("lms_webhook_receipt", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_lms_webhook_receipt_integration_id"), ["integration_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_lms_webhook_receipt_received_at"), ["received_at"], unique=False)

    op.create_table(
        "lti_score",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("line_item_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("sent", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'sent', 'failed')", name=op.f("ck_lti_score_status")),
        sa.ForeignKeyConstraint(
            ["line_item_id"],
            ["lti_line_item.id"],
            name=op.f("fk_lti_score_line_item_id_lti_line_item"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_lti_score_user_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lti_score")),
        sa.UniqueConstraint("line_item_id", "run_id", name=op.f("uq_lti_score_line_item_id_run_id")),
    )
    with op.batch_alter_table("lti_score", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lti_score_line_item_id"), ["line_item_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_lti_score_user_id"), ["user_id"], unique=False)

    op.create_table(
        "lms_delivery_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["lms_delivery.id"],
            name=op.f("fk_lms_delivery_attempt_delivery_id_lms_delivery"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lms_delivery_attempt")),
        sa.UniqueConstraint("delivery_id", "number", name=op.f("uq_lms_delivery_attempt_delivery_id_number")),
    )
    with op.batch_alter_table("lms_delivery_attempt", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_lms_delivery_attempt_delivery_id"), ["delivery_id"], unique=False
        )


def downgrade():

    op.drop_table("lms_delivery_attempt")
    with op.batch_alter_table("lti_score", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lti_score_user_id"))
        batch_op.drop_index(batch_op.f("ix_lti_score_line_item_id"))

    op.drop_table("lti_score")
    with op.batch_alter_table("lms_webhook_receipt", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lms_webhook_receipt_received_at"))
        batch_op.drop_index(batch_op.f("ix_lms_webhook_receipt_integration_id"))

    op.drop_table("lms_webhook_receipt")
    with op.batch_alter_table("lms_delivery", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lms_delivery_submission_id"))
        batch_op.drop_index(batch_op.f("ix_lms_delivery_status"))
        batch_op.drop_index(batch_op.f("ix_lms_delivery_next_attempt_at"))
        batch_op.drop_index(batch_op.f("ix_lms_delivery_integration_id"))
        batch_op.drop_index(batch_op.f("ix_lms_delivery_created_at"))

    op.drop_table("lms_delivery")

    op.drop_table("lti_line_item")
    with op.batch_alter_table("lti_identity", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lti_identity_user_id"))
        batch_op.drop_index(batch_op.f("ix_lti_identity_registration_id"))

    op.drop_table("lti_identity")
    with op.batch_alter_table("lti_deployment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lti_deployment_registration_id"))
        batch_op.drop_index(batch_op.f("ix_lti_deployment_course_id"))

    op.drop_table("lti_deployment")
    with op.batch_alter_table("lms_integration", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lms_integration_course_id"))

    op.drop_table("lms_integration")
    op.drop_table("lti_registration")
    with op.batch_alter_table("lti_launch_data", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lti_launch_data_expires_at"))

    op.drop_table("lti_launch_data")
