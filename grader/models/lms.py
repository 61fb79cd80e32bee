"""LMS integration state: webhook integrations, their deliveries, and LTI 1.3 registrations.

Secrets: Standard Webhooks signs with an HMAC, so the service needs the raw secret to verify and to sign; a
hash would not do. Secrets (and LTI tool private keys) are therefore stored *encrypted* (Fernet, key derived
from the app's SECRET_KEY, see `grader.lms.crypto`): a copy of the database alone does not yield them.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, CheckConstraint, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from grader.database import db
from grader.models.types import UTCDateTime, utcnow

if TYPE_CHECKING:
    from grader.models.accounts import Course, User
    from grader.models.assignments import Assignment

DELIVERY_STATUSES = ("pending", "sending", "delivered", "failed")
EVENT_TYPES = ("submission.graded", "submission.failed")
SCORE_STATUSES = ("pending", "sent", "failed")


class LmsIntegration(db.Model):
    """An LMS that sends us submissions (inbound secret) and receives events (outbound secret and URL).

    Rotation keeps the previous secret usable until `*_previous_until`: inbound, either secret verifies;
    outbound, both signatures are sent, so the LMS can switch its secret at its own pace.
    """

    __tablename__ = "lms_integration"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("course.id", ondelete="CASCADE"), index=True)
    outbound_url: Mapped[str | None] = mapped_column(String(2000))
    inbound_secret: Mapped[str] = mapped_column(Text)  # encrypted whsec_…
    inbound_previous: Mapped[str | None] = mapped_column(Text)  # encrypted, valid until inbound_previous_until
    inbound_previous_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outbound_secret: Mapped[str] = mapped_column(Text)
    outbound_previous: Mapped[str | None] = mapped_column(Text)
    outbound_previous_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    course: Mapped[Course] = relationship()
    deliveries: Mapped[list[LmsDelivery]] = relationship(
        back_populates="integration", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<LmsIntegration {self.name}>"


class LmsWebhookReceipt(db.Model):
    """An inbound webhook id already seen, and the answer given: a replay gets the same answer.

    `status_code` is None while the first request is still being processed.
    """

    __tablename__ = "lms_webhook_receipt"
    __table_args__ = (UniqueConstraint("integration_id", "webhook_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("lms_integration.id", ondelete="CASCADE"), index=True)
    webhook_id: Mapped[str] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    status_code: Mapped[int | None]
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    submission_id: Mapped[int | None] = mapped_column(ForeignKey("submission.id", ondelete="SET NULL"))


class LmsDelivery(db.Model):
    """One event for one integration, delivered at least once: pending → sending → delivered | failed.

    `event_id` is the Standard Webhooks `webhook-id`, the same on every attempt so the LMS can drop
    duplicates. `attempts` counts attempts ever made; `round_start` is its value when the current round of
    retries began (a manual redelivery starts a new round with a fresh retry budget).
    """

    __tablename__ = "lms_delivery"
    __table_args__ = (
        UniqueConstraint("integration_id", "run_id", "event_type"),
        CheckConstraint("status IN ('pending', 'sending', 'delivered', 'failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("lms_integration.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    event_type: Mapped[str] = mapped_column(String(40))
    submission_id: Mapped[int | None] = mapped_column(ForeignKey("submission.id", ondelete="SET NULL"), index=True)
    run_id: Mapped[int | None] = mapped_column(Integer)
    # The exact JSON text that is signed and sent: identical on every attempt.
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    round_start: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    integration: Mapped[LmsIntegration] = relationship(back_populates="deliveries")
    attempt_log: Mapped[list[LmsDeliveryAttempt]] = relationship(
        back_populates="delivery",
        order_by="LmsDeliveryAttempt.number",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    def __repr__(self) -> str:
        return f"<LmsDelivery {self.event_id} {self.event_type} {self.status}>"


class LmsDeliveryAttempt(db.Model):
    """One POST of a delivery: when, how long, the status code (or the network error), and what came next."""

    __tablename__ = "lms_delivery_attempt"
    __table_args__ = (UniqueConstraint("delivery_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("lms_delivery.id", ondelete="CASCADE"), index=True)
    number: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    duration: Mapped[float] = mapped_column(Float, default=0.0)  # seconds
    status_code: Mapped[int | None]
    error: Mapped[str] = mapped_column(Text, default="")
    # "delivered", "retry in N s", "gave up after N attempts"
    outcome: Mapped[str] = mapped_column(String(200), default="")

    delivery: Mapped[LmsDelivery] = relationship(back_populates="attempt_log")


class LtiRegistration(db.Model):
    """A platform (issuer + client id) this tool trusts, and the tool's own key pair for that platform."""

    __tablename__ = "lti_registration"
    __table_args__ = (UniqueConstraint("issuer", "client_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    issuer: Mapped[str] = mapped_column(String(255))
    client_id: Mapped[str] = mapped_column(String(255))
    auth_login_url: Mapped[str] = mapped_column(String(2000))
    auth_token_url: Mapped[str] = mapped_column(String(2000))
    auth_audience: Mapped[str | None] = mapped_column(String(2000))
    key_set_url: Mapped[str] = mapped_column(String(2000))
    tool_private_key: Mapped[str] = mapped_column(Text)  # encrypted PEM
    tool_public_key: Mapped[str] = mapped_column(Text)  # PEM, served at /lti/jwks
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    deployments: Mapped[list[LtiDeployment]] = relationship(
        back_populates="registration", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<LtiRegistration {self.issuer} {self.client_id}>"


class LtiDeployment(db.Model):
    """A deployment of the tool on a platform, tied to the course its launches land in."""

    __tablename__ = "lti_deployment"
    __table_args__ = (UniqueConstraint("registration_id", "deployment_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    registration_id: Mapped[int] = mapped_column(ForeignKey("lti_registration.id", ondelete="CASCADE"), index=True)
    deployment_id: Mapped[str] = mapped_column(String(255))
    course_id: Mapped[int] = mapped_column(ForeignKey("course.id", ondelete="CASCADE"), index=True)

    registration: Mapped[LtiRegistration] = relationship(back_populates="deployments")
    course: Mapped[Course] = relationship()


class LtiIdentity(db.Model):
    """A platform user (`sub`, unique per issuer) known to be one of our users."""

    __tablename__ = "lti_identity"
    __table_args__ = (UniqueConstraint("registration_id", "sub"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    registration_id: Mapped[int] = mapped_column(ForeignKey("lti_registration.id", ondelete="CASCADE"), index=True)
    sub: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)

    registration: Mapped[LtiRegistration] = relationship()
    user: Mapped[User] = relationship()


class LtiLineItem(db.Model):
    """A platform gradebook column (AGS line item) that receives one assignment's scores."""

    __tablename__ = "lti_line_item"
    __table_args__ = (UniqueConstraint("deployment_id", "url"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("lti_deployment.id", ondelete="CASCADE"), index=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(1000))
    lineitems_url: Mapped[str | None] = mapped_column(String(1000))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    context_id: Mapped[str | None] = mapped_column(String(255))
    resource_link_id: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    deployment: Mapped[LtiDeployment] = relationship()
    assignment: Mapped[Assignment] = relationship()


class LtiScore(db.Model):
    """One score publication (AGS) for a graded run, with its attempts; unique per line item and run."""

    __tablename__ = "lti_score"
    __table_args__ = (
        UniqueConstraint("line_item_id", "run_id"),
        CheckConstraint("status IN ('pending', 'sent', 'failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    line_item_id: Mapped[int] = mapped_column(ForeignKey("lti_line_item.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    sent: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the score document last sent
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    line_item: Mapped[LtiLineItem] = relationship()
    user: Mapped[User] = relationship()


class LtiLaunchData(db.Model):
    """PyLTI1p3's launch state (nonces, OIDC state, launch data), shared by every web process, with expiry."""

    __tablename__ = "lti_launch_data"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
